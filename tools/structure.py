"""The code's structure in numbers: modules, their sizes, the longest functions, import arrows.

    python tools/structure.py [src/fairprune]

Read by the restructuring issue's note and docs/architecture.md; the targets are modules of at
most 400 lines and functions of at most 80, a config layer (config, methods_spec, datasets_spec, schema,
errors) that imports no other part of the package, and a core (everything but the two wings,
``sweep`` and ``reporting``, and the command line above them) that imports neither wing.
"""

import ast
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src/fairprune")
mods = sorted(root.rglob("*.py"))
sizes = sorted(((len(p.read_text().splitlines()), str(p.relative_to(root))) for p in mods), reverse=True)
funcs = []
arrows = set()
for p in mods:
    tree = ast.parse(p.read_text())
    name = ".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            funcs.append(
                (node.end_lineno - node.lineno + 1, f"{p.relative_to(root)}:{node.lineno} {node.name}")
            )
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fairprune"):
            arrows.add((name, node.module))
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("fairprune"):
                    arrows.add((name, a.name))
funcs.sort(reverse=True)
print(f"modules: {len(mods)}, lines: {sum(s for s, _ in sizes)}, import arrows: {len(arrows)}")
print("largest modules:", ", ".join(f"{n} {s}" for s, n in sizes[:6]))
print("over 400 lines:", sum(s > 400 for s, _ in sizes))
print("longest functions:", ", ".join(f"{n} {s}" for s, n in funcs[:5]))
print("functions over 80 lines:", sum(s > 80 for s, _ in funcs))
LAYER = (
    "fairprune.config",
    "fairprune.methods_spec",
    "fairprune.datasets_spec",
    "fairprune.schema",
    "fairprune.errors",
)


def in_layer(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in LAYER)


outside = sorted({m for a, m in arrows if in_layer(a) and not in_layer(m)})
print("config layer imports outside itself:", outside or "nothing")
WINGS = ("fairprune.sweep", "fairprune.reporting")
TOP = ("fairprune.cli", "fairprune.__main__")  # the command line: may import anything


def wing_of(module: str) -> str | None:
    return next((w for w in WINGS if module == w or module.startswith(w + ".")), None)


into_wings = sorted(f"{a} -> {m}" for a, m in arrows if not wing_of(a) and a not in TOP and wing_of(m))
print(f"core imports of sweep or reporting: {len(into_wings)}", *into_wings, sep="\n  " if into_wings else "")
between = sorted(f"{a} -> {m}" for a, m in arrows if wing_of(a) and wing_of(m) and wing_of(a) != wing_of(m))
print("between the wings:", ", ".join(between) or "nothing")

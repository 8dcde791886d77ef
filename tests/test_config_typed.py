"""The typed configuration: every key checked on load, method hyperparameters against what each
method declares, messages that name the key; property-based over the config's keys."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sweep_helpers import snapshot, tiny_config, tiny_frame

from fairprune import config as config_module
from fairprune.cli import main
from fairprune.config import ExperimentConfig, config_from_dict, load_config
from fairprune.data.registry import dataset_names
from fairprune.engine import TrainConfig
from fairprune.errors import ConfigError
from fairprune.fairness.bounds import BOUNDED_METRICS
from fairprune.fairness.metrics import METRIC_COLUMNS, PER_GROUP_METRICS
from fairprune.methods_spec import DENSE, METHODS, ROLES, defaults, methods_with
from fairprune.models import MODELS
from fairprune.pruners import build_pruner, pruner_class
from fairprune.pruners.postprocess import POSTPROCESS_CONSTRAINTS
from fairprune.schema import CONSTRAINED_COLUMNS

SRC = Path(__file__).parents[1] / "src"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_registered_method_builds_from_its_declaration(method: str) -> None:
    """The registry's contract: the class it names has exactly the declared fields; built, the
    pruner holds the declared defaults; built bare, its class holds those of its own key."""
    cls = pruner_class(method)
    spec = METHODS[method]
    assert list(spec.params) == [f.name for f in dataclasses.fields(cls)]
    assert dataclasses.asdict(build_pruner(method)) == defaults(method)
    assert dataclasses.asdict(cls()) == defaults(cls.key)
    assert list(METHODS[cls.key].params) == list(spec.params)
    if spec.binary_only:
        assert spec.metrics == tuple(POSTPROCESS_CONSTRAINTS)


def test_roles_partition_the_methods() -> None:
    by_role = {role: methods_with(role) for role in ROLES}
    assert sorted(sum(by_role.values(), ())) == sorted(METHODS)
    assert by_role["reference"] == (DENSE,)
    assert by_role["two_stage"] == ("prune_then_fair", "fair_then_prune", "ceag", "postprocess")
    assert by_role["bifp"] == ("bip", "bifp", "bifp_no_mask_fairness", "bifp_no_weight_fairness")
    fair = {m for m, spec in METHODS.items() if spec.fair}
    bifp = {"bifp", "bifp_no_mask_fairness", "bifp_no_weight_fairness"}
    assert fair == bifp | {"prune_then_fair", "fair_then_prune"}
    with pytest.raises(ValueError, match=r"unknown role 'ablation'; expected one of \('reference'"):
        methods_with("ablation")


def test_a_pruner_checks_its_fields_against_the_declaration() -> None:
    with pytest.raises(
        ValueError, match=r"^method 'bifp': mask_lr: expected a number greater than 0; got -1"
    ):
        pruner_class("bifp")(mask_lr=-1)
    with pytest.raises(
        ValueError, match=r"^method 'ceag': pruning: expected 'magnitude' or 'imp'; got 'snip'"
    ):
        build_pruner("ceag", pruning="snip")
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['stepz'\] for method 'magnitude'"):
        build_pruner("magnitude", stepz=3)
    with pytest.raises(ValueError, match=r"unknown method 'magnitud'; expected one of \['bifp'"):
        build_pruner("magnitud")


def test_the_torch_free_lists_match_the_registries() -> None:
    assert list(config_module.DATASETS) == dataset_names()
    assert sorted(config_module.MODELS) == sorted(MODELS)
    assert CONSTRAINED_COLUMNS == METRIC_COLUMNS
    assert set(config_module.PER_GROUP_METRICS) == set(PER_GROUP_METRICS)
    assert config_module.BOUNDED_METRICS == BOUNDED_METRICS  # fairness.confidence's metrics
    assert TrainConfig is config_module.TrainConfig  # one training-settings class


def test_the_config_layer_imports_neither_torch_nor_the_pruners() -> None:
    code = (
        "import sys; import fairprune.config, fairprune.schema, fairprune.methods_spec, "
        "fairprune.sweep.grid, fairprune.reporting.stats, fairprune.errors, fairprune.sweep.store; "
        "fairprune.config.load_config(None, ['method_params.bifp.steps=3']); "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('fairprune.pruners')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.lr=abc"], "train.lr: expected a valid number; got 'abc'"),
        (["train.batch_size=0"], "train.batch_size: expected a number greater than or equal to 1; got 0"),
        (["seeds=[0, 0]"], "seeds: expected distinct values"),
        (["seeds=[-1]"], "seeds[0]: expected a number greater than or equal to 0; got -1"),
        (["method_params.imp.rate=1.5"], "method_params.imp.rate: expected a number less than 1; got 1.5"),
        (["method_params.bifp.steps='3'"], "method_params.bifp.steps: expected a valid integer; got '3'"),
        (["variants=[{method='bifp', mask_init='x'}]"], "variants[0].mask_init: expected 'magnitude', "),
        (["variants=[{mask_init='x'}]"], "variants[0].method: expected one of"),
        (["fairness.tolerance=abc"], "fairness.tolerance: expected a valid number or 'dense'; got 'abc'"),
        (["train.augment=1"], "train.augment: expected a valid boolean; got 1"),
        (["data.categorical=['a']", "data.name='celeba'", "data.root='x'"], "data.categorical: applies to"),
        (
            ["methods=['postprocess']", "fairness.metric='accuracy_gap'"],
            "fairness.metric: method 'postprocess'",
        ),
    ],
)
def test_one_line_errors_name_key_expectation_and_value(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_an_int_is_a_float_but_a_string_is_not_a_number() -> None:
    cfg = load_config(None, ["train.lr=1", "method_params.bifp.mask_lr=2"])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.method_params == {"bifp": {"mask_lr": 2}}


def _leaf_keys() -> list[str]:
    """Every settable leaf key except those that take a table or a list of tables."""
    keys = []
    for key, value in ExperimentConfig().to_dict().items():
        if isinstance(value, dict):
            keys += [f"{key}.{sub}" for sub in value if sub != "params"]
        elif key not in ("method_params", "variants"):
            keys.append(key)
    keys += [f"method_params.{m}.{p}" for m, spec in METHODS.items() for p in spec.params]
    return keys


LEAF_KEYS = _leaf_keys()
TABLES = st.dictionaries(st.sampled_from(["x", "y", "steps"]), st.integers(), min_size=1, max_size=2)
WRONG = st.one_of(TABLES, st.lists(TABLES, min_size=1, max_size=2))  # wrong for every leaf key
SCALARS = st.one_of(
    st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6)
)
ANY = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), TABLES)


def _nested(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(LEAF_KEYS), value=WRONG)
def test_a_wrong_type_for_any_key_is_a_config_error_naming_it(key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as error:
        config_from_dict(_nested(key, value))
    assert key in str(error.value)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(LEAF_KEYS), value=ANY)
def test_any_value_for_any_key_is_accepted_or_a_config_error_naming_it(key: str, value: Any) -> None:
    try:
        cfg = config_from_dict(_nested(key, value))
    except ConfigError as error:
        message = str(error)
        assert key in message or key.rsplit(".", 1)[0] in message, message
        assert "\n" not in message
    else:
        assert json.loads(json.dumps(cfg.to_dict(), default=str))  # a resolved config to save


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("typed")
    csv = folder / "tiny.csv"
    tiny_frame().to_csv(csv, index=False)
    cfg = tiny_config(folder, csv, seeds="[0]")
    assert main(["run", str(cfg), "--out", str(folder / "out"), "--quiet"]) == 0
    return cfg, folder / "out"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(LEAF_KEYS), value=WRONG, restart=st.booleans())
def test_the_command_line_refuses_a_wrong_value_and_keeps_the_sweep(capsys, finished, key, value, restart):
    cfg, out = finished
    before = snapshot(out)
    args = ["run", str(cfg), "--out", str(out), "--quiet", "--set", f"{key}={_toml(value)}"]
    assert main(args + (["--restart"] if restart else [])) == 2
    err = capsys.readouterr().err
    assert err.startswith("fairprune: error: ") and key in err and err.count("\n") == 1
    assert snapshot(out) == before

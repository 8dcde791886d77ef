"""Write a large UTKFace-style image folder of tiny PNGs, to time ``--quick`` on a large data set.

Each file is ``<age>_<gender>_<race>_<index>.jpg.chip.png``, a 4x4 RGB image whose red channel
carries the gender (plus noise), so that the target ``gender`` is learnable. Ages follow a
log-normal around 30 (1 to 116, like UTKFace's), races UTKFace's rough shares. 40,000 files take
a few seconds and about 160 MB of disk (one file-system block each).

Run: ``python bench/make_utkface_like.py OUT_DIR [--n 40000] [--seed 0]``, then e.g.
``fairprune run configs/celeba_blond_hair_resnet10.toml --quick --set data.name=utkface
--set data.root=OUT_DIR --set data.target=gender --set data.sensitive_attribute=race
--set 'data.params={resolution=128}'``.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

RACE_SHARES = (0.42, 0.19, 0.15, 0.17, 0.07)


def write_utkface_like(root: Path, n: int, seed: int = 0) -> np.ndarray:
    """Write ``n`` tiny labelled PNGs under ``root``; returns their ``(n, 3)`` (age, gender, race)."""
    rng = np.random.default_rng(seed)
    ages = np.clip(np.round(rng.lognormal(np.log(30), 0.55, n)), 1, 116).astype(np.int64)
    genders = rng.integers(0, 2, n)
    races = rng.choice(len(RACE_SHARES), size=n, p=RACE_SHARES)
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        pixels = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        pixels[..., 0] = np.clip(pixels[..., 0] // 2 + 128 * genders[k], 0, 255)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        folder = root / f"part{k % 4}"
        folder.mkdir(exist_ok=True)
        (folder / f"{ages[k]}_{genders[k]}_{races[k]}_{k:08d}.jpg.chip.png").write_bytes(buffer.getvalue())
    return np.stack([ages, genders, races], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    write_utkface_like(args.out, args.n, args.seed)
    print(f"wrote {args.n} images under {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

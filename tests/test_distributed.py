"""Two CPU processes (gloo) against one: the fairness term and its gradients are the global
batch's, a distributed BiFP run gives the single-process masks, and ``torchrun -m fairprune run``
writes each run once."""

from __future__ import annotations

import copy
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import planted_bias_frame, splits_from_frame
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from fairprune.cli import main
from fairprune.data.base import Splits
from fairprune.distributed import process_group
from fairprune.engine import Task, TrainConfig, train_weights
from fairprune.fairness.constraints import Constraint
from fairprune.fairness.objective import FairnessObjective
from fairprune.fairness.surrogates import SURROGATES
from fairprune.masks import get_masks
from fairprune.models import build_model
from fairprune.pruners import BiFPSparsifier, build_pruner, run_pruner
from fairprune.samplers import StratifiedBatchSampler

WORLD = 2
N, GROUPS = 40, 3


def _spawn(fn: Any, tmp_path: Path) -> list[dict[str, Any]]:
    """Run ``fn(rank, world, tmp_path)`` in two gloo processes; the dicts each rank saved."""
    mp.spawn(fn, args=(WORLD, tmp_path), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _init(rank: int, world: int, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=rank, world_size=world)


def _batch() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, 5, generator=gen)
    logits = torch.randn(N, 2, generator=gen) * 2
    y = torch.randint(0, 2, (N,), generator=gen)
    g = torch.arange(N) % GROUPS
    return x, logits, y, g


def _constraints() -> dict[str, Constraint]:
    out = {}
    for metric in SURROGATES:
        constraint = Constraint(FairnessObjective(metric, 0.0, mode="lagrangian"), GROUPS)
        constraint.multipliers[:] = 1.5  # the term is live
        out[metric] = constraint
    return out


def _surrogate_terms(rows: Tensor) -> dict[str, Any]:
    """Surrogate values, logit gradients, and the DDP-style gradient of a Linear model's
    ``CE + term`` on the samples ``rows`` of the batch."""
    x, logits, y, g = _batch()
    out: dict[str, Any] = {}
    for metric, constraint in _constraints().items():
        local = logits[rows].clone().requires_grad_()
        phi = constraint.surrogate(local, y[rows], g[rows])
        phi.sum().backward()
        out[metric] = (phi.detach(), local.grad)
        torch.manual_seed(0)
        model = nn.Linear(5, 2)
        net = DistributedDataParallel(model) if dist.is_initialized() else model
        scores = net(x[rows])
        loss = nn.functional.cross_entropy(scores, y[rows]) + constraint.term(scores, y[rows], g[rows])
        loss.backward()
        out[f"{metric}_weight_grad"] = model.weight.grad.clone()
    return out


def _surrogate_worker(rank: int, world: int, tmp_path: Path) -> None:
    _init(rank, world, tmp_path)
    try:
        torch.save(_surrogate_terms(torch.arange(rank, N, world)), tmp_path / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_surrogates_and_gradients_equal_one_process_on_the_whole_batch(tmp_path):
    ranks = _spawn(_surrogate_worker, tmp_path)
    whole = _surrogate_terms(torch.arange(N))
    for metric in SURROGATES:
        value, grad = whole[metric]
        assert float(value.abs().max()) > 0.01  # a live term
        for rank, result in enumerate(ranks):
            rank_value, rank_grad = result[metric]
            torch.testing.assert_close(rank_value, value, rtol=0, atol=1e-6)
            # d(global term)/d(local logits) is W times the one-process gradient of those rows,
            # which DDP's average over the ranks turns back into the one-process gradient
            torch.testing.assert_close(rank_grad / WORLD, grad[rank::WORLD], rtol=0, atol=1e-6)
            torch.testing.assert_close(
                result[f"{metric}_weight_grad"], whole[f"{metric}_weight_grad"], rtol=0, atol=1e-6
            )


def _splits() -> Splits:
    return splits_from_frame(planted_bias_frame(n=1600))


def _dense(splits: Splits) -> nn.Module:
    torch.manual_seed(0)
    model = build_model("mlp", (25,), 2, hidden=[16, 8])
    train_weights(model, Task(splits, None, TrainConfig(batch_size=64, eval_every=40), 0), 40)
    return model


def _user_loop(splits: Splits, dense: nn.Module, rank: int, world: int) -> dict[str, Any]:
    """The Python API page's loop under DDP: a shard of each global batch of 64 per rank."""
    model = copy.deepcopy(dense)
    objective = FairnessObjective("equalized_odds", 0.01, mode="lagrangian", dual_step=5.0)
    sparsifier = BiFPSparsifier(0.8, Constraint(objective, 2))
    sparsifier.prepare(model)
    net = DistributedDataParallel(model) if world > 1 else model
    train, val = splits.train, splits.val
    sampler = StratifiedBatchSampler(train.y, train.groups, 64, seed=0, rank=rank, world_size=world)
    loader = DataLoader(TensorDataset(train.x, train.y, train.groups), batch_sampler=sampler)
    shard = torch.arange(rank, len(val), world)
    val_loader = DataLoader(TensorDataset(val.x[shard], val.y[shard], val.groups[shard]), batch_size=256)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def loss_on(batch: list[Tensor]) -> Tensor:
        x, y, g = batch
        logits = net(x)
        return nn.functional.cross_entropy(logits, y) + sparsifier.fairness_term(logits, y, g)

    multipliers = []
    for step in range(1, 21):
        loss = loss_on(next(batches))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sparsifier.step(lambda: loss_on(next(batches)))
        if step % 5 == 0:
            sparsifier.update_multiplier(val_loader)
            multipliers.append(sparsifier.constraint.multiplier)
    return {"masks": get_masks(model), "multipliers": multipliers}


def _harness(splits: Splits, dense: nn.Module) -> dict[str, Any]:
    model = copy.deepcopy(dense)
    objective = FairnessObjective("equalized_odds", 0.01, mode="lagrangian", dual_step=5.0)
    task = Task(splits, objective, TrainConfig(batch_size=64, eval_every=5), seed=0)
    result = run_pruner(build_pruner("bifp", steps=15, finetune_steps=5), model, 0.8, task)
    return {"masks": result.masks, "multipliers": [row["multiplier"] for row in result.history]}


def _bifp_worker(rank: int, world: int, tmp_path: Path) -> None:
    _init(rank, world, tmp_path)
    try:
        splits = _splits()
        dense = _dense(splits)
        out = {"user": _user_loop(splits, dense, rank, world), "harness": _harness(splits, dense)}
        torch.save(out, tmp_path / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_distributed_bifp_gives_the_single_process_masks(tmp_path):
    """Same global batches and seed: the DDP user loop and the harness's bifp under two ranks
    give the masks and multipliers of one process."""
    ranks = _spawn(_bifp_worker, tmp_path)
    splits = _splits()
    dense = _dense(splits)
    single = {"user": _user_loop(splits, dense, 0, 1), "harness": _harness(splits, dense)}
    for run in ("user", "harness"):
        expected = single[run]
        assert max(expected["multipliers"]) > 0
        initial = BiFPSparsifier(0.8)
        start = copy.deepcopy(dense)
        initial.prepare(start)
        assert any(not torch.equal(expected["masks"][k], m) for k, m in get_masks(start).items())
        for result in ranks:
            assert result[run]["multipliers"] == pytest.approx(expected["multipliers"], rel=1e-6, abs=1e-9)
            for name, mask in expected["masks"].items():
                assert torch.equal(result[run]["masks"][name], mask), (run, name)


TINY = """
methods = ["dense", "magnitude", "bifp"]
sparsities = [0.8]
seeds = [0]

[data]
name = "csv"
path = "{csv}"
target = "label"
sensitive_attribute = "group"

[model]
name = "mlp"
params = {{ hidden = [16] }}

[train]
dense_steps = 20
batch_size = 64
eval_every = 5

[method_params.magnitude]
finetune_steps = 5

[method_params.bifp]
steps = 5
finetune_steps = 5
"""


def _torchrun(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in its own session; on a timeout kill the launcher and its workers."""
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def test_torchrun_writes_each_run_once_and_resumes(tmp_path, planted_csv, capsys):
    """``torchrun --standalone --nproc_per_node=2 -m fairprune run``: rank 0 alone reports and
    writes one record per run, the results equal one process's, and a rerun resumes (skips all)."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.format(csv=planted_csv))
    out = tmp_path / "out"
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "fairprune", "run", str(config), "--out", str(out), "--quiet",
    ]  # fmt: skip
    first = _torchrun(command, env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("results:") == 1  # rank 0 reports, rank 1 does not
    records = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert records == ["bifp__s0.8__seed0.json", "dense__s0__seed0.json", "magnitude__s0.8__seed0.json"]
    assert not list(out.glob("**/*.tmp")) and len(list((out / "dense").iterdir())) == 1
    frame = pd.read_csv(out / "results.csv")
    assert sorted(frame["run_id"]) == [r.removesuffix(".json") for r in records]
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    again = _torchrun(command, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == stamps

    assert main(["run", str(config), "--out", str(tmp_path / "single"), "--quiet"]) == 0
    single = pd.read_csv(tmp_path / "single" / "results.csv")
    exact = ["run_id", "accuracy", "equalized_odds_difference", "val_violation", "achieved_sparsity"]
    pd.testing.assert_frame_equal(frame[exact], single[exact], check_exact=False, rtol=0, atol=1e-9)


PRUNE_SCRIPT = """
import sys, torch
from torch import nn
import fairprune
import fairprune.distributed
from fairprune.distributed import is_main_process

seen = {"world": 1}
join = fairprune.distributed.init_from_env

def spy(device):  # records that prune joined torchrun's process group
    joined, device = join(device)
    seen["world"] = torch.distributed.get_world_size() if joined else 1
    return joined, device

fairprune.distributed.init_from_env = spy  # what process_group joins with

def data(seed, n=400):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    groups = torch.randint(0, 2, (n,), generator=g)
    y = ((x[:, 0] + 0.8 * groups + 0.3 * torch.randn(n, generator=g)) > 0.4).long()
    return x, y, groups

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 2))
result = fairprune.prune(
    model, data(1), data(2), sparsity=0.8, method="bifp", tolerance=0.05, progress=False,
    device="cpu", steps=20, finetune_steps=10,
)
if is_main_process():
    torch.save({"masks": result.masks, "metrics": result.metrics, "world": seen["world"]}, sys.argv[1])
"""


def test_prune_under_torchrun_gives_the_single_process_masks(tmp_path):
    """``fairprune.prune`` called under ``torchrun --nproc_per_node=2``: the same masks and
    metrics as one process (the global batch is the same; each rank trains its shard)."""
    script = tmp_path / "prune_script.py"
    script.write_text(PRUNE_SCRIPT)
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    two = tmp_path / "two.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    ran = _torchrun([*command, str(script), str(two)], env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    one = tmp_path / "one.pt"
    single = subprocess.run([sys.executable, str(script), str(one)], env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = torch.load(two, weights_only=True), torch.load(one, weights_only=True)
    assert (a["world"], b["world"]) == (2, 1)  # prune joined the process group under torchrun
    assert a["masks"].keys() == b["masks"].keys()
    for name in a["masks"]:
        assert torch.equal(a["masks"][name], b["masks"][name]), name
    for split in ("train", "val"):
        for key, value in b["metrics"][split]["pruned"].items():
            assert a["metrics"][split]["pruned"][key] == pytest.approx(value, abs=1e-9), (split, key)


def test_process_group_outside_torchrun_joins_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with process_group("cpu") as device:
        assert device == "cpu" and not torch.distributed.is_initialized()
    with pytest.raises(RuntimeError, match="inside"), process_group("cpu"):
        raise RuntimeError("inside")  # an error in the block passes through unchanged

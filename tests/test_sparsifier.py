"""Methods in the user's own loop: BiFPSparsifier equals the harness's bifp, resumes, runs under
autocast, and bakes a plain model; ScoreSparsifier equals the harness's prune-then-fair; the
stratified sampler equals the harness's batches."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, TensorDataset

from fairprune.data.base import Splits
from fairprune.engine import Task, TrainConfig, stratified_batches, train_weights
from fairprune.fairness.constraints import Constraint
from fairprune.fairness.objective import FairnessObjective
from fairprune.masks import get_masks
from fairprune.models import build_model
from fairprune.pruners import build_pruner, run_pruner
from fairprune.pruners.bifp_update import BiFPSparsifier
from fairprune.pruners.importance import SnipImportance
from fairprune.pruners.space import WeightSpace
from fairprune.pruners.sparsifier import FairSparsifier, ScoreSparsifier
from fairprune.samplers import StratifiedBatchSampler

BATCH = 64


@pytest.fixture(scope="module")
def small_dense(planted_splits: Splits) -> nn.Module:
    torch.manual_seed(0)
    model = build_model("mlp", (25,), 2, hidden=[16, 8])
    train_weights(model, Task(planted_splits, None, TrainConfig(batch_size=BATCH, eval_every=50), 0), 50)
    return model


def _loader(splits: Splits, seed: int = 0) -> DataLoader:
    train = splits.train
    sampler = StratifiedBatchSampler(train.y, train.groups, BATCH, seed=seed)
    return DataLoader(TensorDataset(train.x, train.y, train.groups), batch_sampler=sampler)


def user_loop(
    model: nn.Module,
    splits: Splits,
    sparsifier: FairSparsifier,
    steps: int,
    *,
    alternating: bool = True,
    eval_every: int = 0,
    snapshots: list[dict[str, Tensor]] | None = None,
) -> list[float]:
    """The plain PyTorch loop of docs/python-api.md; returns the multiplier after each multiplier
    update (and appends the masks at each to ``snapshots``)."""
    train = _loader(splits)
    val = DataLoader(TensorDataset(splits.val.x, splits.val.y, splits.val.groups), batch_size=1024)
    batches: Iterator[list[Tensor]] = itertools.chain.from_iterable(itertools.repeat(train))  # endless
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    def loss_on(batch: list[Tensor]) -> Tensor:
        x, y, g = batch
        logits = model(x)
        return nn.functional.cross_entropy(logits, y) + sparsifier.fairness_term(logits, y, g)

    multipliers = []
    for step in range(1, steps + 1):
        loss = loss_on(next(batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if alternating:
            sparsifier.step(lambda: loss_on(next(batches)))  # the scores, on a second batch
        else:
            sparsifier.step()  # the scores, from this backward pass
        if eval_every and step % eval_every == 0:
            if snapshots is not None:
                snapshots.append(get_masks(model))
            sparsifier.update_multiplier(val)
            multipliers.append(sparsifier.constraint.multiplier if sparsifier.constraint else 0.0)
    return multipliers


def _harness(
    dense: nn.Module,
    splits: Splits,
    objective: FairnessObjective,
    steps: int,
    eval_every: int,
    **params: object,
) -> tuple[nn.Module, list[dict[str, float]]]:
    model = copy.deepcopy(dense)
    config = TrainConfig(batch_size=BATCH, lr=0.05, weight_decay=5e-4, grad_clip=1.0, eval_every=eval_every)
    task = Task(splits, objective, config, seed=0)
    pruner = build_pruner("bifp", steps=steps, finetune_steps=0, **params)
    result = run_pruner(pruner, model, 0.8, task)
    return model, result.history


@pytest.mark.parametrize("schedule", ["alternating", "joint"])
def test_user_loop_gives_the_harness_masks_and_weights(small_dense, planted_splits, schedule):
    """Penalty mode (the term is on from the first step), one validation at the end: the
    harness's bifp and the plain loop with the sparsifier are the same computation."""
    objective = FairnessObjective("equalized_odds", 0.02, mode="penalty", penalty_weight=2.0)
    steps = 30
    harness_model, _ = _harness(small_dense, planted_splits, objective, steps, steps, schedule=schedule)

    model = copy.deepcopy(small_dense)
    sparsifier = BiFPSparsifier(0.8, Constraint(objective, 2))
    sparsifier.prepare(model)
    initial = get_masks(model)
    user_loop(model, planted_splits, sparsifier, steps, alternating=schedule == "alternating")
    sparsifier.finalize()

    user_masks, harness_masks = get_masks(model), get_masks(harness_model)
    assert any(not torch.equal(user_masks[k], initial[k]) for k in initial)  # the masks moved
    for name in harness_masks:
        assert torch.equal(user_masks[name], harness_masks[name]), name
    for (name, p), q in zip(model.state_dict().items(), harness_model.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    assert sum(int((m == 0).sum()) for m in user_masks.values()) == round(0.8 * (25 * 16 + 16 * 8 + 8 * 2))


def test_user_loop_multipliers_and_masks_equal_the_harness_lagrangian(small_dense, planted_splits):
    """Lagrangian: the dual steps on the exact validation metric give the harness's multipliers,
    and the harness's chosen checkpoint holds the masks the user loop had at that validation."""
    objective = FairnessObjective("equalized_odds", 0.01, mode="lagrangian", dual_step=5.0)
    steps, every = 30, 10
    harness_model, history = _harness(small_dense, planted_splits, objective, steps, every)

    model = copy.deepcopy(small_dense)
    sparsifier = BiFPSparsifier(0.8, Constraint(objective, 2))
    sparsifier.prepare(model)
    snapshots: list[dict[str, Tensor]] = []
    multipliers = user_loop(model, planted_splits, sparsifier, steps, eval_every=every, snapshots=snapshots)

    expected = [row["multiplier"] for row in history]
    assert len(expected) == 3 and expected[-1] > 0
    assert multipliers == pytest.approx(expected, rel=0, abs=1e-12)
    harness_masks = get_masks(harness_model)
    assert any(all(torch.equal(s[k], harness_masks[k]) for k in s) for s in snapshots)
    assert not all(torch.equal(snapshots[0][k], snapshots[-1][k]) for k in harness_masks)


def _checkpoint(model: nn.Module, sparsifier: BiFPSparsifier) -> dict[str, object]:
    return copy.deepcopy({"model": model.state_dict(), "sparsifier": sparsifier.state_dict()})


@pytest.mark.parametrize("controller", ["ascent", "nupi"])
def test_state_dict_resumes_scores_optimizer_and_multiplier(small_dense, planted_splits, controller):
    """Train 10 steps, checkpoint, train 10 more; a fresh model and sparsifier loaded from the
    checkpoint and trained the same 10 steps end with the same scores, masks and multipliers
    (the controller's state resumes: nuPI's smoothed error, the anti-windup's record)."""
    objective = FairnessObjective(
        "equalized_odds", 0.0, mode="lagrangian", dual_step=5.0, controller=controller, kp=1.0, ema_nu=0.5
    )
    model = copy.deepcopy(small_dense)
    sparsifier = BiFPSparsifier(0.8, Constraint(objective, 2))
    sparsifier.prepare(model)
    user_loop(model, planted_splits, sparsifier, 10, alternating=False, eval_every=5)
    saved = _checkpoint(model, sparsifier)
    assert saved["sparsifier"]["constraint"]["multipliers"][0] > 0  # the dual steps happened
    assert saved["sparsifier"]["steps"] == 10 and saved["sparsifier"]["optimizer"]["state"]
    assert saved["sparsifier"]["constraint"]["controller"]["steps"] == 2
    after = user_loop(model, planted_splits, sparsifier, 10, alternating=False, eval_every=5)

    fresh = copy.deepcopy(small_dense)
    resumed = BiFPSparsifier(0.8, Constraint(objective, 2))
    resumed.prepare(fresh)  # masks on first: the checkpoint's model state has parametrized names
    fresh.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["sparsifier"])
    assert resumed.constraint is not None and sparsifier.constraint is not None
    assert resumed.constraint.multiplier == saved["sparsifier"]["constraint"]["multipliers"][0]
    assert user_loop(fresh, planted_splits, resumed, 10, alternating=False, eval_every=5) == after
    assert resumed.constraint.state_dict() == sparsifier.constraint.state_dict()
    for name, score in sparsifier.scores.items():
        torch.testing.assert_close(resumed.scores[name], score, rtol=0, atol=0)
    masks, again = get_masks(model), get_masks(fresh)
    assert all(torch.equal(masks[k], again[k]) for k in masks)
    assert resumed.steps == 20


def test_load_state_dict_refuses_another_model_or_metric(small_dense):
    sparsifier = BiFPSparsifier(0.5, Constraint(FairnessObjective("equalized_odds"), 2))
    sparsifier.prepare(copy.deepcopy(small_dense))
    other = BiFPSparsifier(0.5, Constraint(FairnessObjective("demographic_parity"), 2))
    other.prepare(copy.deepcopy(small_dense))
    with pytest.raises(ValueError, match="metric 'equalized_odds' cannot be loaded into a constraint on"):
        other.load_state_dict(sparsifier.state_dict())
    state = sparsifier.state_dict()
    state["scores"] = {"features.0.weight": state["scores"]["features.0.weight"]}
    with pytest.raises(ValueError, match="has scores for"):
        sparsifier.load_state_dict(state)


def test_bf16_autocast_on_cpu(small_dense, planted_splits):
    """Under CPU bf16 autocast: the fairness term is float32, the scores stay float32 and finite,
    the masks move and keep the exact sparsity."""
    objective = FairnessObjective("equalized_odds", 0.0, mode="penalty", penalty_weight=1.0)
    model = copy.deepcopy(small_dense)
    sparsifier = BiFPSparsifier(0.8, Constraint(objective, 2))
    sparsifier.prepare(model)
    initial = get_masks(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for x, y, g in itertools.islice(
        itertools.chain.from_iterable(itertools.repeat(_loader(planted_splits))), 10
    ):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
            term = sparsifier.fairness_term(logits, y, g)
            loss = nn.functional.cross_entropy(logits, y) + term
        assert logits.dtype == torch.bfloat16 and term.dtype == torch.float32
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sparsifier.step()
    masks = get_masks(model)
    assert sum(int((m == 0).sum()) for m in masks.values()) == round(0.8 * 544)
    assert any(not torch.equal(masks[k], initial[k]) for k in masks)
    assert all(s.dtype == torch.float32 and bool(torch.isfinite(s).all()) for s in sparsifier.scores.values())


def test_squash_mask_returns_a_plain_model_with_the_masked_outputs(small_dense, planted_splits):
    model = copy.deepcopy(small_dense)
    sparsifier = BiFPSparsifier(0.9)
    sparsifier.prepare(model, init="random", seed=3)
    x = planted_splits.val.x[:50]
    with torch.no_grad():
        masked = model(x)
    plain = sparsifier.squash_mask()
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())
    with torch.no_grad():
        torch.testing.assert_close(plain(x), masked, rtol=0, atol=0)
    zeros = sum(int((p == 0).sum()) for n, p in plain.named_parameters() if n.endswith("weight"))
    assert zeros == round(0.9 * 544)
    assert torch.equal(
        sparsifier.fairness_term(masked, planted_splits.val.y[:50], planted_splits.val.groups[:50]),
        torch.tensor(0.0),
    )


def test_channel_sparsifier_slims(small_dense, planted_splits):
    model = copy.deepcopy(small_dense)
    sparsifier = BiFPSparsifier(0.5, structure="channel")
    with pytest.raises(ValueError, match="needs example_input"):
        sparsifier.prepare(model)
    sparsifier.prepare(model, example_input=planted_splits.train.x[:1])
    x = planted_splits.val.x[:50]
    nn.functional.cross_entropy(model(planted_splits.train.x[:64]), planted_splits.train.y[:64]).backward()
    sparsifier.step()
    sparsifier.finalize()
    with torch.no_grad():
        masked = model.eval()(x)
    slim = sparsifier.squash_mask(slim=True)
    widths = [m.out_features for m in slim.modules() if isinstance(m, nn.Linear)]
    assert widths[-1] == 2 and sum(widths[:-1]) < 24  # hidden channels removed
    with torch.no_grad():
        torch.testing.assert_close(slim.eval()(x), masked, rtol=1e-5, atol=1e-5)


def test_bad_use_is_a_clear_error(small_dense):
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        BiFPSparsifier(1.0)
    with pytest.raises(RuntimeError, match="call BiFPSparsifier.prepare"):
        BiFPSparsifier(0.5).step()
    sparsifier = BiFPSparsifier(0.5, mask_fairness=0.0, weight_fairness=1.0)
    sparsifier.prepare(copy.deepcopy(small_dense))
    with pytest.raises(ValueError, match="needs mask_fairness == weight_fairness"):
        sparsifier.step()
    joint = BiFPSparsifier(0.5)
    joint.prepare(copy.deepcopy(small_dense))
    with pytest.raises(ValueError, match="no recorded gradient"):
        joint.step()  # no backward pass since prepare


def test_sampler_loader_yields_the_harness_batches(planted_splits):
    """Two epochs of a DataLoader over the sampler are the harness's first batches, and two
    ranks' shards of each global batch together are that batch, each holding every cell."""
    train = planted_splits.train
    harness = stratified_batches(train, BATCH, torch.Generator().manual_seed(0), 2)
    loader = _loader(planted_splits)
    for _, (x, y, g) in zip(range(2 * len(loader)), itertools.chain(loader, loader), strict=False):
        batch = next(harness)
        assert torch.equal(x, batch.x) and torch.equal(y, batch.y) and torch.equal(g, batch.groups)
    ranks = [
        StratifiedBatchSampler(train.y, train.groups, BATCH, seed=0, rank=r, world_size=2) for r in (0, 1)
    ]
    single = StratifiedBatchSampler(train.y, train.groups, BATCH, seed=0)
    for whole, *shards in zip(single, *ranks, strict=True):
        assert (
            sorted(shards[0] + shards[1]) == sorted(whole) and len(shards[0]) == len(shards[1]) == BATCH // 2
        )
        for shard in shards:
            cells = train.y[shard] * 2 + train.groups[shard]
            assert set(cells.tolist()) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="must be a multiple of world_size"):
        StratifiedBatchSampler(train.y, train.groups, 63, world_size=2)


def test_update_multiplier_takes_a_split_or_a_loader_and_rejects_other_items(small_dense, planted_splits):
    """On a split or on a loader over it: the same exact violation, and mu = eta * (F - tau)."""
    val = planted_splits.val
    objective = FairnessObjective("equalized_odds", 0.01, mode="lagrangian", dual_step=2.0)
    results = []
    for source in (val, DataLoader(TensorDataset(val.x, val.y, val.groups), batch_size=100)):
        sparsifier = BiFPSparsifier(0.5, Constraint(objective, 2))
        sparsifier.prepare(copy.deepcopy(small_dense))
        violation = sparsifier.update_multiplier(source)
        assert sparsifier.constraint is not None
        assert sparsifier.constraint.multiplier == pytest.approx(2.0 * (violation - 0.01), abs=1e-12)
        results.append(violation)
    assert results[0] == results[1] > 0.01
    with pytest.raises(ValueError, match=r"expects batches \(x, y, groups\).*received a Tensor"):
        sparsifier.update_multiplier([val.x])


def test_gradient_accumulation_records_the_full_batch_g(small_dense, planted_splits):
    """Two micro-batches with the loss halved record the g of the whole batch (no fairness term:
    the cross-entropy is a mean), so the joint step moves the scores the same way (plain SGD on the
    scores here, so that the step is the score gradient itself)."""
    x, y = planted_splits.train.x[:64], planted_splits.train.y[:64]
    moves = []
    for chunks in (1, 2):
        model = copy.deepcopy(small_dense)
        sparsifier = BiFPSparsifier(0.8)
        sparsifier.prepare(model)
        sparsifier.optimizer = torch.optim.SGD(list(sparsifier.scores.values()), lr=1.0)
        before = sparsifier.state_dict()["scores"]
        for xs, ys in zip(x.chunk(chunks), y.chunk(chunks), strict=True):
            (nn.functional.cross_entropy(model(xs), ys) / chunks).backward()
        sparsifier.step()
        moves.append({n: s - before[n] for n, s in sparsifier.state_dict()["scores"].items()})
    for name, move in moves[0].items():
        assert float(move.abs().max()) > 0
        torch.testing.assert_close(moves[1][name], move, rtol=1e-4, atol=1e-7)


# --- the score-once methods in the user's loop (ScoreSparsifier) ---------------------------------


def _score_harness(
    dense: nn.Module, splits: Splits, objective: FairnessObjective, steps: int, eval_every: int
) -> tuple[nn.Module, list[dict[str, float]]]:
    model = copy.deepcopy(dense)
    config = TrainConfig(batch_size=BATCH, lr=0.05, weight_decay=5e-4, grad_clip=1.0, eval_every=eval_every)
    result = run_pruner(
        build_pruner("prune_then_fair", finetune_steps=steps),
        model,
        0.8,
        Task(splits, objective, config, seed=0),
    )
    return model, result.history


def test_score_sparsifier_in_a_user_loop_is_the_harness_prune_then_fair(small_dense, planted_splits):
    """Penalty mode, one validation at the end: the harness's prune-then-fair (magnitude masks,
    then fine-tuning under the constraint) and the plain loop driving ScoreSparsifier are the same
    computation, masks and weights bit for bit."""
    objective = FairnessObjective("equalized_odds", 0.02, mode="penalty", penalty_weight=2.0)
    harness_model, _ = _score_harness(small_dense, planted_splits, objective, 30, 30)
    model = copy.deepcopy(small_dense)
    sparsifier = ScoreSparsifier(0.8, Constraint(objective, 2))
    sparsifier.prepare(model)
    initial = get_masks(model)
    user_loop(model, planted_splits, sparsifier, 30, alternating=False)
    masks = get_masks(model)
    assert all(torch.equal(masks[k], initial[k]) for k in initial)  # fixed while fine-tuning
    assert sum(int((m == 0).sum()) for m in masks.values()) == round(0.8 * (25 * 16 + 16 * 8 + 8 * 2))
    for (name, p), q in zip(model.state_dict().items(), harness_model.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def test_score_sparsifier_multipliers_equal_the_harness_lagrangian(small_dense, planted_splits):
    objective = FairnessObjective("equalized_odds", 0.01, mode="lagrangian", dual_step=5.0)
    _, history = _score_harness(small_dense, planted_splits, objective, 30, 10)
    model = copy.deepcopy(small_dense)
    sparsifier = ScoreSparsifier(0.8, Constraint(objective, 2))
    sparsifier.prepare(model)
    multipliers = user_loop(model, planted_splits, sparsifier, 30, alternating=False, eval_every=10)
    expected = [row["multiplier"] for row in history]
    assert len(expected) == 3 and expected[-1] > 0
    assert multipliers == pytest.approx(expected, rel=0, abs=1e-12)
    state = sparsifier.state_dict()
    fresh = ScoreSparsifier(0.8, Constraint(objective, 2))
    fresh.prepare(copy.deepcopy(small_dense))
    fresh.load_state_dict(state)
    assert fresh.constraint is not None and fresh.constraint.multiplier == multipliers[-1]


def test_score_sparsifier_criteria_and_its_plain_model(small_dense, planted_splits):
    x = planted_splits.test.x
    by_seed = []
    for seed in (3, 3, 4):
        model = copy.deepcopy(small_dense)
        sparsifier = ScoreSparsifier(0.5, importance="random")
        sparsifier.prepare(model, seed=seed)
        by_seed.append(get_masks(model))
    assert all(torch.equal(by_seed[0][k], by_seed[1][k]) for k in by_seed[0])
    assert any(not torch.equal(by_seed[0][k], by_seed[2][k]) for k in by_seed[0])
    model = copy.deepcopy(small_dense)
    sparsifier = ScoreSparsifier(0.5)  # magnitude: the smallest |theta| go
    sparsifier.prepare(model)
    weights = torch.cat([small_dense.get_parameter(n).detach().abs().flatten() for n in get_masks(model)])
    kept = torch.cat([m.flatten() for m in get_masks(model).values()]).bool()
    assert float(weights[kept].min()) >= float(weights[~kept].max())
    with torch.no_grad():
        masked = model(x)
    plain = sparsifier.squash_mask()
    assert not parametrize.is_parametrized(plain)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), masked, rtol=0, atol=0)
    assert sparsifier.fairness_term(masked, planted_splits.test.y, planted_splits.test.groups).item() == 0.0


def test_score_sparsifier_bad_use_is_a_clear_error(small_dense):
    with pytest.raises(ValueError, match=r"unknown importance 'snip'; expected one of \('magnitude'"):
        ScoreSparsifier(0.5, importance="snip")
    with pytest.raises(ValueError, match="importance='fpgm' ranks filters; expected structure='channel'"):
        ScoreSparsifier(0.5, importance="fpgm")
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\); received 1.0"):
        ScoreSparsifier(1.0)
    with pytest.raises(ValueError, match=r"pruner: scope: .*'global'.*'layer'.*'rows'"):
        ScoreSparsifier(0.5, scope="rows")
    with pytest.raises(RuntimeError, match=r"call ScoreSparsifier.prepare\(model\) first"):
        ScoreSparsifier(0.5).step()
    with pytest.raises(ValueError, match="SNIP scores from training batches; expected a task"):
        SnipImportance()(small_dense, WeightSpace("global"), None)

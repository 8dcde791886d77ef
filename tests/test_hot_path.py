"""The learned mask's hot path gives exactly what the plain path gives: flat mask slots, the
warm-started top-k over flat scores, incremental channel gates, g alone for the upper pass, and
Adam without the Optimizer wrapper."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fairprune.masks import MaskSlots, apply_masks, flat_alias, get_masks, topk_masks
from fairprune.models import build_model
from fairprune.pruners import bifp_update
from fairprune.pruners.bifp_update import BiFPSparsifier
from fairprune.pruners.space import ChannelSpace
from fairprune.structured import apply_channel_masks
from fairprune.topk import TopK


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", (12,), 2, hidden=[16, 8])


def _masked_mlp(target: float = 0.5) -> nn.Module:
    model = _mlp()
    apply_masks(
        model, topk_masks({n: p.abs() for n, p in model.named_parameters() if n.endswith("weight")}, target)
    )
    return model


def test_flat_alias_finds_consecutive_slices_of_one_buffer_only():
    flat = torch.arange(10.0)
    a, b = flat[:3].view(3, 1), flat[3:]
    joined = flat_alias([a, b])
    assert joined is not None and joined.data_ptr() == flat.data_ptr() and joined.tolist() == flat.tolist()
    assert flat_alias([b, a]) is None  # out of order
    assert flat_alias([flat[:3], flat[4:]]) is None  # a gap
    assert flat_alias([torch.arange(6.0).view(2, 3).t()]) is None  # not contiguous
    assert flat_alias([torch.zeros(3), torch.zeros(3)]) is None  # two buffers


def test_mask_slots_alias_the_buffers_and_write_every_mask():
    model = _masked_mlp()
    before = get_masks(model)
    slots = MaskSlots(model)
    assert get_masks(model).keys() == before.keys()
    for name, mask in get_masks(model).items():  # binding to the flat buffer changed no mask
        assert torch.equal(mask, before[name])
    new = (torch.rand(slots.flat.numel(), generator=torch.Generator().manual_seed(1)) > 0.3).float()
    slots.write(new)
    assert torch.equal(torch.cat([m.reshape(-1) for m in get_masks(model).values()]), new)
    # load_state_dict writes in place: the buffers stay slices of the flat one
    state = copy.deepcopy(model.state_dict())
    slots.write(torch.zeros_like(new))
    model.load_state_dict(state)
    assert torch.equal(slots.flat, new)
    # a replaced buffer is taken in again at the next write
    first = slots.modules[0]
    first.mask = first.mask.clone()
    slots.write(1.0 - new)
    assert torch.equal(torch.cat([m.reshape(-1) for m in get_masks(model).values()]), 1.0 - new)


def test_mask_slots_need_a_mask_on_every_weight():
    with pytest.raises(ValueError, match=r"mask on every prunable weight; \['features.0.weight'"):
        MaskSlots(_mlp())


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_flat_keep_equals_topk_masks_over_many_moving_steps(scope):
    """The warm-started flat top-k (band search) equals a fresh top-k every time."""
    gen = torch.Generator().manual_seed(0)
    scores = {"a": torch.randn(40, 30, generator=gen), "b": torch.randn(500, generator=gen)}
    topk = TopK()
    sizes = [("a", 1200), ("b", 500)]
    for _ in range(30):
        scores = {n: s + 0.05 * torch.randn(s.shape, generator=gen) for n, s in scores.items()}
        flat = torch.cat([s.reshape(-1) for s in scores.values()])
        expected = torch.cat([m.reshape(-1) for m in topk_masks(scores, 0.8, scope=scope).values()])
        assert torch.equal(topk.keep(flat, 0.8, scope=scope, segments=sizes), expected)
    with pytest.raises(ValueError, match="segments covering all 1700 scores"):
        topk.keep(flat, 0.8, scope="layer", segments=[("a", 1200)])


def test_incremental_channel_gates_equal_a_full_write():
    """Gates rewritten only for the groups whose kept channels changed equal the masks that
    apply_channel_masks writes from scratch (ResNet10: residual groups, several consumers)."""
    torch.manual_seed(0)
    model = build_model("resnet10", (3, 16, 16), 2)
    x = torch.randn(1, 3, 16, 16)
    space = ChannelSpace(model, x)
    gen = torch.Generator().manual_seed(0)
    scores = {g.id: torch.rand(g.n_channels, generator=gen) for g in space.groups}
    space.apply(model, scores, 0.5, gate=True)
    slots = MaskSlots(model)
    incremental = []
    write_gates = space._write_gates
    space._write_gates = lambda *args: incremental.append(1) or write_gates(*args)  # type: ignore[method-assign]
    for step in range(6):
        moved = {gid: s + 0.3 * torch.rand(s.shape, generator=gen) for gid, s in scores.items()}
        if step % 2:  # also a step where only one group changes
            moved = dict(
                scores, **{space.groups[step].id: torch.rand(space.groups[step].n_channels, generator=gen)}
            )
        scores = moved
        space.apply(model, scores, 0.5, gate=True, slots=slots)
        keep, _, _ = space._written
        fresh = copy.deepcopy(model)
        apply_channel_masks(fresh, space.groups, keep, inputs_only=True)
        for name, mask in get_masks(fresh).items():
            assert torch.equal(get_masks(model)[name], mask), (step, name)
    assert len(incremental) >= 4  # the first write after binding the slots is a full one


def _scores_after(schedule_steps: int, *, distributed: bool, monkeypatch) -> dict[str, torch.Tensor]:
    monkeypatch.setattr(bifp_update, "is_distributed", lambda: distributed)
    model = _mlp()
    sparsifier = BiFPSparsifier(0.6)
    sparsifier.prepare(model)
    gen = torch.Generator().manual_seed(0)
    for _ in range(schedule_steps):
        x, y = torch.randn(32, 12, generator=gen), torch.randint(0, 2, (32,), generator=gen)
        sparsifier.step(lambda x=x, y=y: nn.functional.cross_entropy(model(x), y))
        assert all(p.grad is None for p in model.parameters())  # the upper pass leaves no gradient
    return sparsifier.state_dict()["scores"]


def test_upper_pass_asking_autograd_for_g_alone_equals_a_full_backward(monkeypatch):
    alone = _scores_after(5, distributed=False, monkeypatch=monkeypatch)
    full = _scores_after(5, distributed=True, monkeypatch=monkeypatch)  # loss.backward(), as DDP needs
    for name, score in alone.items():
        torch.testing.assert_close(score, full[name], rtol=0, atol=0)


def test_functional_adam_equals_optimizer_step(monkeypatch):
    """The scores' Adam without Optimizer.step's wrapper: bit for bit the same scores and state."""
    runs = []
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(bifp_update, "_functional_adam_step", lambda optimizer: False)
        model = _mlp()
        sparsifier = BiFPSparsifier(0.6)
        sparsifier.prepare(model)
        gen = torch.Generator().manual_seed(0)
        for _ in range(6):
            x, y = torch.randn(32, 12, generator=gen), torch.randint(0, 2, (32,), generator=gen)
            nn.functional.cross_entropy(model(x), y).backward()
            sparsifier.step()
        runs.append(sparsifier.state_dict())
    for name, score in runs[0]["scores"].items():
        torch.testing.assert_close(score, runs[1]["scores"][name], rtol=0, atol=0)
    fast_state, slow_state = runs[0]["optimizer"]["state"], runs[1]["optimizer"]["state"]
    for key, state in fast_state.items():
        for field in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(state[field], slow_state[key][field], rtol=0, atol=0)


def test_functional_adam_declines_other_optimizers():
    param = nn.Parameter(torch.ones(3))
    param.grad = torch.ones(3)
    assert not bifp_update._functional_adam_step(torch.optim.SGD([param], lr=1.0))
    adam = torch.optim.Adam([param], lr=1.0)
    assert not bifp_update._functional_adam_step(adam)  # no state before its first step
    adam.step()
    assert bifp_update._functional_adam_step(adam)
    assert not bifp_update._functional_adam_step(torch.optim.Adam([param], lr=1.0, amsgrad=True))


def test_scores_are_leaf_parameters_sharing_one_buffer():
    model = _mlp()
    sparsifier = BiFPSparsifier(0.5)
    sparsifier.prepare(model)
    scores = list(sparsifier.scores.values())
    assert all(s.is_leaf and isinstance(s, nn.Parameter) for s in scores)
    assert flat_alias(scores) is not None

"""``fairprune.prune``: a user's own model and data in, a plain pruned model and its metrics out."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.datasets import ImageFolder
from torchvision.transforms import ToTensor

import fairprune
from fairprune.api import default_budgets
from fairprune.data import registry
from fairprune.data.adapters import as_group_data
from fairprune.fairness import METRICS, Constraint, FairnessObjective, fairness_report, margins
from fairprune.inference import predict
from fairprune.masks import PRUNABLE_TYPES
from fairprune.models.binary import TwoLogits

FAST = {"steps": 6, "finetune_steps": 2, "progress": False}  # 6 alternating steps: 12 + 2 iterations


class TabularNet(nn.Module):
    """A user's own classifier (not one of fairprune's models)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU())
        self.head = nn.Linear(8, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def tabular(n: int, seed: int, n_groups: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (n, 6); group g in 0..n_groups-1; y = [x0 + 0.5 g > 0.5] (a group-dependent base rate)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=gen)
    g = torch.arange(n) % n_groups
    return x, ((x[:, 0] + 0.5 * g) > 0.5).long(), g


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_untouched(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert not any(parametrize.is_parametrized(m) for m in model.modules())


def assert_plain(model: nn.Module) -> None:
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert not any("mask" in name for name, _ in model.named_buffers())


def pruned_weights(model: nn.Module) -> tuple[int, int]:
    """(zeros, total) over the weights of the Linear/Conv layers."""
    weights = [m.weight for m in model.modules() if isinstance(m, PRUNABLE_TYPES)]
    return sum(int((w == 0).sum()) for w in weights), sum(w.numel() for w in weights)


def assert_metrics_recompute(result, dense: nn.Module, splits: dict, names: list[str]) -> None:
    """Every reported number equals the one recomputed on the returned (and the input) model."""
    assert set(result.metrics) == set(splits)
    for split, data in splits.items():
        data = as_group_data(data, name=split)
        dense_pred = predict(dense, data)
        pred = predict(result.model, data)
        common = {"groups": data.groups, "n_groups": len(names)}
        for which, report in (
            ("dense", fairness_report(data.y, dense_pred, **common)),
            ("pruned", fairness_report(data.y, pred, y_pred_dense=dense_pred, **common)),
        ):
            by_name = {}
            for key, value in report.items():
                if key.startswith(("group_accuracy_", "group_size_")):
                    stem, _, g = key.rpartition("_")
                    key = f"{stem}_{names[int(g)]}"
                by_name[key] = value
            assert result.metrics[split][which] == by_name
        assert "degradation_gap" in result.metrics[split]["pruned"]


def test_own_module_and_tensordataset_with_three_groups():
    torch.manual_seed(0)
    model = TabularNet(6, 2)
    before = snapshot(model)
    train, val, test = (TensorDataset(*tabular(n, seed)) for n, seed in ((300, 1), (150, 2), (150, 3)))
    names = ["a", "b", "c"]
    result = fairprune.prune(model, train, val, sparsity=0.8, test=test, group_names=names, **FAST)
    assert_untouched(model, before)
    assert_plain(result.model)
    assert type(result.model) is TabularNet and result.model is not model
    zeros, total = pruned_weights(result.model)
    assert total == 6 * 16 + 16 * 8 + 8 * 2 == 240
    assert zeros == round(0.8 * 240) == 192
    assert result.achieved_sparsity == 192 / 240
    assert sum(int((m == 0).sum()) for m in result.masks.values()) == 192
    assert set(result.masks) == {"body.0.weight", "body.2.weight", "head.weight"}
    assert result.train_iterations == 2 * 6 + 2
    assert isinstance(result.feasible, bool) and result.wall_seconds > 0
    val_data = as_group_data(val, name="val")
    dense_eo = METRICS["equalized_odds"](val_data.y, predict(model, val_data), groups=val_data.groups)
    assert result.fairness == "equalized_odds" and result.tolerance == dense_eo  # tolerance="dense"
    assert_metrics_recompute(result, model, {"train": train, "val": val, "test": test}, names)
    assert result.metrics["test"]["pruned"]["group_size_c"] == 50
    frame = result.metrics_frame()
    assert frame.loc[("test", "pruned"), "accuracy"] == result.metrics["test"]["pruned"]["accuracy"]
    again = fairprune.prune(model, train, val, sparsity=0.8, test=test, group_names=names, **FAST)
    assert all(torch.equal(again.masks[k], m) for k, m in result.masks.items())  # seeded


class GroupImageFolder(ImageFolder):
    """An image folder ``<class>/<group>_<i>.png`` yielding ``(x, y, group)``."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        x, y = super().__getitem__(index)
        return x, y, int(Path(self.samples[index][0]).name.split("_")[0])


def image_folder(root: Path, per_cell: int, seed: int) -> GroupImageFolder:
    """8x8 RGB images, 2 classes x 2 groups: class 1 is brighter, group 1 redder."""
    rng = np.random.default_rng(seed)
    for y in (0, 1):
        (root / f"class{y}").mkdir(parents=True)
        for g in (0, 1):
            for i in range(per_cell):
                pixels = rng.integers(0, 128, size=(8, 8, 3)) + 100 * y
                pixels[..., 0] += 27 * g
                Image.fromarray(pixels.astype(np.uint8)).save(root / f"class{y}" / f"{g}_{i}.png")
    return GroupImageFolder(str(root), transform=ToTensor())


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, GroupImageFolder]:
    root = tmp_path_factory.mktemp("images")
    return {"train": image_folder(root / "train", 10, 0), "val": image_folder(root / "val", 5, 1)}


def test_dataloader_over_an_image_folder(images):
    torch.manual_seed(0)
    model = small_cnn()
    before = snapshot(model)
    train = DataLoader(images["train"], batch_size=8, shuffle=True)
    val = DataLoader(images["val"], batch_size=8)
    names = ["women", "men"]
    result = fairprune.prune(model, train, val, sparsity=0.7, group_names=names, **FAST)
    assert_untouched(model, before)
    assert_plain(result.model)
    zeros, total = pruned_weights(result.model)
    assert total == 3 * 8 * 9 + 8 * 8 * 9 + 8 * 2 == 808
    assert zeros == round(0.7 * 808) == 566
    assert_metrics_recompute(result, model, {"train": images["train"], "val": images["val"]}, names)
    assert result.metrics["train"]["dense"]["group_size_men"] == 20
    again = fairprune.prune(model, train, val, sparsity=0.7, group_names=names, **FAST)
    assert all(torch.equal(again.masks[k], m) for k, m in result.masks.items())  # shuffled, seeded


def test_channel_structure_returns_a_slim_model(images):
    torch.manual_seed(0)
    model = small_cnn()
    before = snapshot(model)
    result = fairprune.prune(model, images["train"], images["val"], sparsity=0.5, structure="channel", **FAST)
    assert_untouched(model, before)
    assert_plain(result.model)
    widths = [m.out_channels for m in result.model.modules() if isinstance(m, nn.Conv2d)]
    assert widths[0] < 8 or widths[1] < 8  # channels physically removed
    assert result.channel_fraction == (16 - sum(widths)) / 16
    # to the nearest channel: the widest removes 3*9 + 8*9 = 99 weights (conv1's output, conv2's input)
    assert abs(result.achieved_sparsity * 808 - 404) <= 99 / 2
    assert_metrics_recompute(result, model, {"train": images["train"], "val": images["val"]}, ["0", "1"])


def test_one_logit_model_with_float_labels():
    torch.manual_seed(0)
    model = TabularNet(6, 1)
    before = snapshot(model)
    x, y, g = tabular(400, 1, n_groups=2)
    # float labels as BCE users hold them: (N, 1) in train, (N,) in val
    train, val = (x[:250], y[:250, None].float(), g[:250]), (x[250:], y[250:].float(), g[250:])
    result = fairprune.prune(model, train, val, sparsity=0.6, fairness="demographic_parity", **FAST)
    assert_untouched(model, before)
    assert_plain(result.model)
    assert type(result.model) is TabularNet  # the internal two-logit adapter is gone
    assert result.model(x[:5]).shape == (5, 1)
    assert set(result.masks) == {"body.0.weight", "body.2.weight", "head.weight"}
    zeros, total = pruned_weights(result.model)
    assert total == 6 * 16 + 16 * 8 + 8 == 232 and zeros == round(0.6 * 232) == 139
    assert_metrics_recompute(result, model, {"train": train, "val": val}, ["0", "1"])
    assert result.fairness == "demographic_parity"
    val_dp = METRICS["demographic_parity"](
        y[250:], predict(model, as_group_data(val, name="val")), groups=g[250:]
    )
    assert result.tolerance == val_dp == result.metrics["val"]["dense"]["demographic_parity_difference"]


def test_one_logit_adapter_gives_the_binary_margin_and_loss():
    f = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]])
    y = torch.tensor([1, 1, 0, 0])
    logits = TwoLogits(nn.Identity())(f)
    assert torch.equal(logits, torch.tensor([[0.0, 2.0], [0.0, -1.0], [0.0, 0.5], [0.0, -3.0]]))
    assert torch.equal(margins(logits, y), torch.tensor([2.0, -1.0, -0.5, 3.0]))  # (2y - 1) f
    assert torch.equal(margins(logits, y), margins(f, y))
    bce = nn.functional.binary_cross_entropy_with_logits(f.reshape(-1), y.float())
    assert torch.allclose(nn.functional.cross_entropy(logits, y), bce)
    groups = torch.tensor([0, 1, 0, 1])
    for metric in ("equalized_odds", "demographic_parity", "accuracy_gap"):
        raw = Constraint(FairnessObjective(metric, scale_free=False), 2)
        assert torch.allclose(raw.surrogate(logits, y, groups), raw.surrogate(f, y, groups))
        # scale-free: the same as the two-logit model [-f/2, f/2] it is equivalent to
        free = Constraint(FairnessObjective(metric), 2)
        halves = torch.cat([-f / 2, f / 2], dim=1)
        assert torch.allclose(free.surrogate(logits, y, groups), free.surrogate(halves, y, groups))


def test_inplace_prunes_the_model_itself():
    torch.manual_seed(0)
    model = TabularNet(6, 2)
    train, val = tabular(200, 1), tabular(100, 2)
    result = fairprune.prune(
        model,
        train,
        val,
        sparsity=0.5,
        method="magnitude",
        tolerance=0.1,
        inplace=True,
        finetune_steps=2,
        progress=False,
    )
    assert result.model is model
    assert_plain(model)
    assert pruned_weights(model) == (120, 240)
    assert result.train_iterations == 2 and result.feasible is None  # magnitude: fine-tune only
    assert result.tolerance == 0.1 and result.fairness == "equalized_odds"


def test_inplace_channel_pruning_leaves_the_model_plain_and_returns_a_slim_one():
    torch.manual_seed(0)
    model = TabularNet(6, 2)
    result = fairprune.prune(
        model, tabular(200, 1), tabular(100, 2), sparsity=0.5, structure="channel", inplace=True, **FAST
    )
    assert result.model is not model
    assert_plain(model)
    assert_plain(result.model)
    assert model.body[0].out_features == 16  # the input model keeps its shape, zeroed channels
    kept = result.model.body[0].out_features, result.model.body[2].out_features
    assert kept[0] < 16 or kept[1] < 8
    dropped = [
        int((model.body[0].weight.abs().sum(1) == 0).sum()),
        int((model.body[2].weight.abs().sum(1) == 0).sum()),
    ]
    assert dropped == [16 - kept[0], 8 - kept[1]]
    x = tabular(50, 3)[0]
    assert torch.allclose(model(x), result.model(x), atol=1e-5)  # zeroed == slimmed


def test_multiclass_model_with_accuracy_gap():
    torch.manual_seed(0)
    x, _, g = tabular(300, 1)
    y = (x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()  # classes 0, 1, 2
    train, val = (x[:200], y[:200], g[:200]), (x[200:], y[200:], g[200:])
    dense = TabularNet(6, 3)
    result = fairprune.prune(dense, train, val, sparsity=0.5, fairness="accuracy_gap", **FAST)
    assert result.fairness == "accuracy_gap"
    assert "equalized_odds_difference" not in result.metrics["val"]["pruned"]  # binary only
    assert_metrics_recompute(result, dense, {"train": train, "val": val}, ["0", "1", "2"])
    assert result.model(x[:4]).shape == (4, 3)
    assert pruned_weights(result.model) == (round(0.5 * 248), 248)


def test_without_a_fairness_constraint():
    torch.manual_seed(0)
    result = fairprune.prune(
        TabularNet(6, 2), tabular(200, 1), tabular(100, 2), sparsity=0.5, fairness=None, **FAST
    )
    assert (result.fairness, result.tolerance, result.feasible) == (None, None, None)
    assert result.train_iterations == 2 * 6 + 2  # BiFP's steps run, as BiP (no fairness terms)
    assert pruned_weights(result.model) == (120, 240)


def test_training_settings_over_the_data_scaled_defaults():
    """``config`` as a mapping changes the named settings and keeps the defaults scaled to the
    data; with the dense model as teacher (``distill``) the call still prunes to the sparsity."""
    from fairprune.budgets import train_config_for

    data = {"train": tabular(200, 1), "val": tabular(100, 2)}
    scaled = train_config_for(None, data, "cpu")
    mine = train_config_for({"distill": 1.0, "lr": 0.01}, data, "cpu")
    assert (mine.distill, mine.lr) == (1.0, 0.01)
    assert (mine.batch_size, mine.eval_every, mine.eval_samples) == (
        scaled.batch_size, scaled.eval_every, scaled.eval_samples,
    )  # fmt: skip
    assert scaled.batch_size == 32 and scaled.distill == 0.0
    torch.manual_seed(0)
    result = fairprune.prune(
        TabularNet(6, 2), data["train"], data["val"], sparsity=0.5, config={"distill": 1.0}, **FAST
    )
    assert pruned_weights(result.model) == (120, 240)


def test_per_group_constraint_against_the_dense_model():
    torch.manual_seed(0)
    train, val = tabular(300, 1), tabular(150, 2)
    kwargs = {"group_names": ["a", "b", "c"], "fairness": "excess_degradation", "tolerance": 0.05}
    result = fairprune.prune(TabularNet(6, 2), train, val, sparsity=0.7, **kwargs, **FAST)
    assert (result.fairness, result.tolerance) == ("excess_degradation", 0.05)
    assert [k for k in result.history[-1] if k.startswith("multiplier_")] == [
        f"multiplier_{g}" for g in range(3)
    ]


def test_default_budgets_are_passes_over_the_training_set():
    # BiFP's defaults (300 + 500 steps of 256 on 30,000 rows) are 2.56 + 4.27 passes
    assert default_budgets("bifp", 30_000) == {"steps": 300, "finetune_steps": 500}
    assert default_budgets("bifp", 60_000) == {"steps": 600, "finetune_steps": 1000}
    assert default_budgets("bifp", 16_592) == {"steps": 166, "finetune_steps": 277}  # UTKFace's train
    assert default_budgets("bifp", 15_000) == {"steps": 150, "finetune_steps": 250}
    # 1,000 rows in batches of 125: 2.56 passes are 20 steps, under the floor of 10% (30)
    assert default_budgets("bifp", 1_000) == {"steps": 30, "finetune_steps": 50}
    assert default_budgets("bifp", 300) == {"steps": 30, "finetune_steps": 50}
    assert default_budgets("imp", 3_000) == {"round_steps": 10}
    assert default_budgets("dense", 3_000) == {}


class Pairs(Dataset):
    """Items ``(x, y)``: the group is missing."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.zeros(6), i % 2


class Ragged(Dataset):
    """Items whose x grows in length: not one sample shape."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        return torch.zeros(i + 1), i % 2, i % 2


class ThreeD(nn.Module):
    """Outputs ``(N, 2, 3)``: not logits of a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).reshape(-1, 2, 3)


def _bad(**change):
    """Arguments of a ``prune`` call with one thing changed."""
    x, y, g = tabular(60, 1)
    args = {
        "model": TabularNet(6, 2),
        "train": (x, y, g),
        "val": (x, y, g),
        "group_names": ["a", "b", "c"],
        **FAST,
    }
    return {**args, **change}


def three(y: list[float], g: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three samples ``(x, y, group)`` with the given labels and group ids."""
    return torch.zeros(3, 6), torch.tensor(y), torch.tensor(g)


NOT_POSTPROCESS = {k: v for k, v in _bad(method="postprocess").items() if k != "steps"}
BAD = {
    "items not triples": (
        _bad(train=Pairs()),
        TypeError,
        r"items of the train dataset must be \(x, y, group\); item 0 is tuple of 2: \(Tensor\(6,\), int\)",
    ),
    "batches not triples": (
        _bad(val=DataLoader(Pairs(), batch_size=2)),
        TypeError,
        r"each batch of the val data \(batch 0\) must be \(x, y, group\); received list of 2",
    ),
    "ragged batches": (
        _bad(train=DataLoader(Ragged(), batch_size=1)),
        ValueError,
        r"the train batches hold x of sample shapes \[\(1,\), \(2,\), \(3,\), \(4,\)\]; expected one shape",
    ),
    "ragged items": (
        _bad(val=Ragged()),
        ValueError,
        r"the items of the val dataset cannot be batched \(.*\); expected x as tensors or arrays of one",
    ),
    "not a dataset": (
        _bad(train=np.zeros((4, 3))),
        TypeError,
        r"train must be a torch Dataset or DataLoader .* received ndarray",
    ),
    "labels outside 0..C-1": (
        _bad(val=three([0, 1, 2], [0, 1, 2])),
        ValueError,
        r"the val labels hold \[0, 1, 2\], outside 0..1; the model outputs 2 logits per sample",
    ),
    "fractional labels": (
        _bad(train=three([0.0, 0.5, 1.0], [0, 1, 2])),
        ValueError,
        r"train labels must be whole numbers \(class ids, or floats 0./1.\); received \[0.5\]",
    ),
    "group outside names": (
        _bad(train=three([0, 1, 1], [0, 1, 3])),
        ValueError,
        r"the train group ids hold \[3\], outside 0..2; "
        r"expected one id per name in group_names=\['a', 'b', 'c'\]",
    ),
    "val missing a group": (
        _bad(val=three([0, 1, 1], [0, 2, 2])),
        ValueError,
        r"the val set has no samples of group\(s\) \['b'\]; "
        r".* \(group sizes in val: \{'a': 1, 'b': 0, 'c': 2\}\)",
    ),
    "output shape": (
        _bad(model=ThreeD()),
        ValueError,
        r"the model's output has shape \(2, 2, 3\) for 2 samples; expected logits \(N, C\)",
    ),
    "one logit, three labels": (
        _bad(model=TabularNet(6, 1), fairness="accuracy_gap", train=three([0, 1, 2], [0, 1, 2])),
        ValueError,
        r"one logit per sample .* the train labels hold \[0, 1, 2\]; expected labels 0/1, or a model with "
        r"one output per class, shape \(N, 3\)",
    ),
    "binary metric, multiclass": (
        _bad(model=TabularNet(6, 3)),
        ValueError,
        r"fairness='equalized_odds' is defined for binary tasks; the model has 3 classes, so expected "
        r"fairness='accuracy_gap' or 'excess_degradation'",
    ),
    "tolerance not a number": (
        _bad(tolerance="loose"),
        ValueError,
        r"tolerance must be a number >= 0 or 'dense'; received 'loose'",
    ),
    "negative tolerance": (_bad(tolerance=-0.1), ValueError, r"tolerance must be a finite number >= 0"),
    "per-group metric, dense tolerance": (
        _bad(fairness="excess_degradation"),
        ValueError,
        r"tolerance='dense' means 0 for 'excess_degradation' .*; expected a number",
    ),
    "unknown metric": (
        _bad(fairness="parity"),
        ValueError,
        r"unknown fairness metric 'parity'; expected one of",
    ),
    "nothing to prune": (
        _bad(model=nn.Sequential(nn.Flatten(), nn.BatchNorm1d(6))),
        ValueError,
        r"Sequential has no prunable parameters; expected at least one Linear",
    ),
    "unknown device": (_bad(device="gpu0"), ValueError, r"device must be 'auto' or a torch device name"),
    "unknown training setting": (
        _bad(config={"distil": 1.0}),
        ValueError,
        r"config: expected training settings among \[.*'distill'.*\]; received \['distil'\]",
    ),
    "device in the training settings": (
        _bad(config={"device": "cpu"}),
        ValueError,
        r"config: expected training settings among .*; received \['device'\]",
    ),
    "training setting out of range": (_bad(config={"distill": -1.0}), ValueError, r"train.distill"),
    "unknown method": (_bad(method="lottery"), ValueError, r"unknown method 'lottery'; expected one of"),
    "group thresholds": (
        NOT_POSTPROCESS,
        ValueError,
        r"method 'postprocess' gives group-specific thresholds",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_says_what_was_expected(case):
    args, error, message = BAD[case]
    with pytest.raises(error, match=message):
        fairprune.prune(**args)


def test_images_without_a_transform_are_refused(images):
    pil = GroupImageFolder(images["train"].root)  # items (PIL image, y, group)
    with pytest.raises(ValueError, match=r"the items of the train dataset cannot be batched .* ToTensor\(\)"):
        fairprune.prune(small_cnn(), pil, images["val"], **FAST)


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, "0.5", True, float("nan")])
def test_sparsity_outside_the_unit_interval_is_refused(sparsity):
    with pytest.raises(ValueError, match=r"sparsity must be a number in \[0, 1\); received"):
        fairprune.prune(**_bad(sparsity=sparsity))


def test_top_level_surface():
    assert fairprune.__all__ == [
        "BiFPSparsifier",
        "PruningResult",
        "StratifiedBatchSampler",
        "__version__",
        "load_dataset",
        "prune",
    ]
    assert all(getattr(fairprune, name) is not None for name in fairprune.__all__)
    dense = fairprune.prune(
        TabularNet(6, 2), tabular(64, 1), tabular(64, 2), sparsity=0.0, method="dense", progress=False
    )
    assert type(dense) is fairprune.PruningResult
    assert dense.achieved_sparsity == 0.0 and dense.train_iterations == 0
    assert dense.metrics["val"]["pruned"] == {
        **dense.metrics["val"]["dense"],
        "degradation_gap": 0.0,
        "excess_degradation": 0.0,
    }
    assert fairprune.load_dataset is registry.load_dataset


def test_readme_first_example_is_three_lines_after_the_imports():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    api = readme[readme.index("## Python API") :]
    first = re.search(r"```python\n(.*?)```", api, flags=re.S).group(1)
    statements = [s for s in ast.parse(first).body if not isinstance(s, (ast.Import, ast.ImportFrom))]
    assert len(statements) == 3  # load, prune, print (tests/test_readme.py runs it)
    assert "fairprune.prune(my_model" in first

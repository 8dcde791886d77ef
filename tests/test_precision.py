"""train.autocast (bf16), train.channels_last and train.workers in the harness's loops."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from fairprune.config import load_config
from fairprune.data.base import GroupData, Splits
from fairprune.engine import Task, TrainConfig, train_weights
from fairprune.fairness.objective import FairnessObjective
from fairprune.masks import get_masks, prunable_parameters
from fairprune.pruners import build_pruner, run_pruner
from fairprune.sweep.experiment import prepare_out_dir


def test_bf16_autocast_bifp_prunes_exactly_and_stays_close_to_float32(dense, planted_splits):
    objective = FairnessObjective("equalized_odds", 0.05)
    results = {}
    for autocast in ("none", "bf16"):
        model = copy.deepcopy(dense)
        config = TrainConfig(batch_size=64, eval_every=10, autocast=autocast)
        task = Task(planted_splits, objective, config, seed=0)
        result = run_pruner(build_pruner("bifp", steps=20, finetune_steps=10), model, 0.7, task)
        zeros = sum(int((m == 0).sum()) for m in result.masks.values())
        assert zeros == round(0.7 * sum(m.numel() for m in result.masks.values()))
        assert all(p.dtype == torch.float32 for p in model.parameters())
        results[autocast] = result
    # bf16 rounding moves a few near-tied scores, not the mask as a whole
    full, half = results["none"].masks, results["bf16"].masks
    agree = sum(int((full[k] == half[k]).sum()) for k in full) / sum(m.numel() for m in full.values())
    assert 0.9 < agree < 1.0  # bf16 did change the computation
    assert results["bf16"].history[-1]["val_accuracy"] == pytest.approx(
        results["none"].history[-1]["val_accuracy"], abs=0.05
    )


def test_unknown_autocast_is_an_error(tmp_path):
    with pytest.raises(
        ValueError, match=r"^bad config: train.autocast: expected 'none' or 'bf16'; got 'fp16'$"
    ):
        TrainConfig(autocast="fp16")
    path = tmp_path / "bad.toml"
    path.write_text('[train]\nautocast = "fp16"\n')
    with pytest.raises(
        ValueError, match=r"^bad config: train.autocast: expected 'none' or 'bf16'; got 'fp16'$"
    ):
        load_config(path)


def _images() -> Splits:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (96, 3, 8, 8), generator=gen, dtype=torch.uint8)
    y = (x[:, 0].float().mean(dim=(1, 2)) > 127).long()
    g = torch.arange(96) % 2
    data = GroupData(x, y, g)
    return Splits("tiny", "y", "g", data, data, data, ("0", "1"), ("a", "b"))


def test_channels_last_trains_the_same_model():
    splits = _images()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    models = {}
    for channels_last in (False, True):
        model = copy.deepcopy(net)
        config = TrainConfig(batch_size=32, eval_every=5, channels_last=channels_last)
        train_weights(model, Task(splits, None, config, seed=0), 10)
        models[channels_last] = model
    conv = prunable_parameters(models[True])["0.weight"]
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not prunable_parameters(models[False])["0.weight"].is_contiguous(memory_format=torch.channels_last)
    for (name, a), b in zip(
        models[False].state_dict().items(), models[True].state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert get_masks(models[True])["0.weight"].all()


# torch warns when 2 workers exceed the CPUs a process may use (a 1-CPU runner, taskset): the
# batches are what this test checks, not the machine's size
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
def test_dataloader_workers_give_the_in_memory_batches(dense, planted_splits):
    """train.workers = 2 reads the same stratified batches through a DataLoader: same weights."""
    models = {}
    for workers in (0, 2):
        model = copy.deepcopy(dense)
        config = TrainConfig(batch_size=64, eval_every=10, workers=workers)
        train_weights(model, Task(planted_splits, None, config, seed=0), 12)
        models[workers] = model
    for (name, a), b in zip(models[0].state_dict().items(), models[2].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(dense.state_dict().values(), models[0].state_dict().values(), strict=True)
    )
    with pytest.raises(
        ValueError, match=r"^bad config: train.workers: expected a number greater than or equal to 0; got -1$"
    ):
        TrainConfig(workers=-1)


def test_a_directory_made_before_the_new_train_keys_resumes(tmp_path, planted_csv):
    """A config.json without train.autocast / channels_last / workers is the same config."""
    data = [
        "data.name='csv'",
        f"data.path='{planted_csv}'",
        "data.target='label'",
        "data.sensitive_attribute='group'",
    ]
    cfg = load_config(None, data)
    prepare_out_dir(tmp_path, cfg, restart=False)
    saved = json.loads((tmp_path / "config.json").read_text())
    for key in ("autocast", "channels_last", "workers"):
        del saved["train"][key]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    prepare_out_dir(tmp_path, cfg, restart=False)  # resumes
    with pytest.raises(ValueError, match="holds results of a different config"):
        prepare_out_dir(tmp_path, load_config(None, [*data, "train.workers=2"]), restart=False)

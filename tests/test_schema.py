"""The per-group spellings, all owned by ``fairprune.schema``: ids, names, the card's nested and
flat forms, and the round trip between them on a real report."""

from __future__ import annotations

import pytest
import torch

from fairprune.export import card_metrics, flat_metrics, named_card_metrics
from fairprune.fairness.metrics import fairness_report
from fairprune.schema import flat_groups, group_names_in, name_groups, nest_groups, split_group_key


def _report() -> dict[str, float]:
    y = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    pred = torch.tensor([0, 1, 0, 0, 1, 1, 0, 1])
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    return fairness_report(y, pred, groups=groups, n_groups=3)


def test_a_report_names_nests_and_flattens_its_groups():
    report = _report()
    assert report["group_accuracy_0"] == pytest.approx(2 / 3) and report["group_size_2"] == 2
    named = name_groups(report, ["a", "b", "c"])
    assert named["group_accuracy_b"] == pytest.approx(2 / 3) and "group_accuracy_0" not in named
    assert group_names_in(named) == ["a", "b", "c"] and group_names_in(report) == ["0", "1", "2"]
    nested = nest_groups(named)
    assert nested["group_accuracy"] == pytest.approx({"a": 2 / 3, "b": 2 / 3, "c": 1.0})
    assert nested["group_size"] == {"a": 3, "b": 3, "c": 2}
    assert nested["accuracy"] == pytest.approx(6 / 8)
    assert card_metrics(report, ["a", "b", "c"]) == nested == named_card_metrics(named)
    flat = flat_groups(nested)
    assert flat["group_accuracy[c]"] == 1.0 and flat["group_size[a]"] == 3.0
    assert flat_metrics(nested) == flat
    assert len(flat) == len(report)  # one entry per metric, group by group


def test_per_group_keys_are_recognised_and_bad_ids_refused():
    assert split_group_key("group_accuracy_Female") == ("group_accuracy_", "Female")
    assert split_group_key("group_size_3") == ("group_size_", "3")
    assert split_group_key("worst_group_accuracy") is None and split_group_key("accuracy") is None
    with pytest.raises(ValueError, match="'group_accuracy_2' names group 2; expected ids below 2"):
        name_groups({"group_accuracy_2": 0.5}, ["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        name_groups({"group_accuracy_0": 0.5}, ["a", "a"])

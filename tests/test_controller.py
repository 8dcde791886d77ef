"""The multipliers' controller: ascent as before, nuPI by hand, anti-windup, resuming, settings."""

from __future__ import annotations

import copy
import json
import logging
import math

import numpy as np
import pytest
import torch

import fairprune
from fairprune.config import FairnessConfig, load_config
from fairprune.errors import ConfigError
from fairprune.fairness import Constraint, FairnessObjective
from fairprune.fairness.controller import MultiplierController
from fairprune.reporting.convergence import oscillation

# validation equalized odds of the default Adult BiFP run (sparsity 0.9, seed 0), its tau
ADULT_VIOLATIONS = [0.1015, 0.0678, 0.1068, 0.0777, 0.0919, 0.0960, 0.0772, 0.0731, 0.0782, 0.0917]
ADULT_TAU = 0.0855


def _lagrangian(**settings: object) -> Constraint:
    objective = FairnessObjective("accuracy_gap", settings.pop("tolerance", 0.0), dual_step=1.0, **settings)
    return Constraint(objective, 2)


def _run(constraint: Constraint, violations: list[float]) -> list[float]:
    multipliers = []
    for v in violations:
        constraint.dual_step(v)
        multipliers.append(constraint.multiplier)
    return multipliers


@pytest.mark.parametrize("window", [0, 4])
def test_ascent_is_the_old_projected_dual_ascent_bit_for_bit(window: int) -> None:
    objective = FairnessObjective("equalized_odds", ADULT_TAU, dual_step=5.0, windup_window=window)
    assert objective.controller == "ascent"  # the default
    got = _run(Constraint(objective, 2), ADULT_VIOLATIONS)
    mu, expected = 0.0, []
    for v in ADULT_VIOLATIONS:  # the code before the controller: np.maximum(0, mu + eta * (v - tau))
        mu = max(0.0, mu + 5.0 * (v - ADULT_TAU))
        expected.append(mu)
    assert got == expected  # exactly
    assert got[:3] == pytest.approx([0.08, 0.0, 0.1065])  # by hand: 5 * 0.016, projected, 5 * 0.0213


def test_nupi_follows_the_paper_update_by_hand() -> None:
    """eta = 1, K_P = 2, nu = 0.5, tau = 0; errors 0.2, 0.1, 0.3, -0.5:
    xi = 0.2, 0.15, 0.225, -0.1375 (xi_{-1} = e_0) and
    mu = 0.2 (ascent's first step), 0.2 + 0.1 + 2 (0.15 - 0.2) = 0.2, 0.2 + 0.3 + 2 (0.075) = 0.65,
    max(0, 0.65 - 0.5 + 2 (-0.3625)) = 0."""
    c = _lagrangian(controller="nupi", kp=2.0, ema_nu=0.5, windup_window=0)
    assert _run(c, [0.2, 0.1, 0.3, -0.5]) == pytest.approx([0.2, 0.2, 0.65, 0.0], abs=1e-15)
    assert c.state_dict()["controller"]["xi"] == pytest.approx([-0.1375], abs=1e-15)


def test_nupi_without_proportional_gain_is_ascent() -> None:
    nupi = _run(_lagrangian(controller="nupi", kp=0.0, tolerance=0.1), [0.3, 0.0, 0.25, 0.05, 0.4])
    ascent = _run(_lagrangian(tolerance=0.1), [0.3, 0.0, 0.25, 0.05, 0.4])
    assert nupi == pytest.approx(ascent, abs=1e-15)
    assert ascent == pytest.approx([0.2, 0.1, 0.25, 0.2, 0.5])


def test_per_group_multipliers_each_follow_their_own_error() -> None:
    objective = FairnessObjective(
        "excess_degradation", 0.1, dual_step=2.0, controller="nupi", kp=1.0, ema_nu=0.0
    )
    c = Constraint(objective, 3)
    c.dual_step(np.array([0.3, 0.0, 0.1]))
    c.dual_step(np.array([0.2, 0.05, 0.2]))  # mu += 2 (e_1 + 1 * (e_1 - e_0))
    assert c.multipliers == pytest.approx([0.4 + 2 * (0.1 - 0.1), 0.0, 2 * (0.1 + 0.1)])
    assert c.state()["multiplier_2"] == pytest.approx(0.4) and c.multiplier == pytest.approx(0.4)


def test_a_violation_that_never_falls_winds_up_and_stops_the_climb() -> None:
    """tau = 0.1, eta = 1, W = 4, violation 0.3 at every check: mu = 0.2, 0.4, 0.6, 0.8; at the
    fifth check it rose 4 times and the last 4 errors are not below the first: wound up, held."""
    c = _lagrangian(tolerance=0.1, windup_window=4)
    got, flags = [], []
    for _ in range(8):
        c.dual_step(0.3)
        got.append(c.multiplier)
        flags.append(c.state()["windup"])
    assert got == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8, 0.8, 0.8])
    assert flags == [0, 0, 0, 0, 1, 1, 1, 1]
    assert c.state()["windup_checks"] == 4
    c.dual_step(0.25)  # progress: below every earlier violation -> released, integrates again
    assert c.multiplier == pytest.approx(0.95) and c.state() == {
        "multiplier": pytest.approx(0.95),
        "windup": 0.0,
        "windup_checks": 4.0,
    }


def test_wound_up_a_negative_error_still_lowers_the_multiplier() -> None:
    """W = 2, tau = 0, errors -0.5, 0.2, 0.2, 0.2, 0.2, -0.1, -0.6: mu 0, 0.2, 0.4, then wound
    up (rose twice, no error below -0.5): 0.4, 0.4, 0.3 (-0.1 lowers it, not progress), then
    -0.6 is progress: released, 0."""
    c = _lagrangian(windup_window=2)
    got, flags = [], []
    for e in [-0.5, 0.2, 0.2, 0.2, 0.2, -0.1, -0.6]:
        c.dual_step(e)
        got.append(c.multiplier)
        flags.append(c.state()["windup"])
    assert got == pytest.approx([0.0, 0.2, 0.4, 0.4, 0.4, 0.3, 0.0], abs=1e-15)
    assert flags == [0, 0, 0, 1, 1, 1, 0] and c.state()["windup_checks"] == 3


@pytest.mark.parametrize("controller", ["ascent", "nupi"])
def test_a_falling_violation_never_winds_up(controller: str) -> None:
    falling = [0.3 - 0.01 * t for t in range(12)]  # above tau = 0.1, falling: mu rises every check
    c = _lagrangian(tolerance=0.1, controller=controller, kp=1.0, ema_nu=0.5)
    plain = _lagrangian(tolerance=0.1, controller=controller, kp=1.0, ema_nu=0.5, windup_window=0)
    got = _run(c, falling)
    assert all(b > a for a, b in zip(got, got[1:], strict=False))
    assert c.state()["windup_checks"] == 0 and got == _run(plain, falling)


@pytest.mark.parametrize("controller", ["ascent", "nupi"])
def test_a_run_split_by_a_state_dict_round_trip_equals_one_run(controller: str) -> None:
    """Through JSON, with the split inside a wind-up (nuPI's xi and the anti-windup's record)."""
    errors = [0.3, 0.32, 0.31, 0.33, 0.3, 0.35, 0.3, 0.1, 0.05, 0.4, 0.3]
    objective = FairnessObjective(
        "accuracy_gap", 0.1, dual_step=0.5, controller=controller, kp=1.5, ema_nu=0.3
    )
    whole = Constraint(objective, 2)
    one = _run(whole, errors)
    assert whole.state()["windup_checks"] > 0  # the anti-windup engaged
    first = Constraint(objective, 2)
    head = _run(first, errors[:6])
    assert first.state()["windup"] == 1
    resumed = Constraint(objective, 2)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert head + _run(resumed, errors[6:]) == one  # exactly
    assert resumed.state_dict() == whole.state_dict() and resumed.state() == whole.state()


def test_loading_checks_the_controller_and_keeps_the_view() -> None:
    nupi = _lagrangian(controller="nupi", kp=1.0)
    view = nupi.multipliers
    with pytest.raises(ValueError, match="controller state of 'ascent' cannot be loaded into a 'nupi'"):
        nupi.load_state_dict(_lagrangian().state_dict())
    nupi.load_state_dict({"metric": "accuracy_gap", "multipliers": [0.7]})  # saved before controllers
    assert view[0] == 0.7 and nupi.controller.steps == 0
    view[:] = 1.5  # writes through
    assert nupi.multiplier == 1.5


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"controller": "pid"}, r"unknown multiplier controller 'pid'; expected one of \('nupi', 'ascent'\)"),
        ({"kp": -1.0}, "expected a proportional gain kp >= 0, got -1.0"),
        ({"ema_nu": 1.0}, r"expected ema_nu in \[0, 1\), got 1.0"),
        ({"windup_window": 2.5}, "expected windup_window an integer >= 0 \\(0: off\\), got 2.5"),
    ],
)
def test_bad_settings_say_what_was_expected(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FairnessObjective("equalized_odds", 0.05, **settings)


def test_a_wrong_number_of_errors_is_refused() -> None:
    with pytest.raises(ValueError, match=r"expected a scalar error or 1 errors \(one per multiplier\)"):
        MultiplierController(1, lr=1.0).step(np.zeros(3))


def test_the_config_mirrors_the_objective_and_checks_the_settings() -> None:
    shared = (
        "controller",
        "kp",
        "ema_nu",
        "windup_window",
        "mode",
        "penalty_weight",
        "dual_step",
        "temperature",
    )
    config, objective = FairnessConfig(), FairnessObjective()
    assert {k: getattr(config, k) for k in shared} == {k: getattr(objective, k) for k in shared}
    cfg = load_config(None, ["fairness.controller='nupi'", "fairness.kp=2", "fairness.ema_nu=0.5"])
    assert (cfg.fairness.controller, cfg.fairness.kp, cfg.fairness.ema_nu) == ("nupi", 2.0, 0.5)
    with pytest.raises(ConfigError, match="fairness.ema_nu: expected a number less than 1; got 1.0"):
        load_config(None, ["fairness.ema_nu=1.0"])
    with pytest.raises(ConfigError, match="fairness.controller: expected 'nupi' or 'ascent'; got 'pid'"):
        load_config(None, ["fairness.controller='pid'"])


def test_strength_of_older_configs_is_read_as_the_setting_of_its_mode(caplog) -> None:
    """``fairness.strength`` meant lambda or eta by mode; it is now two settings."""
    with caplog.at_level(logging.WARNING, logger="fairprune.config"):
        penalty = load_config(None, ["fairness.mode='penalty'", "fairness.strength=2"]).fairness
        dual = load_config(None, ["fairness.strength=0.5"]).fairness
    assert (penalty.penalty_weight, penalty.dual_step) == (2.0, 5.0)
    assert (dual.penalty_weight, dual.dual_step) == (5.0, 0.5)
    assert "fairness.strength is now fairness.dual_step" in caplog.text
    with pytest.raises(ConfigError, match=r"^fairness.strength: an older name of fairness.dual_step"):
        load_config(None, ["fairness.strength=0.5", "fairness.dual_step=1"])
    penalty_only = FairnessObjective("accuracy_gap", 0.1, mode="penalty", penalty_weight=2.0, dual_step=0.0)
    assert Constraint(penalty_only, 2).controller.lr == 0.0 and penalty_only.penalty_weight == 2.0


def _tabular(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=gen)
    g = torch.arange(n) % 2
    return x, ((x[:, 0] + 0.5 * g) > 0.5).long(), g


def test_prune_takes_the_controller_settings() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    settings = {"controller": "nupi", "kp": 1.0, "ema_nu": 0.5, "windup_window": 2, "dual_step": 2.0}
    result = fairprune.prune(
        copy.deepcopy(model), _tabular(200, 1), _tabular(100, 2), sparsity=0.5, tolerance=0.0,
        fairness_settings=settings, steps=6, finetune_steps=2, progress=False,
    )  # fmt: skip
    rows = result.history
    assert len(rows) >= 2 and {"multiplier", "windup", "windup_checks"} <= set(rows[-1])
    # tau = 0 and eta = 2: the first dual step is ascent's, 2 * the first check's violation
    assert rows[0]["multiplier"] == pytest.approx(2.0 * rows[0]["violation"])
    with pytest.raises(ValueError, match=r"fairness_settings: expected keys among .*; received \['kd'\]"):
        fairprune.prune(model, _tabular(50, 1), _tabular(50, 2), fairness_settings={"kd": 1.0})


def test_oscillation_of_a_hand_built_history() -> None:
    history = [
        {"violation": 0.5, "multiplier": 0.0},
        {"violation": 0.1, "multiplier": 0.3},
        {"violation": 0.2, "multiplier": 0.1},
        {"violation": 0.4, "multiplier": 0.2},
        {"violation": 0.1, "multiplier": 0.2, "windup_checks": 1.0},
    ]
    got = oscillation(history)  # the last ceil(5 / 2) = 3 checks: 0.2, 0.4, 0.1
    assert got["violation_std"] == pytest.approx(math.sqrt(14) / 30)  # deviations -1/30, 1/6, -2/15
    assert got["violation_range"] == pytest.approx(0.3)
    assert got["multiplier_tv"] == pytest.approx(0.3 + 0.2 + 0.1 + 0.0)
    assert got["multiplier_max"] == pytest.approx(0.3) and got["windup_checks"] == 1.0
    whole = oscillation(history, tail=1.0)
    assert whole["violation_range"] == pytest.approx(0.4)
    penalty = oscillation([{**row, "multiplier": math.nan} for row in history[:4]])
    assert math.isnan(penalty["multiplier_tv"]) and math.isnan(penalty["windup_checks"])
    with pytest.raises(ValueError, match=r"tail must be in \(0, 1\]; got 0"):
        oscillation(history, tail=0)

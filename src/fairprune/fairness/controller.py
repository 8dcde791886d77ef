"""How a constraint's Lagrange multipliers follow its violation: projected ascent or nuPI, with
anti-windup.

Each multiplier ``mu_k >= 0`` is driven by its error ``e_t = Phi_hat_t - tau`` (the exact
violation measured at validation check ``t`` minus the tolerance), with step size ``eta``.

``"ascent"``, projected dual ascent (a pure integral controller)::

    mu_{t+1} = max(0, mu_t + eta * e_t)

``"nupi"``, the nuPI controller of Sohrabi, Ramirez, Zhang, Lacoste-Julien & Gallego-Posada,
"On PI controllers for updating Lagrange multipliers in constrained optimization" (ICML 2024),
run by Cooper's :class:`cooper.optim.nuPI` on the multiplier tensor (gradient ascent, integral gain
``K_I = 1``, proportional gain ``K_P``, smoothing ``nu``), then projected like Cooper's
inequality multipliers::

    xi_t     = nu * xi_{t-1} + (1 - nu) * e_t            (xi_{-1} = e_0: the first step is ascent's)
    mu_{t+1} = max(0, mu_t + eta * (e_t + K_P * (xi_t - xi_{t-1})))

Without the projection this is ``mu_{t+1} = eta * (sum_{s<=t} e_s + K_P * (xi_t - e_0))``: the
integral of ascent plus a damping term that reacts to the error's (smoothed) trend, so a violation
that is already falling lowers the multiplier's climb before it overshoots. ``K_P = 0`` is ascent.

Anti-windup (conditional integration). A multiplier that keeps climbing while the exact violation
does not fall means the surrogate is not moving the metric (e.g. it falls by collapsing margins);
more climbing only costs accuracy. Multiplier ``k`` is *wound up* at check ``t`` when it rose at
each of the last ``W`` dual steps and none of the last ``W`` errors is below the best error before
them. While wound up, positive errors are not integrated (the controller is fed ``min(e_t, 0)``)
and the multiplier cannot rise; a negative error still lowers it. It is released at the first
check whose error is below every earlier one (progress). ``W = 0`` turns this off.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from cooper.optim import nuPI

__all__ = ["CONTROLLERS", "MultiplierController", "check_controller"]

CONTROLLERS = ("nupi", "ascent")


def check_controller(controller: str, kp: float, ema_nu: float, windup_window: int) -> None:
    """Raise a ``ValueError`` naming the setting that is out of range.

    Expected: ``controller`` in :data:`CONTROLLERS`, ``kp >= 0`` (finite), ``ema_nu`` in
    ``[0, 1)``, ``windup_window`` an integer ``>= 0``.
    """
    if controller not in CONTROLLERS:
        raise ValueError(f"unknown multiplier controller {controller!r}; expected one of {CONTROLLERS}")
    if not (math.isfinite(kp) and kp >= 0):
        raise ValueError(f"expected a proportional gain kp >= 0, got {kp}")
    if not 0.0 <= ema_nu < 1.0:
        raise ValueError(f"expected ema_nu in [0, 1), got {ema_nu}")
    if isinstance(windup_window, bool) or not isinstance(windup_window, int) or windup_window < 0:
        raise ValueError(f"expected windup_window an integer >= 0 (0: off), got {windup_window!r}")


class MultiplierController:
    """``K`` Lagrange multipliers, all 0 at the start, and the controller that updates them.

    Args:
        size: Number of multipliers ``K``.
        lr: The step size eta (``FairnessObjective.dual_step``).
        controller: ``"nupi"`` or ``"ascent"``.
        kp: Proportional gain ``K_P`` of nuPI (unused by ascent).
        ema_nu: Smoothing ``nu`` of nuPI's error average (unused by ascent).
        windup_window: ``W`` of the anti-windup (0: off).

    Attributes:
        multipliers: ``(K,)`` float64, a NumPy view of the tensor the controller updates (writes
            to it change the multipliers).
        wound: ``(K,)`` whether each multiplier is wound up (after the last step).
        windup_checks: Steps at which some multiplier was wound up.
    """

    def __init__(
        self,
        size: int,
        *,
        lr: float,
        controller: str = "ascent",
        kp: float = 0.5,
        ema_nu: float = 0.9,
        windup_window: int = 4,
    ) -> None:
        check_controller(controller, kp, ema_nu, windup_window)
        self.lr, self.controller, self.windup_window = lr, controller, windup_window
        self.weight = torch.zeros(size, dtype=torch.float64)
        self.multipliers = self.weight.numpy()  # shares the tensor's memory
        self._optimizer: nuPI | None = None
        if controller == "nupi":
            kp_, ki = torch.tensor(kp, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
            self._optimizer = nuPI([self.weight], lr=lr, Kp=kp_, Ki=ki, ema_nu=ema_nu, maximize=True)
        self.reset()

    def reset(self) -> None:
        """Forget the controller's history (its smoothed error, the anti-windup's record); the
        multipliers keep their values."""
        size = self.multipliers.size
        self.steps = 0
        if self._optimizer is not None:
            self._optimizer.state.clear()  # Cooper's nuPI keeps only xi
        self._window: list[np.ndarray] = []  # the last W errors, oldest first, each (K,)
        self._best_before = np.full(size, np.inf)  # the smallest error before the window
        self._rises = np.zeros(size, dtype=np.int64)  # consecutive steps at which mu_k rose
        self.wound = np.zeros(size, dtype=bool)
        self.windup_checks = 0

    def step(self, errors: float | np.ndarray) -> None:
        """One controller step from the errors ``e_t = Phi_hat_t - tau`` (a scalar or ``(K,)``)."""
        errors = np.asarray(errors, dtype=float)
        if errors.ndim > 1 or errors.size not in (1, self.multipliers.size):
            raise ValueError(
                f"expected a scalar error or {self.multipliers.size} errors (one per multiplier), "
                f"got shape {errors.shape}"
            )
        errors = np.broadcast_to(errors, self.multipliers.shape)
        wound = self._update_windup(errors)
        fed = np.where(wound, np.minimum(errors, 0.0), errors) if wound.any() else errors
        before = self.multipliers.copy()
        if self._optimizer is None:  # ascent: the same float64 operations as before nuPI existed
            self.multipliers[:] = np.maximum(0.0, self.multipliers + self.lr * fed)
        else:
            self._nupi_step(self._optimizer, torch.from_numpy(np.array(fed, dtype=np.float64)))
        if wound.any():  # conditional integration: a wound-up multiplier does not rise
            self.multipliers[:] = np.where(wound, np.minimum(self.multipliers, before), self.multipliers)
        self._rises = np.where(self.multipliers > before, self._rises + 1, 0)
        self.steps += 1

    def _nupi_step(self, optimizer: nuPI, error: torch.Tensor) -> None:
        """Cooper's nuPI step (ascent on ``error``) and the projection ``mu >= 0``, in place."""
        self.weight.grad = error
        optimizer.step()
        self.weight.grad = None
        state = optimizer.state[self.weight]
        if self.steps == 0 and "xi" in state:
            # Cooper 1.0.1 stores xi_0 = 0 after the first step of its SGD initialisation; its
            # documented update (and cooper-org/cooper#107) has xi_0 = e_0
            state["xi"].copy_(error)
        self.weight.clamp_(min=0.0)  # in place: `multipliers` stays a view

    def _update_windup(self, errors: np.ndarray) -> np.ndarray:
        """Release on progress, record ``errors``, latch the multipliers that wound up; returns
        :attr:`wound`."""
        window = self.windup_window
        if window == 0:
            return self.wound
        best = np.minimum(self._best_before, np.min(self._window, axis=0)) if self._window else None
        if best is not None:
            self.wound &= ~(errors < best)  # progress: below every earlier error
        self._window.append(errors.copy())
        if len(self._window) > window:
            self._best_before = np.minimum(self._best_before, self._window.pop(0))
        if len(self._window) == window:
            stalled = np.min(self._window, axis=0) >= self._best_before  # inf before: never
            self.wound |= (self._rises >= window) & stalled
        if self.wound.any():
            self.windup_checks += 1
        return self.wound

    def state_dict(self) -> dict[str, Any]:
        """Everything a later step depends on, as plain Python values."""
        xi = None
        if self._optimizer is not None and "xi" in self._optimizer.state[self.weight]:
            xi = self._optimizer.state[self.weight]["xi"].tolist()
        return {
            "controller": self.controller,
            "steps": self.steps,
            "xi": xi,
            "window": [e.tolist() for e in self._window],
            "best_before": self._best_before.tolist(),
            "rises": self._rises.tolist(),
            "wound": self.wound.tolist(),
            "windup_checks": self.windup_checks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the multipliers themselves are set by their owner).

        Raises:
            ValueError: If the state is another controller's or of another number of multipliers;
                nothing is changed then.
        """
        if state["controller"] != self.controller:
            raise ValueError(
                f"controller state of {state['controller']!r} cannot be loaded into a {self.controller!r} "
                "controller"
            )
        size = self.multipliers.size
        sized = [state["best_before"], state["rises"], state["wound"], *state["window"]]
        if state["xi"] is not None:
            sized.append(state["xi"])
        if any(len(values) != size for values in sized):
            raise ValueError(f"expected a controller state of {size} multiplier(s); got other lengths")
        self.reset()
        self.steps = int(state["steps"])
        if self._optimizer is not None and state["xi"] is not None:
            self._optimizer.state[self.weight]["xi"] = torch.tensor(state["xi"], dtype=torch.float64)
        self._window = [np.asarray(e, dtype=float) for e in state["window"]]
        self._best_before = np.asarray(state["best_before"], dtype=float)
        self._rises = np.asarray(state["rises"], dtype=np.int64)
        self.wound = np.asarray(state["wound"], dtype=bool)
        self.windup_checks = int(state["windup_checks"])

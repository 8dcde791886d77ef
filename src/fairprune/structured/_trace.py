"""torch-pruning's dependency graph, traced and walked under a time limit.

Why a limit: torch-pruning builds a group by walking the graph from a root layer and stops where
it meets a node it has already visited *with the same index list*. Llama's rotary embedding
(``rotate_half``: slice, negate, concatenate, on q and k) maps a projection's channel indices to
a permuted list on every pass around the cycle that scaled-dot-product attention (an
"element-wise" op to torch-pruning) closes between q, k and v, so the walk from ``q_proj`` /
``k_proj`` / ``v_proj`` never meets an equal list: 20,000 visits in 24-31 s on a one-layer
model, each slower than the last (the group is searched linearly), with grouped-query attention
(2 key/value heads for 4 query heads) and without it alike; ``o_proj``'s walk ends at once.
:func:`channel_groups` therefore never starts a walk inside attention (heads are our own
groups), and :func:`walk_groups` raises a one-line error naming the root layer when a walk
exceeds the limit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

import torch_pruning as tp
from torch import nn

from fairprune.model_io import Features, output_logits

__all__ = ["GRAPH_TIME_LIMIT", "trace", "walk_groups"]

GRAPH_TIME_LIMIT = 60.0  # seconds for the dependency-graph analysis of one model


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`_Timeout` after ``seconds`` (SIGALRM; only in the main thread, elsewhere
    no limit is set)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: FrameType | None) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def trace(model: nn.Module, example: Features, limit: float = GRAPH_TIME_LIMIT) -> tp.DependencyGraph:
    """torch-pruning's graph of ``model`` (traced on ``example``, outputs reduced to logits).

    Raises:
        ValueError: If tracing fails or takes longer than ``limit`` seconds.
    """
    what = type(model).__name__
    try:
        with _deadline(limit):
            return tp.DependencyGraph().build_dependency(
                model, example, verbose=False, output_transform=output_logits
            )
    except _Timeout:
        raise ValueError(
            f"torch-pruning's tracing of {what} took over {limit:.0f} s; "
            "use structure='unstructured' for this model"
        ) from None
    except (RuntimeError, TypeError, ValueError, KeyError, AttributeError, IndexError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"torch-pruning cannot trace {what} ({type(error).__name__}: {first}); "
            "use structure='unstructured' for this model"
        ) from None


def walk_groups(
    graph: tp.DependencyGraph,
    names: dict[nn.Module, str],
    ignored: list[nn.Module],
    limit: float = GRAPH_TIME_LIMIT,
) -> list[tp.dependency.Group]:
    """The groups of every Linear/Conv root not in ``ignored`` (as ``get_all_groups``), in at
    most ``limit`` seconds in all.

    Raises:
        ValueError: Naming the root layer whose walk was cut off.
    """
    groups: list[tp.dependency.Group] = []
    visited: set[nn.Module] = set()
    root = ""
    start = time.monotonic()
    try:
        with _deadline(limit):
            for module in list(graph.module2node):
                if (
                    module in ignored
                    or module in visited
                    or not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd))
                ):
                    continue
                pruner = graph.get_pruner_of_module(module)
                if pruner is None or pruner.get_out_channels(module) is None:
                    continue
                root = names.get(module, type(module).__name__)
                channels = list(range(pruner.get_out_channels(module)))
                group = graph.get_pruning_group(module, pruner.prune_out_channels, channels)
                outs = [d.target.module for d, _ in group if graph.is_out_channel_pruning_fn(d.handler)]
                visited.update(outs)
                if not any(m in ignored for m in outs):
                    groups.append(group)
    except _Timeout:
        raise ValueError(
            f"torch-pruning's channel grouping from {root} did not finish in "
            f"{time.monotonic() - start:.0f} s; "
            f"pass ignored=[{root!r}] or use structure='unstructured'"
        ) from None
    return groups

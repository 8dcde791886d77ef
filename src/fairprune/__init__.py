"""fairprune: prune a PyTorch classifier to a target sparsity while keeping it fair across groups.

The core method is BiFP (bi-level fair pruning): mask and weights optimised together as a
bi-level problem, each under a group-fairness term.
"""

from __future__ import annotations

__version__ = "0.1.0"

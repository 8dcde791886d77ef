"""fairprune's benchmarks: ``python -m bench --out DIR`` runs all of them side by side.

Modules: :mod:`bench.step_cost` (one BiFP iteration over one SGD step), :mod:`bench.slim`
(deployment: slim models, FLOPs budgets, stored sizes), :mod:`bench.loader` (cached-image
throughput and data / model scaling), :mod:`bench.iterations` (iterations to a fair model).
"""

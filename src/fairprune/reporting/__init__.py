"""Reporting: ``fairprune report``'s tables, statistics, figures and text from a sweep's run records.

:mod:`~fairprune.reporting.report` reads a finished sweep's records (through
:mod:`fairprune.sweep`'s store) and writes ``report.md`` and its plots;
:mod:`~fairprune.reporting.stats` holds the statistics over seeds (mean ± spread, t-intervals,
paired comparisons), :mod:`~fairprune.reporting.summaries` the tables built from them,
:mod:`~fairprune.reporting.plots` the figures, :mod:`~fairprune.reporting.text` the report's
text, and :mod:`~fairprune.reporting.convergence` how steadily a constrained run's history
settles. It reads records and never trains; the core never imports it.

These names are resolved on first use (PEP 562), as in :mod:`fairprune`, so that the statistics
can be read without matplotlib and none of it imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fairprune._lazy import lazy_attributes

if TYPE_CHECKING:  # what the names below are, for type checkers and IDEs
    from fairprune.reporting.convergence import oscillation
    from fairprune.reporting.report import format_summary_table, load_histories, load_results, write_report
    from fairprune.reporting.stats import mean_std, paired_comparison, t_interval
    from fairprune.reporting.summaries import compare_to_baselines, summarise
    from fairprune.reporting.text import certificate_line, markdown, truthy

__all__ = [
    "certificate_line",
    "compare_to_baselines",
    "format_summary_table",
    "load_histories",
    "load_results",
    "markdown",
    "mean_std",
    "oscillation",
    "paired_comparison",
    "summarise",
    "t_interval",
    "truthy",
    "write_report",
]

_HOMES = {
    "certificate_line": "fairprune.reporting.text",
    "compare_to_baselines": "fairprune.reporting.summaries",
    "format_summary_table": "fairprune.reporting.report",
    "load_histories": "fairprune.reporting.report",
    "load_results": "fairprune.reporting.report",
    "markdown": "fairprune.reporting.text",
    "mean_std": "fairprune.reporting.stats",
    "oscillation": "fairprune.reporting.convergence",
    "paired_comparison": "fairprune.reporting.stats",
    "summarise": "fairprune.reporting.summaries",
    "t_interval": "fairprune.reporting.stats",
    "truthy": "fairprune.reporting.text",
    "write_report": "fairprune.reporting.report",
}


__getattr__, __dir__ = lazy_attributes(__name__, _HOMES, globals(), __all__)

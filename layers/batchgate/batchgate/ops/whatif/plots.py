"""PNG plots of a comparison: the start-latency CDF of every policy, and monthly cost against p95 start
latency. matplotlib is imported here only, with the Agg backend, when plots are written (`pip install
batchgate[whatif]`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from batchgate.ops.whatif.outcome import PolicyOutcome
from batchgate.ops.whatif.report import CDF_PLOT, COST_PLOT, PLOT_TITLES


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def write_plots(outcomes: Sequence[PolicyOutcome], directory: Path) -> list[str]:
    """Write both plots into `directory`; the file names written."""
    try:
        import matplotlib
    except ModuleNotFoundError as error:
        raise PlotsUnavailable("plots need matplotlib: pip install 'batchgate[whatif]'") from error
    matplotlib.use("Agg")
    from matplotlib import pyplot

    directory.mkdir(parents=True, exist_ok=True)
    figure, axes = pyplot.subplots(figsize=(8, 5))
    for outcome in outcomes:
        values = sorted(max(value, 0.1) for value in outcome.start_latencies)
        if not values:
            continue
        fractions = [(rank + 1) / len(values) for rank in range(len(values))]
        axes.step(values, fractions, where="post", label=outcome.label)
    axes.set_xscale("log")
    axes.set_xlabel("start latency: submitted -> running (s, log scale)")
    axes.set_ylabel("share of jobs")
    axes.set_title(PLOT_TITLES[CDF_PLOT])
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(directory / CDF_PLOT, dpi=100)
    pyplot.close(figure)

    figure, axes = pyplot.subplots(figsize=(8, 5))
    for outcome in outcomes:
        axes.scatter([outcome.start_p95], [outcome.month_usd], s=60)
        axes.annotate(
            outcome.label, (outcome.start_p95, outcome.month_usd), textcoords="offset points", xytext=(6, 6)
        )
    axes.set_yscale("log")
    axes.set_xlabel("p95 start latency (s)")
    axes.set_ylabel("cost per month (USD, log scale)")
    axes.set_title(PLOT_TITLES[COST_PLOT])
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(directory / COST_PLOT, dpi=100)
    pyplot.close(figure)
    return [CDF_PLOT, COST_PLOT]

"""Each benchmark's headline figures, as a markdown table of one shape, and what the runner does with
them: collect them from every section into one summary, and put that summary into the README between
its markers. The sections are the only channel from a benchmark to the runner (`run() -> str`), so the
summary is read back from the tables this module wrote."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FIGURES_HEADER = "| figure | target | measured | ratio to target | result |"
FIGURES_RULE = "|---|---|---|---:|---|"
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


@dataclass(frozen=True)
class Figure:
    """One measured figure against its target. `ratio` is measured / target bound (at most 1 passes an
    upper bound, at least 1 a lower bound); None for a figure that is only reported."""

    name: str
    target: str
    measured: str
    ratio: float | None = None
    passed: bool | None = None

    @property
    def result(self) -> str:
        if self.passed is None:
            return "reported"
        return "PASS" if self.passed else "MISS"

    def row(self) -> str:
        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}"
        cells = (self.name, self.target, self.measured, ratio, self.result)
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def at_most(name: str, measured: float, bound: float, target: str, shown: str) -> Figure:
    return Figure(name, target, shown, measured / bound if bound else None, measured <= bound)


def at_least(name: str, measured: float, bound: float, target: str, shown: str) -> Figure:
    return Figure(name, target, shown, measured / bound if bound else None, measured >= bound)


def figures_table(figures: Iterable[Figure]) -> str:
    return "\n".join([FIGURES_HEADER, FIGURES_RULE, *(figure.row() for figure in figures)])


def figure_rows(markdown: str) -> list[str]:
    """The rows of every figures table in a results document, in order."""
    rows: list[str] = []
    lines = markdown.splitlines()
    for index, line in enumerate(lines):
        if line.strip() != FIGURES_HEADER:
            continue
        for row in lines[index + 2 :]:
            if not row.startswith("|"):
                break
            rows.append(row)
    return rows


def replace_marked_block(text: str, block: str) -> str:
    """`text` with what stands between the README markers replaced by `block`; the markers stay.
    Raises ValueError when the markers are missing or out of order, rather than appending anywhere."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"no {README_START} ... {README_END} block")
    head = text[: start + len(README_START)]
    return f"{head}\n{block.strip()}\n{text[end:]}"


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def paired_ratio(samples: Sequence[float], baseline: Sequence[float]) -> float:
    """The median of the ratios of samples taken in the same round: a machine that slows down for
    a while slows both sides of a round, so the ratio holds where the two medians would drift apart."""
    if len(samples) != len(baseline) or not samples:
        raise ValueError("paired samples need one baseline sample per round")
    return median([sample / base for sample, base in zip(samples, baseline, strict=True)])


def spread(samples: Sequence[float], scale: float = 1.0, unit: str = "") -> str:
    """`median (min-max)` of the samples, scaled (e.g. 1000 for ms)."""
    return (
        f"{median(samples) * scale:.1f}{unit} "
        f"({min(samples) * scale:.1f}-{max(samples) * scale:.1f}, {len(samples)} runs)"
    )

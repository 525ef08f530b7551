"""The benchmarks' figures tables, the summary read back from them and the README block rewrite."""

from __future__ import annotations

import pytest

from bench._figures import (
    README_END,
    README_START,
    Figure,
    at_least,
    at_most,
    figure_rows,
    figures_table,
    paired_ratio,
    replace_marked_block,
)
from bench.cold_start import importtime_by_package


def test_verdicts_against_upper_and_lower_bounds() -> None:
    assert at_most("a", 0.2, 0.25, "≤ 0.25x", "0.2x").result == "PASS"
    assert at_most("a", 0.3, 0.25, "≤ 0.25x", "0.3x").result == "MISS"
    assert at_least("b", 25.0, 20.0, "> 20/s", "25/s").ratio == pytest.approx(1.25)
    assert at_least("b", 15.0, 20.0, "> 20/s", "15/s").result == "MISS"
    assert Figure("c", "-", "7/s").result == "reported"


def test_summary_rows_are_read_back_from_every_figures_table() -> None:
    first = figures_table([at_most("one", 1, 2, "≤ 2", "1")])
    second = figures_table([Figure("two | piped", "-", "3")])
    document = f"# R\n\n{first}\n\ntext\n\n| other | table |\n|---|---|\n| x | y |\n\n{second}\n"
    rows = figure_rows(document)
    assert rows == [
        "| one | ≤ 2 | 1 | 0.50 | PASS |",
        "| two \\| piped | - | 3 | - | reported |",
    ]


def test_readme_block_is_replaced_between_the_markers_only() -> None:
    text = f"# Title\n\nbefore\n{README_START}\nold\nlines\n{README_END}\nafter\n"
    replaced = replace_marked_block(text, "new table\n")
    assert replaced == f"# Title\n\nbefore\n{README_START}\nnew table\n{README_END}\nafter\n"
    assert replace_marked_block(replaced, "new table") == replaced


@pytest.mark.parametrize("text", ["no markers", f"{README_END}\n{README_START}"])
def test_readme_without_its_markers_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="block"):
        replace_marked_block(text, "table")


def test_importtime_lines_are_summed_per_top_level_package() -> None:
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       120 |        120 |   botocore.utils",
            "import time:        30 |        150 | botocore",
            "import time:       400 |        550 | app",
            "unrelated line",
        ]
    )
    assert importtime_by_package(stderr) == [("app", 0.0004), ("botocore", 0.00015)]


def test_a_paired_ratio_is_the_median_of_each_rounds_ratio() -> None:
    # Rounds 3 and 5 ran on a machine twice as slow; in round 2 only the baseline was slowed. Each
    # round's ratio: 1.5, 0.55, 1.5, 1.5, 1.5. The ratio of the two medians (0.33 / 0.4) would be 0.83.
    handler = [0.30, 0.33, 0.60, 0.30, 0.60]
    boto3 = [0.20, 0.60, 0.40, 0.20, 0.40]

    assert paired_ratio(handler, boto3) == pytest.approx(1.5)
    assert sorted(handler)[2] / sorted(boto3)[2] == pytest.approx(0.825)
    assert paired_ratio([2.0], [1.0]) == 2.0


@pytest.mark.parametrize(("samples", "baseline"), [([1.0, 2.0], [1.0]), ([], [])])
def test_paired_ratio_needs_a_baseline_sample_per_round(samples: list[float], baseline: list[float]) -> None:
    with pytest.raises(ValueError, match="one baseline sample per round"):
        paired_ratio(samples, baseline)

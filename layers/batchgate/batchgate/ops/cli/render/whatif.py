"""`batchgate whatif`: the policies side by side, the replay's window and settings, and the notes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from batchgate.ops.cli.render.text import plain

if TYPE_CHECKING:
    from batchgate.ops.whatif.model import WhatIfSettings
    from batchgate.ops.whatif.outcome import PolicyOutcome
    from batchgate.ops.whatif.trace import Trace


def whatif_document(
    trace: Trace,
    outcomes: Sequence[PolicyOutcome],
    settings: WhatIfSettings,
    measured: dict[str, float],
    *,
    notes: Sequence[str],
    files: Sequence[str],
) -> dict[str, Any]:
    return {
        "source": trace.source,
        "window": {"start": trace.window_start, "end": trace.window_end, "jobs": len(trace.jobs)},
        "skipped": trace.skipped,
        "measured_start_p50_seconds": measured,
        "settings": settings.to_dict(),
        "policies": [outcome.to_dict() for outcome in outcomes],
        "notes": list(notes),
        "files": list(files),
    }


def render_whatif(
    console: Console,
    trace: Trace,
    outcomes: Sequence[PolicyOutcome],
    settings: WhatIfSettings,
    notes: Sequence[str],
) -> None:
    from batchgate.ops.whatif.report import COLUMNS, rows, window_text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in COLUMNS:
        table.add_column(
            name, no_wrap=True, justify="left" if name in ("POLICY", "SPOF", "RAN ON") else "right"
        )
    for row in rows(outcomes):
        table.add_row(*(plain(cell) for cell in row))
    console.print(table)
    console.print(plain(window_text(trace, settings)), style="dim")
    for note in notes:
        console.print(plain(note if note.startswith("wrote ") else f"note: {note}"), style="dim")

"""`batchgate dlq`: what each dead-letter queue holds, and what a redrive moved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from batchgate.domain.masking import masked_message
from batchgate.ops.cli.render.text import plain, short_time
from batchgate.ops.dead_letters import DeadLetter, RedriveResult

# Error attributes and destination-record fields worth a word in the ABOUT column.
_ERROR_NAMES = ("ErrorMessage", "ERROR_MESSAGE", "ErrorCode", "ERROR_CODE", "errorType", "errorMessage")


def dead_letters_document(
    found: Mapping[str, list[DeadLetter]], depth: Mapping[str, int], *, reveal_environment: bool = False
) -> dict[str, Any]:
    """Each queue's messages; their bodies (a submit message, a task event with its overrides) without
    environment values unless `reveal_environment`."""
    return {
        "queues": [
            {
                "queue": name,
                "approximate_depth": depth[name],
                "messages": [_letter_document(letter, reveal_environment) for letter in letters],
            }
            for name, letters in found.items()
        ]
    }


def _letter_document(letter: DeadLetter, reveal_environment: bool) -> dict[str, Any]:
    document = letter.to_dict()
    if not reveal_environment:
        document["body"] = masked_message(letter.body)
    return document


def render_dead_letters(
    console: Console, found: Mapping[str, list[DeadLetter]], depth: Mapping[str, int]
) -> None:
    for name, letters in found.items():
        console.print(Text(f"{name} dead-letter queue", style="bold") + plain(f"  ~{depth[name]} messages"))
        if not letters:
            console.print(plain("  empty"), style="dim")
            continue
        table = Table(box=None, pad_edge=False, header_style="dim")
        for column in ("  MESSAGE ID", "SENT (UTC)", "RECEIVES", "JOB", "ABOUT"):
            table.add_column(column, no_wrap=column != "ABOUT")
        for letter in letters:
            summary = letter.summary
            about = _letter_about(summary)
            table.add_row(
                plain("  " + letter.message_id),
                plain(short_time(letter.sent_at)),
                plain(letter.receive_count),
                plain(summary.get("job_id")),
                plain(about),
            )
        console.print(table)


def _letter_about(summary: dict[str, Any]) -> str:
    if summary.get("shard_id"):
        return _stream_batch_about(summary)
    parts = []
    if summary.get("kind") == "relaunch" and summary.get("attempt"):
        parts.append(f"relaunch of attempt {summary['attempt']}")
    if summary.get("batch"):
        parts.append(f"batch {summary['batch']}")
    if summary.get("last_status"):
        parts.append(f"task {summary['last_status']} v{summary.get('version')}")
    for name, value in (summary.get("error") or {}).items():
        if name in _ERROR_NAMES:
            parts.append(str(value))
    if summary.get("note"):
        parts.append(str(summary["note"]))
    return "; ".join(parts)


def _stream_batch_about(summary: dict[str, Any]) -> str:
    """A history dead letter: the records it names, and why Lambda gave up on them."""
    stream = str(summary.get("stream_arn") or "")
    _, _, table_and_label = stream.partition(":table/")
    parts = [
        f"stream {table_and_label or stream or '-'}",
        f"shard {summary['shard_id']}",
        f"records {summary.get('start_sequence_number')}..{summary.get('end_sequence_number')}"
        f" ({summary.get('batch_size')})",
    ]
    error = summary.get("error") or {}
    if error.get("condition"):
        parts.append(f"{error['condition']} after {error.get('approximateInvokeCount', '?')} invocations")
    if error.get("functionError"):
        parts.append(f"function error {error['functionError']}")
    if summary.get("first_record_at"):
        parts.append(
            f"arrived {short_time(summary['first_record_at'])}..{short_time(summary.get('last_record_at'))}"
        )
    return "; ".join(parts)


def redrive_document(results: Sequence[RedriveResult]) -> dict[str, Any]:
    return {"results": [result.to_dict() for result in results]}


def render_redrive(console: Console, results: Sequence[RedriveResult]) -> None:
    for result in results:
        console.print(plain(f"{result.queue}: moved {len(result.moved)} to {result.destination}"))
        for message_id, error in result.failed:
            console.print(plain(f"  failed {message_id}: {error}"), style="red")
        if result.records_gone:
            console.print(
                plain(
                    f"  {len(result.records_gone)} message(s) name records that have left the job "
                    "table's stream: the history misses those attempts (the job items are "
                    "unaffected); the messages stay in the queue"
                ),
                style="yellow",
            )


def echo_redrive_before_error(results: Sequence[RedriveResult]) -> None:
    """What a redrive stopped by an error had moved, on stderr: stdout stays empty on an error."""
    for result in results:
        click.echo(
            f"before the error, {result.queue}: moved {len(result.moved)} to {result.destination}"
            + (f", {len(result.failed)} not redriven" if result.failed else ""),
            err=True,
        )

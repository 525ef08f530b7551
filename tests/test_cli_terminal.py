"""Control characters from data never reach the terminal raw: every human-readable output shows them
escaped (`\\x1b`, `\\x9b`), keeping newline and tab only in multi-line text (log lines); `--json` keeps
the exact values."""

from __future__ import annotations

import io
import json
import threading

import pytest
from batchgate.domain.jobs import JobStatus, job_id_for
from batchgate.ops.cli.exits import AwsFailure, Failure
from batchgate.ops.cli.render.terminal import TerminalConsole
from batchgate.ops.local.commands import make_console
from batchgate.ops.local.demo import DEMO_JOBS, summary_table
from batchgate.ops.local.poller import poll_until_stopped
from batchgate.ops.terminal import terminal_text
from batchgate.services.dispatch import DispatchResult
from botocore.exceptions import ClientError
from rich.table import Table

from tests.cli_support import CliHarness, harness, listed_job
from tests.test_cli import EXIT_1_STREAM, failed_payroll_job

__all__ = ["harness"]  # the fixture, imported for pytest

OSC_52 = "\x1b]52;c;ZXZpbA==\x07"  # writes the clipboard
TITLE = "\x1b]0;owned\x1b\\"  # changes the window title
CSI_COLOUR = "\x1b[31;1m"
C1_CSI = "\x9b2J"  # the one-byte CSI: clears the screen on terminals that take C1


def raw_controls(text: str, keep: str = "\n") -> set[str]:
    """The control characters (C0, DEL, C1) of `text` other than `keep`."""
    return {c for c in text if (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) and c not in keep}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (OSC_52, "\\x1b]52;c;ZXZpbA==\\x07"),
        (TITLE, "\\x1b]0;owned\\x1b\\"),
        (CSI_COLOUR, "\\x1b[31;1m"),
        (C1_CSI, "\\x9b2J"),
        ("a\x7fb\x00c", "a\\x7fb\\x00c"),
        ("two\nlines\tand\rback", "two\\nlines\\tand\\rback"),
        ("lone \ud83d", "lone \ufffd"),
    ],
)
def test_terminal_text_escapes_every_control_visibly(value: str, shown: str) -> None:
    assert terminal_text(value) == shown


def test_multi_line_text_keeps_newline_and_tab_only() -> None:
    assert terminal_text(f"a\tb\nc{OSC_52}\r", lines=True) == "a\tb\nc\\x1b]52;c;ZXZpbA==\\x07\\r"


def test_a_rejected_messages_batch_key_and_reason_are_shown_escaped(harness: CliHarness) -> None:
    batch, key = f"pay{C1_CSI}roll{OSC_52}", f"k{TITLE}"
    body = json.dumps({"schema_version": 1, "batch": batch, "idempotency_key": key}, ensure_ascii=False)
    assert harness.stack.dispatcher().dispatch("m-1", body) is DispatchResult.REJECTED
    job_id = job_id_for(batch, key)
    stored = harness.stack.table.get(job_id)
    assert stored is not None and C1_CSI in (stored.reason or "")  # the reason quotes the batch

    for command in (["show", job_id], ["jobs", "--status", "REJECTED"], ["stats", "--since", "30d"]):
        out = harness.run(*command).stdout
        assert raw_controls(out) == set(), command
        assert "\\x9b2J" in out, command
    shown = harness.run("show", job_id).stdout
    assert "\\x1b]52;c;ZXZpbA==\\x07" in shown and "k\\x1b]0;owned" in shown

    document = harness.json("show", job_id, exit_code=1)
    assert (document["batch"], document["idempotency_key"]) == (batch, key)
    assert document["reason"] == stored.reason and document["raw_message"] == body
    [row] = harness.json("jobs", "--status", "REJECTED")["jobs"]
    assert row["batch"] == batch


def test_an_environment_value_and_a_reason_are_shown_escaped(harness: CliHarness) -> None:
    job = harness.add(
        listed_job(1, JobStatus.FAILED)._replace(
            environment={"LOG_LEVEL": f"{CSI_COLOUR}DEBUG"},
            reason=f"stopped{TITLE}",
        )
    )
    for command in (["show", job.job_id, "--reveal-env"], ["jobs"]):
        out = harness.run(*command).stdout
        assert raw_controls(out) == set(), command
    assert "LOG_LEVEL=\\x1b[31;1mDEBUG" in harness.run("show", job.job_id, "--reveal-env").stdout
    document = harness.json("show", job.job_id, "--reveal-env", exit_code=1)
    assert document["environment"] == {"LOG_LEVEL": f"{CSI_COLOUR}DEBUG"}
    assert document["reason"] == f"stopped{TITLE}"


def test_a_log_line_is_shown_escaped_keeping_its_lines_and_exact_in_json(harness: CliHarness) -> None:
    job_id = failed_payroll_job(harness)
    line = f"paid{OSC_52}\n\tat payroll{C1_CSI}"
    harness.write_logs(EXIT_1_STREAM, line)
    out = harness.ok("logs", job_id).stdout
    assert raw_controls(out, keep="\n\t") == set()
    assert out.endswith(" paid\\x1b]52;c;ZXZpbA==\\x07\n\tat payroll\\x9b2J\n")
    [event] = [json.loads(text) for text in harness.ok("logs", job_id, "--json").stdout.splitlines()]
    assert event["message"] == line


def test_a_dead_letters_batch_is_shown_escaped(harness: CliHarness) -> None:
    body = json.dumps({"schema_version": 1, "batch": f"x{OSC_52}"}, ensure_ascii=False)
    harness.sqs.send_message(QueueUrl=harness.jobs_dlq_url, MessageBody=body)
    out = harness.ok("dlq", "list", "--queue", "jobs").stdout
    assert raw_controls(out) == set() and "batch x\\x1b]52" in out


def test_an_error_message_is_shown_escaped() -> None:
    assert Failure(f"no job {C1_CSI}").format_message() == "no job \\x9b2J"
    assert AwsFailure(f"AWS failed: {OSC_52}").format_message() == "AWS failed: \\x1b]52;c;ZXZpbA==\\x07"


def test_the_consoles_escape_what_any_renderable_holds() -> None:
    written = io.StringIO()
    console = TerminalConsole(file=written, force_terminal=True, width=120, highlight=False)
    table = Table()
    table.add_column("reason")
    table.add_row(f"cell{OSC_52}")
    console.print(table)
    console.print(f"[pool p] {TITLE}{C1_CSI}", markup=False)  # the local stack's --verbose echo
    console.print("styled", style="bold")
    out = written.getvalue()
    assert "cell\\x1b]52" in out and "[pool p] \\x1b]0;owned\\x1b\\\\x9b2J" in out
    # rich's own styles still reach the terminal; nothing of the data does.
    assert out.replace("\x1b[1m", "").replace("\x1b[0m", "").count("\x1b") == 0
    assert isinstance(make_console(), TerminalConsole)


def test_the_local_demos_summary_takes_a_reason_as_text(harness: CliHarness) -> None:
    demo = DEMO_JOBS[0]
    job = listed_job(1, JobStatus.FAILED)._replace(reason=f"[link=https://example.com]x[/link]{OSC_52}")
    written = io.StringIO()
    TerminalConsole(file=written, width=300).print(summary_table((demo,), {demo.label: job}))
    out = written.getvalue()
    assert "[link=https://example.com]x[/link]\\x1b]52" in out and raw_controls(out) == set()


def test_the_local_stacks_error_lines_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()

    def poll_once() -> None:
        stop.set()
        raise ClientError({"Error": {"Code": "Boom", "Message": f"queue{OSC_52}"}}, "ReceiveMessage")

    poll_until_stopped(poll_once, stop, "jobs")
    err = capsys.readouterr().err
    assert "queue\\x1b]52" in err and raw_controls(err) == set()

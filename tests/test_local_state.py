"""The local stack's state file: one running stack per file, and a stale file said at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from batchgate.ops.local.commands import local_group
from batchgate.ops.stack_outputs import ConfigurationError, LocalState
from click.testing import CliRunner


def ended_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def state_file(tmp_path: Path, pid: int) -> Path:
    path = tmp_path / "local.json"
    path.write_text(json.dumps({"pid": pid, "endpoint_url": "http://127.0.0.1:1", "region": "us-east-1"}))
    return path


def test_a_second_up_on_a_running_stacks_state_file_is_refused(tmp_path: Path) -> None:
    path = state_file(tmp_path, os.getpid())  # this process stands for the running stack
    before = path.read_text()
    result = CliRunner().invoke(local_group, ["up", "--state-file", str(path)])
    assert result.exit_code == 1
    assert f"already running with the state file {path}" in result.output
    assert path.read_text() == before


def test_the_cli_says_at_once_that_a_state_file_is_stale(tmp_path: Path) -> None:
    path = state_file(tmp_path, ended_pid())
    with pytest.raises(ConfigurationError, match=r"is stale: its stack .* has ended"):
        LocalState.load(path)


def test_a_state_file_of_a_running_stack_loads(tmp_path: Path) -> None:
    assert LocalState.load(state_file(tmp_path, os.getpid())).endpoint_url == "http://127.0.0.1:1"


def test_up_with_an_invalid_catalog_says_why_without_a_traceback(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text('{"version": 1, "launch_classes": {}, "batches": {}}')
    result = CliRunner().invoke(
        local_group, ["up", "--state-file", str(tmp_path / "local.json"), "--catalog", str(catalog)]
    )
    assert result.exit_code == 1
    assert "lists no batch" in result.output and "Traceback" not in result.output

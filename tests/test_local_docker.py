"""The local executor's Docker engine adapter, and `batchgate local up`'s checks of `--image`."""

from __future__ import annotations

from pathlib import Path

import pytest
from batchgate.ops.local.commands import local_group
from batchgate.ops.local.docker import DockerEngine, DockerUnavailable
from click.testing import CliRunner

from tests.docker_stand_in import docker_calls, install_docker_stand_in

IMAGE = "example/reports:1"


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    return install_docker_stand_in(tmp_path / "bin", [IMAGE])


def test_detect_finds_an_engine_that_answers(stand_in: Path) -> None:
    engine = DockerEngine.detect(str(stand_in))

    assert engine is not None
    assert engine.check() == "0.0-stand-in"


def test_detect_without_a_docker_command_or_an_engine(tmp_path: Path) -> None:
    silent = tmp_path / "docker"
    silent.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    silent.chmod(0o755)

    assert DockerEngine.detect(str(tmp_path / "missing")) is None
    assert DockerEngine.detect(str(silent)) is None
    with pytest.raises(DockerUnavailable, match="Cannot connect to the Docker daemon"):
        DockerEngine(str(silent)).check()


def test_has_image_asks_the_engine_once_per_image(stand_in: Path) -> None:
    engine = DockerEngine(str(stand_in))

    answers = [engine.has_image(IMAGE), engine.has_image("example/other:1"), engine.has_image(IMAGE)]

    assert answers == [True, False, True]
    inspected = [call[-1] for call in docker_calls(stand_in.parent) if call[:2] == ["image", "inspect"]]
    assert inspected == [IMAGE, "example/other:1"]
    assert engine.has_image("") is False


def test_run_argv_follows_ecs_command_and_entry_point_semantics() -> None:
    engine = DockerEngine("docker")

    plain = engine.run_argv(
        name="batchgate-1",
        image=IMAGE,
        entry_point=(),
        command=["python", "-m", "reports.export", "headcount"],
        environment={"AWS_SECRET_ACCESS_KEY": "not-on-the-command-line", "LOG_LEVEL": "INFO"},
        labels={"batchgate.task-arn": "arn:task/1"},
    )
    with_entry_point = engine.run_argv(
        name="batchgate-2", image=IMAGE, entry_point=("/bin/sh", "-c"), command=["echo hi"], environment={}
    )

    assert plain == [
        "docker", "run", "--rm", "--name", "batchgate-1", "--network", "host",
        "--label", "batchgate.task-arn=arn:task/1",
        "--env", "AWS_SECRET_ACCESS_KEY", "--env", "LOG_LEVEL",
        IMAGE, "python", "-m", "reports.export", "headcount",
    ]  # fmt: skip
    assert not any("not-on-the-command-line" in part for part in plain)
    assert with_entry_point[-5:] == ["--entrypoint", "/bin/sh", IMAGE, "-c", "echo hi"]


def test_stop_asks_the_engine_with_the_grace_period(stand_in: Path) -> None:
    (stand_in.parent / "batchgate-9.pid").write_text("999999999")  # no such process: already gone

    DockerEngine(str(stand_in)).stop("batchgate-9", 2.4)

    assert docker_calls(stand_in.parent)[-1] == ["stop", "--time", "2", "batchgate-9"]


def up(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(local_group, ["up", *arguments])
    return result.exit_code, result.output


def test_up_refuses_an_image_for_a_family_the_catalog_does_not_have() -> None:
    code, output = up("--image", "batchgate-nope=example/x:1")

    assert code == 1
    assert "batchgate-nope: not a task definition family of the catalog" in output
    assert "batchgate-reports" in output


def test_up_refuses_an_image_with_no_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code, output = up("--image", f"batchgate-reports={IMAGE}", "--no-docker")
    assert (code, "which --no-docker turns off" in output) == (1, True)

    monkeypatch.setenv("PATH", str(tmp_path))  # no docker command at all
    code, output = up("--image", f"batchgate-reports={IMAGE}")
    assert (code, "--image needs a Docker engine" in output) == (1, True)


def test_up_refuses_an_image_the_engine_does_not_have(
    monkeypatch: pytest.MonkeyPatch, stand_in: Path
) -> None:
    monkeypatch.setenv("PATH", str(stand_in.parent))

    code, output = up("--image", "batchgate-reports=example/not-built:1")

    assert code == 1
    assert "no image batchgate-reports=example/not-built:1" in output
    assert "never pulls" in output


def test_up_refuses_an_image_option_without_a_family() -> None:
    code, output = up("--image", "example/x:1")

    assert code == 2
    assert "is not FAMILY=IMAGE" in output

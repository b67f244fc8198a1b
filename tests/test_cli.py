import subprocess
import sys

import pytest

from tfs_traffic import cli


def test_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "tfs_traffic.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for module in cli.COMMAND_MODULES:
        assert module.rsplit(".", 1)[1].replace("_", "-") in out.stdout


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert capsys.readouterr().err == cli.build_parser().format_help()


def test_a_command_of_actions_without_one_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["image"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: tfs-traffic image [-h] ACTION ...\n")
    assert "\nactions:\n  ACTION\n    build " in err


@pytest.mark.parametrize(
    "argv",
    [
        ["backfill"],
        ["demo"],
        ["export"],
        ["image", "build"],
        ["image", "sidecar-context"],
        ["image", "build-server"],
        ["k8s", "render"],
        ["k8s", "chart-files"],
        ["k8s", "scrape-config"],
        ["patch"],
        ["queries", "render"],
        ["report"],
        ["retire"],
        ["retire", "plan"],
        ["retire", "apply"],
        ["retire", "verify"],
        ["retire", "rollback"],
        ["sidecar"],
        ["sim"],
    ],
)
def test_every_command_and_action_prints_its_help_as_written(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tfs-traffic {' '.join(argv)} ")
    assert f"\n  tfs-traffic {argv[0]} " in out  # the examples, their lines kept as written

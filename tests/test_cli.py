import subprocess
import sys

from tfs_traffic import cli


def test_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "tfs_traffic.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for module in cli.COMMAND_MODULES:
        assert module.rsplit(".", 1)[1].replace("_", "-") in out.stdout


def test_no_command_is_a_usage_error(capsys) -> None:
    assert cli.main([]) == 2

import pytest

from tfs_traffic.errors import ToolError
from tfs_traffic.files import atomic_writer, write_atomic


def test_failed_write_leaves_old_file_and_no_temp(tmp_path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_writer(target) as f:
        f.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_write_atomic_and_unwritable_dir(tmp_path) -> None:
    write_atomic(tmp_path / "a", "x")
    assert (tmp_path / "a").read_text() == "x"
    with pytest.raises(ToolError, match="cannot write"):
        write_atomic(tmp_path / "missing" / "a", "x")

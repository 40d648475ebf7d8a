"""The helper process that copies restored outputs back (snakemake_executor_nixworkflow/copier.py).

A cached Snakemake job's outputs are copied back by a helper process while the executor post-processes
earlier jobs. What it leaves must be exactly what `Store.materialise` leaves: a real file (or tree) with a
fresh mtime and writable modes, never a link into the store, and the store object untouched whatever the
user then does to the copy. When the helper cannot do a copy (a directory in the way, the helper gone), the
caller is told so and copies itself; it never waits forever.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from snakemake_executor_nixworkflow.copier import FALLBACK, Copier, copy_into_place


def sealed(path: Path, text: str, mode: int = 0o444) -> Path:
    """A read-only file like a store object."""
    path.write_text(text)
    path.chmod(mode)
    return path


def test_copy_into_place_leaves_a_writable_real_file_with_a_fresh_mtime(tmp_path: Path) -> None:
    src = sealed(tmp_path / "object", "bytes\n")
    old = time.time() - 3600
    os.utime(src, (old, old))
    dest = tmp_path / "out" / "sub" / "result.txt"
    assert copy_into_place(str(src), str(dest), "auto") == "ok"
    st = os.lstat(dest)
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_ino != os.stat(src).st_ino
    assert stat.S_IMODE(st.st_mode) == 0o644, "a restored file is the user's to edit, like materialise's copy"
    assert st.st_mtime > old + 3000, "restored outputs are fresh files, newer than their inputs"
    dest.write_text("edited\n")
    assert src.read_text() == "bytes\n" and stat.S_IMODE(os.stat(src).st_mode) == 0o444
    assert [p.name for p in dest.parent.iterdir()] == ["result.txt"], "no temporary file left behind"


def test_copy_into_place_keeps_the_executable_bit_and_copies_trees(tmp_path: Path) -> None:
    tree = tmp_path / "object"
    (tree / "d").mkdir(parents=True)
    sealed(tree / "d" / "run.sh", "#!/bin/sh\n", 0o555)
    (tree / "link").symlink_to("d/run.sh")
    dest = tmp_path / "restored"
    assert copy_into_place(str(tree), str(dest), "copy") == "ok"
    assert stat.S_IMODE(os.stat(dest / "d" / "run.sh").st_mode) == 0o755
    assert os.readlink(dest / "link") == "d/run.sh"


def test_a_directory_in_the_way_is_left_to_the_caller(tmp_path: Path) -> None:
    """Replacing a directory needs Store.materialise's rename dance: the helper declines and changes nothing."""
    src = sealed(tmp_path / "object", "x")
    dest = tmp_path / "here" / "dir"
    (dest / "keep").mkdir(parents=True)
    assert copy_into_place(str(src), str(dest), "auto") == FALLBACK
    assert [p.name for p in dest.iterdir()] == ["keep"] and [p.name for p in dest.parent.iterdir()] == ["dir"]


def test_the_helper_process_copies_in_order_and_reports_each_copy(tmp_path: Path) -> None:
    copier = Copier()
    try:
        objects = [sealed(tmp_path / f"o{i}", f"content {i}\n") for i in range(20)]
        ids = [copier.submit(o, tmp_path / "out" / f"{i}.txt", "auto") for i, o in enumerate(objects)]
        assert all(i is not None for i in ids)
        assert [copier.wait(i) for i in reversed(ids)] == ["ok"] * 20  # type: ignore[arg-type]
        assert [(tmp_path / "out" / f"{i}.txt").read_text() for i in range(20)] == [f"content {i}\n" for i in range(20)]
        missing = copier.submit(tmp_path / "no-such-object", tmp_path / "out" / "x.txt", "auto")
        assert missing is not None and copier.wait(missing).startswith("error:")
        assert not (tmp_path / "out" / "x.txt").exists()
    finally:
        copier.close()


def test_a_dead_helper_means_the_caller_copies_and_never_waits_forever(tmp_path: Path) -> None:
    copier = Copier()
    first = copier.submit(sealed(tmp_path / "o", "x"), tmp_path / "a", "auto")
    assert first is not None and copier.wait(first) == "ok"
    assert copier._proc is not None
    copier._proc.kill()
    copier._proc.wait()
    later = copier.submit(tmp_path / "o", tmp_path / "b", "auto")
    assert later is None or copier.wait(later) == FALLBACK
    assert copier.submit(tmp_path / "o", tmp_path / "c", "auto") is None, "a broken helper is not used again"
    copier.close()


@pytest.mark.parametrize("mode", ["copy", "auto"])
def test_a_user_edit_of_a_restored_output_never_reaches_the_store(tmp_path: Path, mode: str) -> None:
    copier = Copier()
    try:
        src = sealed(tmp_path / "object", "stored\n")
        ident = copier.submit(src, tmp_path / "out.txt", mode)
        assert ident is not None and copier.wait(ident) == "ok"
        with open(tmp_path / "out.txt", "a") as f:
            f.write("appended\n")
        assert src.read_text() == "stored\n"
    finally:
        copier.close()


def test_many_requests_without_reading_answers_never_deadlock(tmp_path: Path) -> None:
    """A caller that submits far more copies than a pipe holds answers for (long error answers, none read yet)
    must not block forever: the copier reads answers itself before writing more requests."""
    import subprocess
    import sys

    script = f'''
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from snakemake_executor_nixworkflow.copier import Copier
c = Copier()
ids = [c.submit({str(tmp_path)!r} + "/missing-" + "x" * 150 + str(i), {str(tmp_path)!r} + "/d" + str(i), "auto")
       for i in range(3000)]
answers = [c.wait(i) for i in ids]
c.close()
print(sum(a.startswith("error:") for a in answers))
'''
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3000"

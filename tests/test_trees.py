"""Deep trees, crash-safe publication, quarantine of sealed objects, special files (issue 8 item 7, issue 9
items 5, 6 and 8): walks of any depth and path length, objects read-only the moment they are visible."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixlib import boot, nar, statmemo, trees
from nixlib.errors import NixWorkflowError
from nixlib.store import Store
from tests.helpers import REPO, nw
from tests.nixcheck import require_nix
from tests.test_nar import reference_nar

PATH_MAX = 4096


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory removed with `rm -rf` afterwards: pytest's own cleanup recurses and would fail on deep trees."""
    path = Path(tempfile.mkdtemp(prefix="nw-trees-"))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def make_deep(root: Path, depth: int, leaf: bytes = b"leaf\n") -> None:
    """root/a/a/.../a/f, `depth` directories below root, built through descriptors (paths may pass PATH_MAX)."""
    os.mkdir(root)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("a", dir_fd=fd)
        child = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    f = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(f, leaf)
    os.close(f)
    os.close(fd)


def _s(data: bytes) -> bytes:
    return len(data).to_bytes(8, "little") + data + b"\0" * (-len(data) % 8)


def expected_deep_nar(depth: int, leaf: bytes = b"leaf\n") -> bytes:
    """The NAR of make_deep's tree written out from the format, without walking anything."""
    file = _s(b"(") + _s(b"type") + _s(b"regular") + _s(b"contents") + _s(leaf) + _s(b")")
    bottom = _s(b"(") + _s(b"type") + _s(b"directory") + _s(b"entry") + _s(b"(") + _s(b"name") + _s(b"f") \
        + _s(b"node") + file + _s(b")") + _s(b")")
    down = _s(b"(") + _s(b"type") + _s(b"directory") + _s(b"entry") + _s(b"(") + _s(b"name") + _s(b"a") + _s(b"node")
    return _s(b"nix-archive-1") + down * depth + bottom + (_s(b")") + _s(b")")) * depth


def nar_bytes(path: Path) -> bytes:
    chunks: list[bytes] = []
    nar.dump(path, chunks.append)
    return b"".join(chunks)


def base32_sha256(data: bytes) -> str:
    from nixlib import base32

    return base32.encode(hashlib.sha256(data).digest())


# ---- walks at any depth -------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1500, 3000])
def test_deep_tree_is_archived_like_the_format_says(scratch: Path, depth: int) -> None:
    """1,500 levels raised RecursionError in copy/rmtree; 3,000 one-letter levels also pass PATH_MAX."""
    make_deep(scratch / "t", depth)
    data = nar_bytes(scratch / "t")
    assert data == expected_deep_nar(depth)
    assert nar.nar_hash(scratch / "t") == base32_sha256(data)


@pytest.mark.nix
def test_deep_tree_hash_agrees_with_real_nix(scratch: Path) -> None:
    """1,500 levels: deeper than Python's recursion limit, shallow enough for Nix's path-based walk."""
    nix_hash, nix_store = require_nix("nix-hash"), require_nix("nix-store")
    make_deep(scratch / "t", 1500)
    (scratch / "t" / "side").write_bytes(b"x")
    os.chmod(scratch / "t" / "side", 0o755)
    (scratch / "t" / "link").symlink_to("a/a")
    expected = subprocess.run([nix_hash, "--type", "sha256", "--base32", scratch / "t"], check=True,
                              capture_output=True, text=True).stdout.strip()
    assert nar.nar_hash(scratch / "t") == expected
    dumped = subprocess.run([nix_store, "--dump", scratch / "t"], check=True, capture_output=True).stdout
    assert nar_bytes(scratch / "t") == dumped


def test_copy_seal_scan_list_and_remove_a_tree_deeper_than_path_max(scratch: Path) -> None:
    src, dst = scratch / "src", scratch / "dst"
    make_deep(src, 2100)
    trees.copy(src, dst, writable=True)
    trees.seal(dst)
    assert nar_bytes(dst) == expected_deep_nar(2100)
    assert statmemo.scan(dst).signature != statmemo.scan(src).signature  # inodes differ; both scans complete
    paths = trees.file_paths(dst)
    assert len(paths) == 2102 and len(bytes(paths[-1])) > PATH_MAX and paths[-1].name == "f"
    modes = [(p, stat.S_IMODE(st.st_mode)) for p, st in trees.stat_tree(dst)]
    assert [p for p, _ in modes] == paths
    assert {m for _, m in modes[1:-1]} == {0o555} and modes[-1][1] == 0o444  # sealed all the way down
    os.chmod(dst, 0o555)
    trees.remove(dst)
    trees.remove(src)
    assert os.listdir(scratch) == []


def test_walks_reopen_closed_ancestors_correctly(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a few directories stay open; the ones closed on the way down are reopened through '..'."""
    monkeypatch.setattr(trees, "_KEEP_OPEN", 2)
    root = scratch / "t"
    for branch in ("b", "c"):
        deep = root / branch / "x" / "y" / "z" / "w"
        deep.mkdir(parents=True)
        (deep / "f").write_text(branch)
        (root / branch / "x" / "g").write_text(branch * 2)
    (root / "b" / "x" / "y" / "l").symlink_to("../g")
    assert nar_bytes(root) == reference_nar(root)
    trees.copy(root, scratch / "copy", writable=True)
    assert nar_bytes(scratch / "copy") == reference_nar(root)
    trees.remove(scratch / "copy")
    assert not (scratch / "copy").exists()


def test_special_files_are_refused_by_copy_and_seal(scratch: Path) -> None:
    (scratch / "t" / "sub").mkdir(parents=True)
    os.mkfifo(scratch / "t" / "sub" / "pipe")
    with pytest.raises(trees.UnstorableFile, match="t/sub/pipe: it is a FIFO") as raised:
        trees.seal(scratch / "t")
    told = str(raised.value.within("output 'out' of step 's'"))
    assert told.startswith("cannot store output 'out' of step 's': sub/pipe is a FIFO (named pipe)")
    with pytest.raises(NixWorkflowError, match="FIFO"):
        trees.copy(scratch / "t", scratch / "c", writable=True)


# ---- the real CLI -------------------------------------------------------------------------


def deep_step(levels: int) -> str:
    """A shell step making `levels` nested directories quickly (mkdir -p in steps of 500)."""
    assert levels % 500 == 0
    return (f"output('p=$(printf \"a/%.0s\" $(seq 500)); for i in $(seq {levels // 500}); do mkdir -p $p; cd $p; done; "
            "echo leaf > f')")


def test_nw_run_stores_materialises_and_collects_a_deep_tree(tmp_path: Path, store_root: Path) -> None:
    """3,000 levels: past the recursion limit (copy, rmtree) and past PATH_MAX (every path-based call)."""
    levels = 3000
    exp = tmp_path / "exp.py"
    exp.write_text(f"from nixlib import output\ndeep = {deep_step(levels)}\n")
    try:
        run = nw("run", str(exp))
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr
        link = Path("nix-workflow-output/deep")
        h = os.path.basename(os.readlink(link))
        obj = store_root / "store" / h
        assert nar_bytes(obj) == expected_deep_nar(levels)
        assert nar.nar_hash(obj) == h  # the object re-hashes to its name
        assert stat.S_IMODE(os.lstat(obj).st_mode) == 0o555
        assert os.listdir(store_root / "tmp") == []  # the build directory is gone too
        again = nw("run", str(exp), check=True)
        assert "cached 1" in again.stderr
        Store(store_root).materialise(h, tmp_path / "copy", mode="copy")
        assert nar_bytes(tmp_path / "copy") == expected_deep_nar(levels)
        trees.remove(tmp_path / "copy")
        link.unlink()
        gc = nw("gc", "--min-age", "0")
        assert gc.returncode == 0 and "Traceback" not in gc.stderr, gc.stderr
        assert not obj.exists()
        assert [n for n in os.listdir(store_root / "store")] == []
    finally:
        subprocess.run(["rm", "-rf", str(store_root)], check=False)


def test_step_output_with_a_fifo_or_socket_is_a_clear_error(tmp_path: Path, store_root: Path) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text(
        "from nixlib import output\n"
        "piped = output('mkdir sub; echo x > sub/f; mkfifo sub/pipe')\n"
        "sock = output('python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind(\\'s\\')\"; echo > g')\n"
    )
    run = nw("run", str(exp), "-k")
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "cannot store output 'out' of step 'piped': sub/pipe is a FIFO" in run.stderr
    assert "cannot store output 'out' of step 'sock': s is a socket" in run.stderr
    assert os.listdir(store_root / "store") == [] and os.listdir(store_root / "tmp") == []


def test_nw_hash_of_devices_fifos_and_sockets_is_a_clear_error(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "sock"))
        for path, kind in (("/dev/zero", "a character device"), (tmp_path / "fifo", "a FIFO"),
                           (tmp_path / "sock", "a socket")):
            r = nw("hash", str(path), timeout=30)
            assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
            assert f"cannot hash {path}: it is {kind}" in r.stderr


# ---- publication --------------------------------------------------------------------------


def test_an_object_is_read_only_the_moment_its_name_exists(tmp_path: Path, store_root: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The old code renamed a writable directory into store/ and sealed it afterwards: a kill in between
    left a writable object. Every rename that creates an object name must already see mode 0555."""
    store = Store(store_root)
    seen: list[tuple[str, int]] = []
    real_rename = os.rename

    def rename(src: object, dst: object, *args: object, **kwargs: object) -> None:
        real_rename(src, dst, *args, **kwargs)
        if os.path.dirname(os.fspath(dst)) == str(store_root / "store"):
            seen.append((os.path.basename(os.fspath(dst)), stat.S_IMODE(os.lstat(dst).st_mode)))

    monkeypatch.setattr(os, "rename", rename)
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("x")
    h = store.ingest(src)
    named = [(name, mode) for name, mode in seen if nar.is_nar_hash(name)]
    assert named == [(h, 0o555)]


def test_a_publisher_killed_before_the_final_rename_leaves_only_a_reclaimable_hidden_stage(
        tmp_path: Path, store_root: Path) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("x")
    code = ("import os, sys; from nixlib import store as s\n"
            "s._place = lambda staged, dest: os._exit(9)\n"
            f"s.Store({str(store_root)!r}).ingest({str(src)!r})\n")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 9
    names = os.listdir(store_root / "store")
    assert len(names) == 1 and names[0].startswith(f".stage-{socket.gethostname()}-")
    leftover = store_root / "store" / names[0]
    assert stat.S_IMODE(os.lstat(leftover).st_mode) == 0o555
    assert list(trees.dead_stage_leftovers(store_root)) == [leftover]
    # a live publisher's stage (this process) is not a leftover
    live = store_root / "store" / trees.stage_name()
    live.mkdir()
    assert list(trees.dead_stage_leftovers(store_root)) == [leftover]
    trees.remove(leftover)
    live.rmdir()
    assert os.listdir(store_root / "store") == []


# ---- quarantine of sealed objects by non-root users -----------------------------------------

NOBODY, OTHER = 65534, 65533


def as_user(uid: int, code: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-c", code],
                          cwd=cwd, env=dict(os.environ, PYTHONPATH=str(REPO), HOME=str(cwd), **(env or {})),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A world-accessible directory holding a 1777 store, as two users would share it."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as two other users")
    path = Path(tempfile.mkdtemp(prefix="nw-shared-"))
    path.chmod(0o1777)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def corrupt(obj: Path) -> None:
    """Change a byte of a sealed object's file (as root, whatever its mode)."""
    (obj / "sub" / "f").write_text("tampered")


INGEST = ("import os; from nixlib.store import Store; s = Store(os.environ['NIX_WORKFLOW_STORE']); "
          "os.makedirs('src/sub', exist_ok=True); open('src/sub/f', 'w').write('x'); print(s.ingest('src'))")


def test_a_user_quarantines_their_own_corrupt_directory_object(shared: Path) -> None:
    """Renaming a 0555 directory into quarantine/ fails with EACCES for its (non-root) owner: `nw run` and
    `nw verify` crashed with PermissionError every time. Now the object is moved aside and rebuilt."""
    env = {"NIX_WORKFLOW_STORE": str(shared / "store")}
    work = shared / "nobody"
    work.mkdir()
    os.chown(work, NOBODY, NOBODY)
    (work / "exp.py").write_text("from nixlib import output\nres = output('mkdir sub; echo x > sub/f')\n")
    os.chmod(work / "exp.py", 0o644)
    run = ("import sys; from nixlib.cli import main; sys.exit(main(['run', 'exp.py']))")
    first = as_user(NOBODY, run, work, env)
    assert first.returncode == 0, first.stderr
    h = os.path.basename(os.readlink(work / "nix-workflow-output" / "res"))
    corrupt(shared / "store" / "store" / h)
    second = as_user(NOBODY, run, work, env)
    assert second.returncode == 0 and "Traceback" not in second.stderr, second.stderr
    assert nar.nar_hash(shared / "store" / "store" / h) == h  # rebuilt intact
    moved = os.listdir(shared / "store" / "quarantine")
    assert len(moved) == 1 and moved[0].startswith(h)
    assert stat.S_IMODE(os.lstat(shared / "store" / "quarantine" / moved[0]).st_mode) == 0o555


def test_another_users_corrupt_object_is_absent_not_a_crash(shared: Path) -> None:
    env = {"NIX_WORKFLOW_STORE": str(shared / "store")}
    for uid in (NOBODY, OTHER):
        (shared / str(uid)).mkdir()
        os.chown(shared / str(uid), uid, uid)
    made = as_user(NOBODY, INGEST, shared / str(NOBODY), env)
    assert made.returncode == 0, made.stderr
    h = made.stdout.strip()
    corrupt(shared / "store" / "store" / h)
    check = ("import os; from nixlib.store import Store; s = Store(os.environ['NIX_WORKFLOW_STORE']); "
             f"print(s.has({h!r}), s.quarantine({h!r}))")
    seen = as_user(OTHER, check, shared / str(OTHER), env)
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.split() == ["False", "None"]  # absent for this user; only its owner or root can move it
    again = as_user(OTHER, INGEST, shared / str(OTHER), env)
    assert again.returncode == 1 and "could not be moved aside" in again.stderr
    assert "PermissionError" not in again.stderr


def test_sealing_fsyncs_only_where_boots_cannot_be_told_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stored files need no fsync while the memos distrust entries of earlier boots (nixlib.boot): a crash then
    costs one re-hash of every object, never a served lost byte. Without a boot id, each file is flushed."""
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("x")
    assert boot.boot_id() is not None  # (Linux names every boot)
    trees.seal(tmp_path / "a")
    assert synced == []
    monkeypatch.setattr(boot, "BOOT_ID_FILE", str(tmp_path / "no-boot-id"))
    boot.boot_id.cache_clear()
    try:
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "f").write_text("x")
        (tmp_path / "b" / "g").write_text("y")
        trees.seal(tmp_path / "b")
        assert len(synced) == 2
    finally:
        monkeypatch.undo()
        boot.boot_id.cache_clear()

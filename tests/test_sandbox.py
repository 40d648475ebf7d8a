"""The optional bubblewrap sandbox: network off unless allowed, nothing writable but $out, $state, $TMPDIR."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixlib import sandbox
from nixlib.recipe import RunOptions
from nixlib.runner import Build
from tests.helpers import nw


def _bwrap_problem() -> str | None:
    """Why bubblewrap cannot run here, or None."""
    path = shutil.which("bwrap")
    if path is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    probe = subprocess.run([path, "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"bubblewrap cannot create namespaces here (no user namespaces?): {probe.stderr.strip()}"
    return None


needs_bwrap = pytest.mark.skipif(_bwrap_problem() is not None, reason=str(_bwrap_problem()))


@pytest.fixture
def server() -> Iterator[int]:
    """A TCP server on the host's 127.0.0.1 that answers 'hello' to every connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"hello\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


CONNECT = ("python3 -c 'import socket,sys\\ntry:\\n s=socket.create_connection((\"127.0.0.1\", {port}), 2)\\n"
           " print(s.recv(6).decode().strip())\\nexcept OSError as e:\\n print(\"blocked\", e.errno)' > $out/net")


@needs_bwrap
def test_sandbox_blocks_the_network_unless_allowed(tmp_path: Path, server: int) -> None:
    connect = CONNECT.format(port=server)
    exp = tmp_path / "exp.py"
    # options are not part of a recipe key (a sandbox does not change what a step means), so each
    # variant gets its own no-op `:` prefix to be a step of its own
    exp.write_text("from nixlib import output\n"
                   f"loose = output(''': loose; {connect}''', name='loose')\n"
                   f"boxed = output(''': boxed; {connect}''', sandbox=True, name='boxed')\n"
                   f"boxed_net = output(''': boxed_net; {connect}''', sandbox=True, network=True, name='boxed_net')\n")
    nw("run", str(exp), check=True)
    assert Path("nix-workflow-output/loose/net").read_text() == "hello\n"
    assert Path("nix-workflow-output/boxed/net").read_text().startswith("blocked")  # off by default in a sandbox
    assert Path("nix-workflow-output/boxed_net/net").read_text() == "hello\n"  # network=True opens it


@needs_bwrap
def test_sandbox_blocks_writes_outside_out(tmp_path: Path, store_root: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    write_all = (f"mkdir -p {outside} && echo x > {outside}/leak-$NIX_WORKFLOW_STEP; "
                 "{ echo x > $NIX_WORKFLOW_STORE/store/intrusion; } 2>$out/store-error || true; "
                 "echo t > $TMPDIR/t && cat $TMPDIR/t > $out/tmp; echo s > $state/s && echo kept > $out/state; "
                 "echo o > $out/o")
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\n"
                   f"boxed = output(''': boxed; {write_all}''', sandbox=True, resumable=True, name='boxed')\n"
                   f"loose = output(''': loose; {write_all}''', resumable=True, name='loose')\n")
    nw("run", str(exp), "boxed", check=True)
    out = Path("nix-workflow-output/boxed")
    assert not (outside / "leak-boxed").exists()  # the sandbox's /tmp is private: nothing reached the host
    assert "Read-only file system" in (out / "store-error").read_text()
    assert not (store_root / "store" / "intrusion").exists()
    assert (out / "tmp").read_text() == "t\n" and (out / "state").read_text() == "kept\n"
    assert (out / "o").read_text() == "o\n"
    nw("run", str(exp), "loose", check=True)  # the same command without the sandbox does write outside
    assert (outside / "leak-loose").exists()


def _build(tmp_path: Path, **options: bool) -> Build:
    return Build(name="s", out=tmp_path / "b" / "out", state=None, tmp=tmp_path / "b", log=tmp_path / "log",
                 store_root=tmp_path / "store", options=RunOptions(sandbox=True, **options))


def test_wrap_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "bwrap", lambda: "/usr/bin/bwrap")
    monkeypatch.setattr(sandbox, "gpu_devices", lambda: ["/dev/nvidia0", "/dev/nvidiactl", "/dev/dri"])
    argv = ["/bin/sh", "-c", "true"]
    with_net = sandbox.wrap(argv, _build(tmp_path, network=True))
    assert "--share-net" in with_net and "--dev-bind" not in with_net
    assert with_net[-4:] == ["--", *argv]
    assert "--share-net" not in sandbox.wrap(argv, _build(tmp_path, network=False))
    closed = sandbox.wrap(argv, _build(tmp_path, gpu=True))
    assert "--share-net" not in closed and "--unshare-all" in closed
    binds = [closed[i + 1] for i, a in enumerate(closed) if a == "--dev-bind"]
    assert binds == ["/dev/nvidia0", "/dev/nvidiactl", "/dev/dri"]
    ro = [closed[i + 1] for i, a in enumerate(closed) if a == "--ro-bind"]
    rw = [closed[i + 1] for i, a in enumerate(closed) if a == "--bind"]
    assert "/" not in ro and "/home" not in ro and "/root" not in ro and "/run" not in ro  # no host root, homes, /run
    assert str(tmp_path / "store" / "store") in ro  # the store's objects (inputs) read-only
    assert rw == [str(tmp_path / "b"), str(tmp_path / "b" / "out")]
    assert "/etc/shadow" not in closed and "/etc" not in closed
    assert closed.index("--remount-ro") > max(i for i, a in enumerate(closed) if a in ("--bind", "--ro-bind"))


def test_missing_bubblewrap_is_a_clear_step_failure(tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\nboxed = output('echo x > $out/x', sandbox=True)\n")
    proc = nw("run", str(exp), env={"PATH": str(bare)})
    assert proc.returncode == 1
    assert "bubblewrap (bwrap) is not on PATH" in proc.stderr and "apt-get install bubblewrap" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture
def unix_server() -> Iterator[Path]:
    """A Unix socket server on the host, in a temp dir outside /tmp (so not hidden by a private /tmp alone)."""
    directory = Path(tempfile.mkdtemp(prefix="nw-sock-", dir="/var/tmp" if os.access("/var/tmp", os.W_OK) else None))
    path = directory / "s"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"hello\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path
    stop.set()
    thread.join()
    listener.close()
    shutil.rmtree(directory, ignore_errors=True)


UNIX_CONNECT = ("python3 -c 'import socket\\ntry:\\n s=socket.socket(socket.AF_UNIX); s.connect(\"{path}\")\\n"
                " print(s.recv(6).decode().strip())\\nexcept OSError as e:\\n print(\"blocked\", e.errno)' > $out/sock")


@needs_bwrap
def test_sandbox_hides_home_host_sockets_and_secrets(tmp_path: Path, unix_server: Path) -> None:
    home = Path.home()
    secret = home / f".nw-sandbox-test-{os.getpid()}-{tmp_path.name}"
    secret.write_text("private\n")
    try:
        probe = (f"{{ cat {secret} || echo hidden; }} > $out/home 2>/dev/null; "
                 "{ cat /etc/shadow || echo hidden; } > $out/shadow 2>/dev/null; "
                 + UNIX_CONNECT.format(path=unix_server))
        exp = tmp_path / "exp.py"
        exp.write_text("from nixlib import output\n"
                       f"loose = output(''': loose; {probe}''', name='loose')\n"
                       f"boxed = output(''': boxed; {probe}''', sandbox=True, name='boxed')\n")
        nw("run", str(exp), check=True)
    finally:
        secret.unlink()
    loose, boxed = Path("nix-workflow-output/loose"), Path("nix-workflow-output/boxed")
    assert (loose / "home").read_text() == "private\n"  # the probe works: without the sandbox all is reachable
    assert (loose / "sock").read_text() == "hello\n"
    assert (boxed / "home").read_text() == "hidden\n"  # the user's home is not in the sandbox
    assert (boxed / "sock").read_text().startswith("blocked")  # nor are host Unix sockets outside the store
    if os.getuid() == 0:  # only root could read it anyway
        assert (loose / "shadow").read_text() != "hidden\n"
        assert (boxed / "shadow").read_text() == "hidden\n"


@needs_bwrap
def test_sandbox_still_runs_host_tools(tmp_path: Path) -> None:
    """The curated filesystem is enough for ordinary tools: users, the loader cache, python, a scratch home."""
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\n"
                   "boxed = output('''id -un > $out/user; python3 -c 'print(6*7)' > $out/py; "
                   "mkdir -p $HOME/.cache && echo c > $HOME/.cache/x && cat $HOME/.cache/x > $out/home; "
                   "echo t > /tmp/t && cat /tmp/t > $out/tmp''', sandbox=True)\n")
    nw("run", str(exp), check=True)
    out = Path("nix-workflow-output/boxed")
    assert (out / "py").read_text() == "42\n" and (out / "home").read_text() == "c\n"
    assert (out / "tmp").read_text() == "t\n" and (out / "user").read_text().strip()

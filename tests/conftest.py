"""Every test gets its own store and working directory: no test touches /nix-workflow or the
checkout's ./nix-workflow-output."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

# A suite started in the background by a shell without job control (`make test &` in a script) inherits SIGINT
# ignored, and so would every `nw`, snakemake and luigi process a test starts: the Ctrl-C tests would then test
# nothing but the inheritance. Children get the default disposition when this process handles SIGINT itself.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

NIX_CONFIG = "build-users-group =\nsubstituters =\nsandbox = false\nexperimental-features = nix-command flakes"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private store root and a private current directory for each test. The environment is restored
    afterwards: an in-process `nw` call (`cli.main`) sets variables for its own run (--allow-unpinned,
    --store, remote settings) that must not leak into the next test of the same worker."""
    saved = dict(os.environ)
    levels = {name: logging.getLogger(name).level for name in _LUIGI_LOGGERS}
    root = tmp_path / "nw-store"
    monkeypatch.setenv("NIX_WORKFLOW_STORE", str(root))
    monkeypatch.setenv("NIX_CONFIG", NIX_CONFIG)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield root
    os.environ.clear()
    os.environ.update(saved)
    for name, level in levels.items():  # luigi.build(log_level=...) sets them once per process (InterfaceLogging):
        logging.getLogger(name).setLevel(level)  # a test's CRITICAL must not hide the next test's warnings


_LUIGI_LOGGERS = ("luigi", "luigi-interface")


@pytest.fixture
def store_root(isolated: Path) -> Path:
    return isolated


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file each step of a test workflow appends a line to ($NW_TEST_LOG): executions counted outside the store."""
    path = tmp_path / "executions.log"
    monkeypatch.setenv("NW_TEST_LOG", str(path))
    return path


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started in sessions of their own: resumed and killed (their whole session) if still alive
    at the end, so no step a killed or paused run left behind outlives its test."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            p.wait(10)

"""Docs probe (wave 14): what a new user following README.md and docs/ meets."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

NW = [sys.executable, "-m", "nixlib.cli"]


def _nw(args: list[str], cwd: Path, store: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NIX_WORKFLOW_STORE": str(store)}
    return subprocess.run([*NW, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a store entry to another user")
def test_symlinked_store_dir_of_another_user_is_not_told_to_chmod(tmp_path: Path) -> None:
    """trust.md: a store subdirectory another user made unusable is refused, naming it and its owner. For a symlink
    the error advised `sudo chmod 1777 <store>/logs`, which follows the link (changing whatever it points at) and
    leaves the store refused: the way out is removing it."""
    store = tmp_path / "store"
    store.mkdir(mode=0o1777)
    store.chmod(0o1777)
    project = tmp_path / "p"
    project.mkdir()
    (project / "experiment.py").write_text('from nixlib import output\nx = output("echo x > $out/x")\n')
    assert _nw(["verify"], project, store).returncode == 0  # creates the layout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (store / "logs").rmdir()
    (store / "logs").symlink_to(elsewhere)
    nobody = pwd.getpwnam("nobody").pw_uid
    os.lchown(store / "logs", nobody, -1)
    r = _nw(["run", "experiment.py"], project, store)
    assert r.returncode == 1
    assert f"{store}/logs is not a directory but a symlink" in r.stderr
    assert "remove it" in r.stderr
    assert "chmod" not in r.stderr
    assert "Traceback" not in r.stderr
    # a directory of the wrong mode is still told how chmod fixes it
    (store / "logs").unlink()
    (store / "logs").mkdir(mode=0o755)
    os.chown(store / "logs", nobody, -1)
    r = _nw(["run", "experiment.py"], project, store)
    assert r.returncode == 1
    assert f"sudo chmod 1777 {store}/logs" in r.stderr

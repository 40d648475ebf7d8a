"""Every test gets its own store and working directory: no test touches /nix-workflow or the
checkout's ./nix-workflow-output."""

from __future__ import annotations

from pathlib import Path

import pytest

NIX_CONFIG = "build-users-group =\nsubstituters =\nsandbox = false\nexperimental-features = nix-command flakes"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private store root and a private current directory for each test."""
    root = tmp_path / "nw-store"
    monkeypatch.setenv("NIX_WORKFLOW_STORE", str(root))
    monkeypatch.setenv("NIX_CONFIG", NIX_CONFIG)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return root


@pytest.fixture
def store_root(isolated: Path) -> Path:
    return isolated

"""Shared helpers for tests: the real `nw` CLI in a subprocess, and store snapshots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def nw(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120,
       check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real `nw` CLI in a subprocess (the store comes from NIX_WORKFLOW_STORE)."""
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "nixlib.cli", *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"nw {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def tree_snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path under a store root with its content (files) or link target, for 'store unchanged' checks.
    Caches, locks, scratch space and temp roots are excluded: they are not the store's contents."""
    snap: dict[str, bytes | str] = {}
    if not root.exists():
        return snap
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel.split(os.sep)[0] in ("cache", "locks", "tmp", "temproots"):
            continue
        for name in filenames + dirnames:
            if rel == "." and name == "temproots":  # created by the first process that registers one
                continue
            p = Path(dirpath, name)
            if p.is_symlink():
                snap[str(p.relative_to(root))] = "-> " + os.readlink(p)
            elif p.is_file():
                snap[str(p.relative_to(root))] = p.read_bytes()
            else:
                snap[str(p.relative_to(root))] = "dir"
    return snap

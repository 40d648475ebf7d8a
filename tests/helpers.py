"""Shared helpers for tests: the real `nw` CLI in a subprocess, and store snapshots."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

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


def migrated_pair(template: str, where: Path, name: str, migrated: bool) -> ModuleType:
    """A Luigi pipeline `template` imported as module `name` from `where`: `BASE = "plain"` becomes the output
    directory name, `(BASE)` the base class (`luigi.Task`, or `NixTask` when migrated: nothing else differs)
    and `MIXIN` nothing, or `NixTask, ` when migrated (NixTask added as a mixin)."""
    base = "NixTask" if migrated else "luigi.Task"
    source = template.replace('BASE = "plain"\n', f'OUT = "{name}"\n').replace("(BASE)", f"({base})")
    source = source.replace("MIXIN", "NixTask, " if migrated else "")
    if migrated:
        source = source.replace("import luigi\n", "import luigi\nfrom luigi_nixworkflow import NixTask\n", 1)
    path = where / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def clean_failure(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Assert a non-zero exit (not 70, nw's "a bug" status) with one clear error that says WORDS and no traceback,
    raw errno or escaped ValueError; return the output."""
    out = proc.stdout + proc.stderr
    assert proc.returncode not in (0, 70), out
    for bad in ("Traceback", "[Errno", 'File "', "ValueError"):
        assert bad not in out, out
    for word in words:
        assert word in out, out
    return out


@contextlib.contextmanager
def bound(source: str, target: Path) -> Iterator[None]:
    """`source` (a /proc file: no regular file behaves as it does) bind-mounted over the regular file `target`
    while the block runs: what reads `target` without following links (a file:// remote's) meets it. Root only, as
    the suite runs in CI."""
    if os.geteuid() != 0:
        import pytest

        pytest.skip("a bind mount needs root")
    target.touch()
    subprocess.run(["mount", "--bind", source, str(target)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(target)], check=True)


def left_running(token: str) -> list[str]:
    """The command lines of live processes that name `token` (a daemon a step or job left that outlived its run:
    the tests' daemons may change directory and clear their environment, but their command line names the test's
    gate or flags directory)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and token.encode() in (cmdline := Path(f"/proc/{entry}/cmdline").read_bytes()):
                found.append(cmdline.replace(b"\0", b" ").decode())
        except OSError:
            continue  # gone meanwhile
    return found

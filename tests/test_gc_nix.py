"""`nw gc` and the Nix GC roots of envs: kept while a kept realisation used the env, dropped after."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.helpers import nw
from tests.nixcheck import require_nix
from tests.nixsets import package_set


@pytest.mark.nix
def test_gc_drops_nix_roots_of_envs_no_kept_step_used(tmp_path: Path, store_root: Path) -> None:
    require_nix("nix-instantiate")
    src = package_set(tmp_path / "pkgs", {"hello": "1.0"})
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import Env, output\n"
                   f"a = output('hello > $out/x', env=Env(packages=['hello'], nixpkgs={{'path': '{src}'}}))\n")
    nw("run", str(exp), check=True)
    roots = [p for p in (store_root / "nix-gcroots").rglob("*") if p.is_symlink()]
    assert roots and all(Path(os.readlink(r)).exists() for r in roots)
    old = time.time() - 2 * 24 * 3600
    for r in roots:
        os.utime(r, (old, old), follow_symlinks=False)
    nw("gc", "--min-age", "0", check=True)
    assert all(r.is_symlink() for r in roots)  # the output link keeps the step, and so its env
    os.unlink("nix-workflow-output/a")
    nw("gc", "--min-age", "0", check=True)
    assert not any(r.is_symlink() for r in roots)

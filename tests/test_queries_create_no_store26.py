"""A query never creates the store (docs26 probe).

`nw status` and `nw dag` of an experiment whose steps have Nix envs, and `nw run -n`, made the whole store tree at a
store path that did not exist yet (the README: only `nw run` creates it; `nw run --help`: -n leaves the store
unchanged). Resolving an env for the plan made its GC-root directory with its parents, even though a query
evaluates envs without building them; a store root made that way also lacked the shared store's mode. The
directory is now made only when an env is built."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO, nw
from tests.nixcheck import require_nix

SHOWCASE = REPO / "examples" / "showcase"


@pytest.mark.parametrize("query", [("status", "experiment.nix"), ("dag", "experiment.nix"),
                                   ("status", "experiment_env.py"), ("run", "-n", "experiment_env.py"),
                                   ("run", "-n", "experiment.nix")], ids=" ".join)
def test_a_query_of_an_experiment_with_nix_envs_creates_no_store(tmp_path: Path, isolated: Path,
                                                                 query: tuple[str, ...]) -> None:
    require_nix("nix-instantiate")
    work = tmp_path / "showcase"
    shutil.copytree(SHOWCASE, work)
    proc = nw(*query, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "there is no store at" in proc.stderr  # (it says so, computed against an empty stand-in)
    assert not isolated.exists(), sorted(str(p) for p in isolated.rglob("*"))[:10]


def test_a_run_still_roots_its_env_in_a_shared_directory(tmp_path: Path, isolated: Path) -> None:
    require_nix("nix-instantiate")
    work = tmp_path / "showcase"
    shutil.copytree(SHOWCASE, work)
    nw("run", "experiment.nix", "dataset", cwd=work, check=True)
    (host,) = (isolated / "nix-gcroots").iterdir()
    assert host.stat().st_mode & 0o7777 == 0o1777
    assert any(p.is_symlink() for p in host.iterdir())  # the env's GC root

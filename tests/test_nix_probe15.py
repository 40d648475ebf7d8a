"""Wave 15 probe of the Nix front door (`nw run experiment.nix`): the evaluation cache against inputs an evaluation
reads that nw's guard does not see directly (the clock, a path an environment variable names and a package set's
helper reads, nixpkgs' configuration in the user's home), each a regression test that failed before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import nixsets
from tests.helpers import nw
from tests.nixcheck import require_nix

pytestmark = pytest.mark.nix

LIB = "inherit ((import <nixworkflow>).lib) output;"


def run(exp: Path, env: dict[str, str]) -> str:
    """`nw run exp` must succeed; its stderr (the progress lines)."""
    return nw("run", str(exp), env=env, check=True).stderr


def evaluations(log: Path) -> int:
    return sum(1 for c in nixsets.calls(log) if c.startswith("nix-instantiate"))


def pinned_set(tmp_path: Path, default_nix: str) -> str:
    """`import (fetchTarball { file://…; sha256 }) { }` of a package set whose default.nix is `default_nix`."""
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    (pkgs / "default.nix").write_text(default_nix)
    url, sha256 = nixsets.tarball(pkgs, tmp_path / "pkgs.tar.gz")
    return f'import (builtins.fetchTarball {{ url = "{url}"; sha256 = "{sha256}"; }}) {{ }}'


def test_an_experiment_reading_the_clock_is_evaluated_again_at_every_run(tmp_path: Path) -> None:
    """`builtins.currentTime` in a command: the evaluation cache served the first run's time forever (the step was
    served from the store at every later run), where Nix gives a new value, hence a new step, at each evaluation."""
    require_nix("nix-instantiate")
    log = tmp_path / "nix-calls"
    shim = nixsets.nix_shim(tmp_path / "shim", log)
    exp = tmp_path / "experiment.nix"
    exp.write_text(f'let {LIB} in {{ t = output "echo ${{toString builtins.currentTime}} > $out/x"; }}\n')
    run(exp, shim)
    first = evaluations(log)
    assert first >= 1
    run(exp, shim)
    assert evaluations(log) > first  # evaluated again: the clock is read anew

    # an experiment that does not read the clock is still served by the cache
    other = tmp_path / "other.nix"
    other.write_text(f'let {LIB} in {{ t = output "echo ${{toString builtins.currentSystem}} > $out/x"; }}\n')
    run(other, shim)
    seen = evaluations(log)
    run(other, shim)
    assert evaluations(log) == seen


def test_a_config_a_package_set_reads_from_a_path_in_a_variable_is_a_dependency(tmp_path: Path) -> None:
    """`pkgs.lib.importJSON (builtins.getEnv "CFG")`: the package set's helper reads the file untraced (its code is
    in the Nix store), and the path is no literal of the experiment: after editing the file, the cached evaluation
    was served and the step kept its old output."""
    require_nix("nix-instantiate")
    pkgs = pinned_set(tmp_path, "{ }:\n{ lib.importJSON = p: builtins.fromJSON (builtins.readFile p); }\n")
    cfg = tmp_path / "elsewhere" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text('{"lr": 1}\n')
    proj = tmp_path / "proj"
    proj.mkdir()
    exp = proj / "experiment.nix"
    exp.write_text(f"""let
  {LIB}
  pkgs = {pkgs};
  cfg = pkgs.lib.importJSON (builtins.getEnv "CFG15");
in {{ conf = output "echo lr=${{toString cfg.lr}} > $out/x"; }}
""")
    env = {"CFG15": str(cfg)}
    assert "done 1" in nw("run", str(exp), env=env, check=True, cwd=proj).stderr
    assert (proj / "nix-workflow-output/conf/x").read_text() == "lr=1\n"
    cfg.write_text('{"lr": 2}\n')
    assert "done 1" in nw("run", str(exp), env=env, check=True, cwd=proj).stderr
    assert (proj / "nix-workflow-output/conf/x").read_text() == "lr=2\n"


# nixpkgs' pkgs/top-level/impure.nix, reduced: without a `config` argument it reads the user's ~/.config/nixpkgs.
IMPURE = """{ config ? let
    home = builtins.getEnv "HOME";
    file = home + "/.config/nixpkgs/config.nix";
  in if home != "" && builtins.pathExists file then import file else { } }:
{ msg = config.msg or "default"; }
"""


def test_nixpkgs_config_in_the_users_home_is_an_evaluation_dependency(tmp_path: Path) -> None:
    """`import (fetchTarball …) { }` of nixpkgs reads ~/.config/nixpkgs/config.nix (and overlays) with the real
    builtins: creating it (packageOverrides, a changed package) left the cached evaluation, and the old tools, in
    use; Nix itself would evaluate the new package set."""
    require_nix("nix-instantiate")
    log = tmp_path / "nix-calls"
    home = tmp_path / "home"
    home.mkdir()
    env = {**nixsets.nix_shim(tmp_path / "shim", log), "HOME": str(home)}
    pkgs = pinned_set(tmp_path, IMPURE)
    exp = tmp_path / "experiment.nix"
    exp.write_text(f'let {LIB} pkgs = {pkgs}; in {{ a = output "echo ${{pkgs.msg}} > $out/x"; }}\n')
    run(exp, env)
    assert Path("nix-workflow-output/a/x").read_text() == "default\n"
    seen = evaluations(log)
    run(exp, env)
    assert evaluations(log) == seen  # nothing changed: the evaluation is cached
    (home / ".config" / "nixpkgs").mkdir(parents=True)
    (home / ".config" / "nixpkgs" / "config.nix").write_text('{ msg = "mine"; }\n')
    run(exp, env)
    assert Path("nix-workflow-output/a/x").read_text() == "mine\n"


def test_an_experiment_with_a_required_argument_is_reported_at_its_own_file(tmp_path: Path, store_root: Path) -> None:
    """`{ lr }: …` (no default): the error quoted nw's own guard.nix, its line and source, as where it happened; the
    user's file and line (in Nix's first line) and the hint are what the user needs. Exit 1, store untouched."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f'{{ lr }}:\nlet {LIB} in {{ a = output "echo ${{toString lr}} > $out/x"; }}\n')
    proc = nw("run", str(exp))
    assert proc.returncode == 1
    assert f"{exp}:1:1 called without required argument 'lr'" in proc.stderr
    assert "give the parameter a default" in proc.stderr and "--arg lr 0.001" in proc.stderr
    assert "guard.nix" not in proc.stderr and "front.nix" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (store_root / "realisations").exists() or not any((store_root / "realisations").iterdir())

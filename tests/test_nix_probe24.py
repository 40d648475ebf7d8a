"""Wave 24 probe of the Nix front door (`nw run experiment.nix`) as a user writing against the seeds' API and the docs
would use it: the evaluation cache must never serve a stale evaluation, and evaluation errors are one clear message.
Each test that names a bug failed before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import nixsets
from tests.helpers import nw
from tests.nixcheck import require_nix

pytestmark = pytest.mark.nix

LIB = "inherit ((import <nixworkflow>).lib) output;"


def run(exp: Path, *args: str) -> str:
    """`nw run exp ARGS` must succeed; its stderr (the progress lines)."""
    return nw("run", str(exp), *args, check=True, cwd=exp.parent).stderr


def test_a_file_read_through_builtins_builtins_is_an_evaluation_dependency(tmp_path: Path) -> None:
    """`builtins.builtins` is `builtins` itself in Nix; the guard's `builtins` had no such member, so
    `builtins.builtins.readFile ./msg.txt` read the real builtins' readFile untraced: after editing msg.txt the cached
    evaluation was served and the step kept its old output (a stale result)."""
    require_nix("nix-instantiate")
    (tmp_path / "msg.txt").write_text("one")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f'let {LIB} m = builtins.builtins.readFile ./msg.txt; in {{ a = output "echo ${{m}} > $out/x"; }}\n')
    run(exp)
    assert (tmp_path / "nix-workflow-output/a/x").read_text() == "one\n"
    (tmp_path / "msg.txt").write_text("two")
    assert "done 1" in run(exp)
    assert (tmp_path / "nix-workflow-output/a/x").read_text() == "two\n"


LET_CHAIN = """let
  {lib}
  dataset = output "echo {data} > $out/d";  # a step bound in a `let`, used only through `model`
  model = output {{ cmd = "cat ${{dataset}}/d > $out/m; echo trained >> $out/m"; name = "model"; }};
in {{ score = output "cat ${{model}}/m > $out/s"; }}
"""


def test_steps_bound_in_a_let_run_as_upstream_steps(tmp_path: Path) -> None:
    """The seeds' promise: a step assigned to a variable and interpolated into another is its dependency, through
    string context. A `let`-bound step that no top-level attribute holds was refused ('not a top-level attribute'),
    where experiment.py runs such an unnamed upstream step. It now runs (named step-…, or by its `name`), its command
    edit re-runs it and its dependants, and a comment edit re-runs nothing."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(LET_CHAIN.format(lib=LIB, data="v1"))
    assert "done 3" in run(exp)
    assert (tmp_path / "nix-workflow-output/score/s").read_text() == "v1\ntrained\n"
    status = nw("status", str(exp), check=True, cwd=tmp_path).stdout
    assert "model" in status and "score" in status and "step-" in status
    exp.write_text("# a comment\n" + LET_CHAIN.format(lib=LIB, data="v1"))
    assert "done 0 · cached 3" in run(exp)
    exp.write_text(LET_CHAIN.format(lib=LIB, data="v2"))
    assert "done 3" in run(exp)
    assert (tmp_path / "nix-workflow-output/score/s").read_text() == "v2\ntrained\n"


def test_a_checkpoint_of_a_step_bound_in_a_let_finds_its_producer(tmp_path: Path) -> None:
    """`${m.checkpoint "NAME"}` of a `let`-bound `m`: the reference names its producer (through string context)."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f"""let
  {LIB}
  m = output {{ cmd = "echo w > $out/w"; checkpoints = true; }};
in {{ e = output "cat ${{m.checkpoint "epoch-1"}}/w > $out/x"; }}
""")
    proc = nw("run", "-n", str(exp), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "not a top-level attribute" not in proc.stderr


def test_a_reference_without_string_context_is_found_through_another_one(tmp_path: Path) -> None:
    """A step whose reference lost its string context is found when another step's command carries it, whatever
    the order of the attributes; with none carrying it, the error says why, naming the step and file."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    bare = 'builtins.unsafeDiscardStringContext "${m}"'
    exp.write_text(f"""let
  {LIB}
  m = output "echo 1 > $out/w";
in {{ a = output "cat ${{{bare}}}/w > $out/x"; b = output "cat ${{m}}/w > $out/y"; }}
""")
    assert "done 3" in run(exp)
    assert (tmp_path / "nix-workflow-output/a/x").read_text() == "1\n"
    exp.write_text(f'let {LIB} m = output "echo 1 > $out/w"; in {{ a = output "cat ${{{bare}}}/w > $out/x"; }}\n')
    proc = nw("run", str(exp), cwd=tmp_path)
    assert proc.returncode == 1
    assert f"step 'a' ({exp}:1)" in proc.stderr and "string context" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_pinned_tarball_with_a_wrong_sha256_is_a_clear_error(tmp_path: Path, store_root: Path) -> None:
    """A package set pinned by `fetchTarball { url = "file://…"; sha256 = <wrong>; }`: Nix's hash mismatch, with
    both hashes and the experiment's file and line, exit 1, no traceback, nothing stored."""
    require_nix("nix-instantiate")
    pkgs = nixsets.package_set(tmp_path / "pkgs", {"hello": "1"})
    url, good = nixsets.tarball(pkgs, tmp_path / "pkgs.tar.gz")
    wrong = "1" * 52
    exp = tmp_path / "experiment.nix"
    exp.write_text(f"""let
  {LIB}
  pkgs = import (builtins.fetchTarball {{ url = "{url}"; sha256 = "{wrong}"; }}) {{ }};
in {{ a = output "${{pkgs.hello}}/bin/hello > $out/x"; }}
""")
    proc = nw("run", str(exp), cwd=tmp_path)
    assert proc.returncode == 1
    assert "hash mismatch" in proc.stderr and good in proc.stderr and f"{exp}:3" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (store_root / "store").exists() or not any((store_root / "store").iterdir())

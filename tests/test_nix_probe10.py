"""Wave 10 probe of the Nix front door (`nw run experiment.nix`): what a Nix user writing sweeps, imports and
environment-dependent experiments met, each a regression test that failed before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import nw
from tests.nixcheck import require_nix

pytestmark = pytest.mark.nix

LIB = "inherit ((import <nixworkflow>).lib) output;"


def run(exp: Path, env: dict[str, str] | None = None) -> str:
    """`nw run exp` must succeed; its stderr (the progress lines)."""
    return nw("run", str(exp), env=env, check=True).stderr


def test_a_changed_getenv_value_re_evaluates_the_experiment(tmp_path: Path) -> None:
    """The evaluation cache was keyed by files only: `builtins.getEnv "LR"` kept the first value forever, and a
    run with another LR served the old step as cached."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f'let {LIB} in {{\n  train = output "echo lr=${{builtins.getEnv "LR"}} > $out/x";\n}}\n')
    out = Path("nix-workflow-output/train/x")
    assert "done 1" in run(exp, {"LR": "0.1"}) and out.read_text() == "lr=0.1\n"
    assert "cached 1" in run(exp, {"LR": "0.1"})  # unchanged: still served from the cache
    assert "done 1" in run(exp, {"LR": "0.2"}) and out.read_text() == "lr=0.2\n"


def test_editing_a_tree_copied_with_builtins_path_re_runs_its_step(tmp_path: Path) -> None:
    """`builtins.path { path = ./src; }` copies a tree into the Nix store, but the evaluation cache did not
    record the tree: after editing a file in it, the step kept the old store path and was served as cached."""
    require_nix("nix-instantiate")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("one\n")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f'let {LIB} src = builtins.path {{ path = ./src; name = "src"; }}; in {{\n'
                   '  copy = output "cat ${src}/f > $out/x";\n}\n')
    out = Path("nix-workflow-output/copy/x")
    assert "done 1" in run(exp) and out.read_text() == "one\n"
    (tmp_path / "src" / "f").write_text("two\n")
    assert "done 1" in run(exp) and out.read_text() == "two\n"

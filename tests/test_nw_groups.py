"""A group's name selects its steps: `nw run exp.py models` runs every `models.*` step (a dict or sweep of steps is
named after its keys, `grid.0.1.32`), in experiment.py and experiment.nix alike. Before, it was "no step named
'models'" although the experiment defines them under that name."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import nw
from tests.nixcheck import require_nix

PY = """from nixlib import output
data = output("echo d > $out/d")
models = {name: output(f"cat {data}/d > $out/m; echo {name} >> $out/m") for name in ("small", "base")}
grid = {lr: {bs: output(f"echo {lr} {bs} > $out/g") for bs in (32, 64)} for lr in (0.1, 0.2)}
"""

NIX = """let inherit ((import <nixworkflow>).lib) output; in rec {
  data = output "echo d > $out/d";
  models = { small = output "cat ${data}/d > $out/m"; base = output "cat ${data}/d > $out/m; echo b >> $out/m"; };
}
"""


def test_a_group_name_runs_its_steps_in_experiment_py(tmp_path: Path) -> None:
    (tmp_path / "exp.py").write_text(PY)
    done = nw("run", "exp.py", "models", "grid.0.1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "nix-workflow-output"
    assert (out / "models.small" / "m").read_text() == "d\nsmall\n"
    assert (out / "models.base" / "m").read_text() == "d\nbase\n"
    assert (out / "grid.0.1.32" / "g").read_text() == "0.1 32\n" and (out / "grid.0.1.64").exists()
    assert not (out / "grid.0.2.32").exists()  # another group
    unknown = nw("run", "exp.py", "modles", cwd=tmp_path)
    assert unknown.returncode == 1 and "no step named 'modles'" in unknown.stderr and "Traceback" not in unknown.stderr


def test_a_group_name_runs_its_steps_in_experiment_nix(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    (tmp_path / "exp.nix").write_text(NIX)
    done = nw("run", "exp.nix", "models", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "nix-workflow-output"
    assert (out / "models.small" / "m").read_text() == "d\n" and (out / "models.base" / "m").read_text() == "d\nb\n"

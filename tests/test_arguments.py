"""An experiment's arguments on nw's command line: `--arg NAME EXPR` / `--argstr NAME VALUE` for experiment.nix (as
nix-build passes them to a function), the words after `--` for experiment.py (its sys.argv). Real `nw`, real Nix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixlib import arguments
from tests import nixsets
from tests.helpers import nw
from tests.nixcheck import require_nix

LIB = "inherit ((import <nixworkflow>).lib) output;"
NIX_EXPERIMENT = f"""{{ lr ? 0.001, name ? "base" }}:
let {LIB} in
rec {{
  data = output "echo data > $out/d.txt";
  model = output "cat ${{data}}/d.txt > $out/m.txt; echo lr=${{toString lr}} >> $out/m.txt";
  label = output "echo ${{name}} > $out/l.txt";
}}
"""


def ran(proc_stderr: str) -> set[str]:
    """The steps a `nw run` ran (not served from the store), from its progress lines."""
    return {line.split(":")[1].strip() for line in proc_stderr.splitlines()
            if line.startswith("nw: ") and line.endswith("running")}


def test_arg_and_argstr_call_a_function_experiment_and_rerun_only_what_they_change(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(NIX_EXPERIMENT)
    first = nw("run", str(exp), cwd=tmp_path, check=True)
    assert ran(first.stderr) == {"data", "model", "label"}
    assert (tmp_path / "nix-workflow-output/model/m.txt").read_text() == "data\nlr=0.001000\n"

    second = nw("run", str(exp), "--arg", "lr", "0.5", "--argstr", "name", "big run", cwd=tmp_path, check=True)
    assert ran(second.stderr) == {"model", "label"}  # data does not use them: served
    assert (tmp_path / "nix-workflow-output/model/m.txt").read_text() == "data\nlr=0.500000\n"
    assert (tmp_path / "nix-workflow-output/label/l.txt").read_text() == "big run\n"

    again = nw("run", str(exp), "--arg", "lr", "0.5", "--argstr", "name", "big run", cwd=tmp_path, check=True)
    assert ran(again.stderr) == set()
    # `nw why` evaluates the experiment with the arguments the last run here used
    why = nw("why", "model", cwd=tmp_path, check=True)
    assert "would not run" in why.stdout
    status = nw("status", str(exp), "--arg", "lr", "0.25", cwd=tmp_path, check=True)
    assert "to run  model" in status.stdout and "cached  data" in status.stdout


def test_an_arg_expression_reading_a_file_is_evaluated_again_when_the_file_changes(tmp_path: Path) -> None:
    """An --arg that reads a file (`builtins.readFile ./lr.txt`) is outside nw's traced evaluation: the evaluation
    cache must not serve the value the file had at the first run."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(NIX_EXPERIMENT)
    (tmp_path / "lr.txt").write_text("0.1")
    expr = "builtins.fromJSON (builtins.readFile ./lr.txt)"
    nw("run", str(exp), "model", "--arg", "lr", expr, cwd=tmp_path, check=True)
    assert (tmp_path / "nix-workflow-output/model/m.txt").read_text() == "data\nlr=0.100000\n"
    (tmp_path / "lr.txt").write_text("0.2")
    nw("run", str(exp), "model", "--arg", "lr", expr, cwd=tmp_path, check=True)
    assert (tmp_path / "nix-workflow-output/model/m.txt").read_text() == "data\nlr=0.200000\n"


def test_a_literal_arg_keeps_the_evaluation_cached(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    log = tmp_path / "nix-calls"
    shim = nixsets.nix_shim(tmp_path / "shim", log)
    exp = tmp_path / "experiment.nix"
    exp.write_text(NIX_EXPERIMENT)

    def evaluations() -> int:
        return sum(1 for c in nixsets.calls(log) if c.startswith("nix-instantiate"))

    nw("run", str(exp), "--arg", "lr", "0.5", env=shim, cwd=tmp_path, check=True)
    seen = evaluations()
    assert seen >= 1
    nw("run", str(exp), "--arg", "lr", "0.5", env=shim, cwd=tmp_path, check=True)
    assert evaluations() == seen
    nw("run", str(exp), "--arg", "lr", "0.75", env=shim, cwd=tmp_path, check=True)  # another value: evaluated
    assert evaluations() > seen
    assert (tmp_path / "nix-workflow-output/model/m.txt").read_text() == "data\nlr=0.750000\n"


@pytest.mark.parametrize(("extra", "message"), [
    (["--arg", "lrr", "0.5"], "takes no parameter lrr (given by --arg/--argstr); its parameters: lr, name"),
    (["--arg", "lr", "0.5 +"], "«string» is an expression given on the command line: --arg lr '0.5 +'"),
    (["--arg", "1lr", "1"], "--arg '1lr': a parameter name is a Nix identifier"),
    (["--arg", "lr", "1", "--argstr", "lr", "x"], "parameter lr is given twice"),
    (["--", "--lr", "1"], "the words after `--` are experiment.py's sys.argv;"),
])
def test_a_wrong_argument_is_a_clear_error_and_runs_nothing(tmp_path: Path, extra: list[str], message: str) -> None:
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(NIX_EXPERIMENT)
    proc = nw("run", str(exp), *extra, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "nix-workflow-output").exists()


def test_an_arg_for_an_experiment_that_is_no_function_is_refused(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f'let {LIB} in {{ a = output "echo 1 > $out/x"; }}\n')
    proc = nw("run", str(exp), "--argstr", "name", "x", cwd=tmp_path)
    assert proc.returncode == 1
    assert "is not a function, so it takes no parameter (name, given by --arg/--argstr)" in proc.stderr


PY_EXPERIMENT = """import argparse
from nixlib.dsl import output

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.001)
args = parser.parse_args()
model = output(f"echo lr={args.lr} > $out/m.txt")
"""


def test_the_words_after_a_double_dash_are_experiment_py_s_argv(tmp_path: Path) -> None:
    exp = tmp_path / "experiment.py"
    exp.write_text(PY_EXPERIMENT)
    nw("run", str(exp), cwd=tmp_path, check=True)
    assert (tmp_path / "nix-workflow-output/model/m.txt").read_text() == "lr=0.001\n"
    nw("run", str(exp), "model", "--", "--lr", "0.5", cwd=tmp_path, check=True)
    assert (tmp_path / "nix-workflow-output/model/m.txt").read_text() == "lr=0.5\n"
    summary = json.loads((tmp_path / "nix-workflow-output/.nw-last-run.json").read_text())
    assert summary["model"]["arguments"] == {"argv": ["--lr", "0.5"]}
    why = nw("why", "model", cwd=tmp_path, check=True).stdout  # evaluated with the recorded --lr 0.5
    assert "'model' is cached now" in why and "+echo lr=0.5 >$out/m.txt" in why
    assert "to run" in nw("status", str(exp), "--", "--lr", "0.7", cwd=tmp_path, check=True).stdout

    bad = nw("run", str(exp), "--", "--bogus", cwd=tmp_path)
    assert bad.returncode == 1
    assert "with the arguments --bogus" in bad.stderr and "Traceback" not in bad.stderr
    wrong = nw("run", str(exp), "--arg", "lr", "1", cwd=tmp_path)
    assert wrong.returncode == 1
    assert "Give experiment.py its arguments after `--`: nw run" in wrong.stderr


@pytest.mark.parametrize(("text", "literal"), [
    ("0.5", True), ("-3", True), ("1e-3", True), ('"a b"', True), ("true", True), ("null", True),
    ("[ 1 2 3 ]", True), ('{ a = 1; b = [ "x" ]; }', True),
    ("./lr.txt", False), ("builtins.currentTime", False), ('"${x}"', False), ("x", False), ("{ a = b; }", False),
    ("import ./x.nix", False), ("<nixpkgs>", False), ("", False), ("1 + 2", False),
])
def test_only_literal_args_are_cacheable(text: str, literal: bool) -> None:
    assert arguments.Arguments((("arg", "x", text),)).cacheable() is literal


@given(st.text(max_size=40))
def test_the_literal_check_never_fails_and_argstr_is_always_cacheable(text: str) -> None:
    arguments.Arguments((("arg", "x", text),)).cacheable()
    assert arguments.Arguments((("argstr", "x", text),)).cacheable()


def test_a_function_with_an_ellipsis_takes_every_arg_and_a_value_may_start_with_a_dash(tmp_path: Path) -> None:
    """`{ lr ? 0.001, ... }@args:` takes any --arg, as nix-build passes them all (it was refused as unknown), and an
    --argstr value `-x` is a value (argparse took it for an option)."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f'{{ lr ? 0.001, ... }}@args:\nlet {LIB} in\n'
                   '{ m = output "echo ${toString lr} ${args.extra or "none"} > $out/m.txt"; }\n')
    nw("run", str(exp), "--argstr", "extra", "-x", "--arg", "lr", "2", cwd=tmp_path, check=True)
    assert (tmp_path / "nix-workflow-output/m/m.txt").read_text() == "2 -x\n"


def test_recorded_arguments_are_evaluated_from_the_directory_they_were_given_in(tmp_path: Path) -> None:
    """An --arg's relative path is Nix's from where nw ran: `nw why` run elsewhere read another file (or none)."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(NIX_EXPERIMENT)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "lr.txt").write_text("0.25")
    nw("run", str(exp), "model", "--arg", "lr", "builtins.fromJSON (builtins.readFile ./lr.txt)", cwd=run_dir,
       check=True)
    why = nw("why", "model", "--out-link", str(run_dir / "nix-workflow-output"), cwd=tmp_path)
    assert why.returncode == 0, why.stderr
    assert "would not run" in why.stdout


def test_an_arg_that_fails_where_the_experiment_uses_it_is_named(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(NIX_EXPERIMENT)
    proc = nw("run", str(exp), "--arg", "lr", "builtins.readFile ./missing", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "The experiment was called with --arg lr 'builtins.readFile ./missing'" in proc.stderr


def test_a_double_dash_before_the_file_keeps_its_usual_meaning(tmp_path: Path) -> None:
    exp = tmp_path / "experiment.py"
    exp.write_text(PY_EXPERIMENT)
    nw("run", "--", str(exp), cwd=tmp_path, check=True)
    assert (tmp_path / "nix-workflow-output/model/m.txt").read_text() == "lr=0.001\n"

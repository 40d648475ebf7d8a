"""Docs probe (wave 21): what a newcomer following README.md's `nw run` paragraphs meets, through the real CLI."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import nw
from tests.nixcheck import require_nix

# A script that reads $SCALE by name: the README's environment keying ("SCALE=3 nw run re-runs what SCALE=2 made").
TRAIN = 'import os\nprint("scale", os.environ.get("SCALE", "1"))\n'


def _run(cwd: Path, *args: str, scale: str | None = None) -> str:
    """`nw run` with SCALE set (or not); the summary line, which says what ran and what was cached."""
    r = nw("run", *args, cwd=cwd, env={"SCALE": scale} if scale else None)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def test_static_script_reading_a_variable_is_keyed_by_its_value(tmp_path: Path) -> None:
    """A script imported with static() and run from the store (`python3 {script}`) read $SCALE, but only the
    variables of scripts the command names in the project were keyed: SCALE=3's run was served SCALE=2's result."""
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "experiment.py").write_text(
        'from nixlib import output, static\nscript = static("train.py")\n'
        'a = output(f"python3 {script} > $out/x")\n')
    _run(tmp_path, "experiment.py", scale="2")
    assert (tmp_path / "nix-workflow-output/a/x").read_text() == "scale 2\n"
    out = _run(tmp_path, "experiment.py", scale="3")
    assert "done 1" in out, out
    assert (tmp_path / "nix-workflow-output/a/x").read_text() == "scale 3\n"
    assert "done 0 · cached 1" in _run(tmp_path, "experiment.py", scale="3")  # the same value: served


def test_nix_store_script_reading_a_variable_is_keyed_by_its_value(tmp_path: Path) -> None:
    """README's experiment.nix runs `python3 ${./train.py}` (a copy in /nix/store): its reads of $SCALE were not
    keyed, so SCALE=3 was served what SCALE=2 made."""
    require_nix("nix-instantiate")
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "experiment.nix").write_text(
        'let inherit ((import <nixworkflow>).lib) output; in\n'
        'rec { a = output "python3 ${./train.py} > $out/x"; }\n')
    _run(tmp_path, "experiment.nix", scale="2")
    assert (tmp_path / "nix-workflow-output/a/x").read_text() == "scale 2\n"
    out = _run(tmp_path, "experiment.nix", scale="3")
    assert "done 1" in out, out
    assert (tmp_path / "nix-workflow-output/a/x").read_text() == "scale 3\n"
    why = nw("why", "a", cwd=tmp_path, env={"SCALE": "4"})
    assert "$SCALE" in why.stdout, why.stdout + why.stderr


def test_show_lists_the_variables_a_step_is_keyed_on(tmp_path: Path) -> None:
    """README: `SEED=2 nw run` re-runs the steps that use $SEED, and `nw show` lists a step's inputs; it listed
    the project script but not the variables of the key, so nothing said why SCALE mattered to the step."""
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "experiment.py").write_text(
        'from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n'
        'a = output(f"python3 {HERE}/train.py > $out/x; echo ${{SEED:-0}} >> $out/x")\n')
    _run(tmp_path, "experiment.py", scale="2")
    r = nw("show", "a", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "  variable $SCALE: set (keyed by a digest of its value)" in r.stdout, r.stdout
    assert "  variable $SEED: not set (keyed as unset)" in r.stdout, r.stdout


def test_sys_exit_error_names_the_experiment_file(tmp_path: Path) -> None:
    """An experiment that exits while evaluated was told `nw evaluated experiment.py ...` and `nw run
    experiment.py -- --lr 0.01`, whatever its file was called: the hint must name the file that was run."""
    (tmp_path / "sweep.py").write_text("import argparse\np = argparse.ArgumentParser()\n"
                                       "p.add_argument('--lr', required=True)\np.parse_args()\n")
    r = nw("run", "sweep.py", cwd=tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "nw evaluated sweep.py with no command-line arguments" in r.stderr, r.stderr
    assert "nw run sweep.py -- --lr 0.01" in r.stderr, r.stderr
    assert "experiment.py" not in r.stderr


def test_why_help_says_script_variables_count() -> None:
    """README: a variable a project script reads by name is keyed (nixlib/envreads.py), and `nw why` names it; its
    --help said only variables the command expands."""
    r = nw("why", "--help")
    assert "a script it runs reads" in " ".join(r.stdout.split()), r.stdout


def test_command_option_before_the_command_is_placed_for_the_user(tmp_path: Path) -> None:
    """`nw -n run experiment.py` said only `unrecognized arguments: -n`, and `nw -j 2 run experiment.py` said
    `invalid choice: '2'` (its value taken for the command): the message names the command the option belongs to
    and the command line with it moved after the command."""
    r = nw("-j", "2", "run", "experiment.py", cwd=tmp_path)
    assert r.returncode == 2
    assert "-j is an option of `nw run`" in r.stderr, r.stderr
    assert "nw run -j 2 experiment.py" in r.stderr, r.stderr
    r = nw("-n", "run", "experiment.py", cwd=tmp_path)
    assert r.returncode == 2
    assert "nw run -n experiment.py" in r.stderr, r.stderr
    r = nw("--json", "show", "model", cwd=tmp_path)
    assert "nw show --json model" in r.stderr, r.stderr
    r = nw("--bogus", "run", "experiment.py", cwd=tmp_path)  # an option of no command: argparse's own message
    assert r.returncode == 2 and "unrecognized arguments: --bogus" in r.stderr, r.stderr


def _one_step(tmp_path: Path) -> None:
    (tmp_path / "experiment.py").write_text('from nixlib import output\nmodel = output("echo 1 > $out/m.txt")\n')
    nw("run", "experiment.py", cwd=tmp_path, check=True)


def test_show_of_an_unknown_key_says_no_realisation_has_it(tmp_path: Path, store_root: Path) -> None:
    """`nw show KEY` of a well-formed key the store has no realisation under said `no step or path named` and
    listed what a name may be: it now says no realisation has that key in this store, and why that may be."""
    _one_step(tmp_path)
    key = "0yd0qpp6s905qj4mlnv6b0p6zw3f46rb0zz4r3hy7v9zqixsmm0b"
    for command in ("show", "log", "lineage"):
        r = nw(command, key, cwd=tmp_path)
        assert r.returncode == 1
        assert f"no realisation has key {key} in the store at {store_root}" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_show_of_an_object_name_finds_its_step(tmp_path: Path, store_root: Path) -> None:
    """An output object's name (the hash `nw show` prints in `output out:`) was 'no step or path named': the store
    holds it, so it is found by content, as its path is."""
    _one_step(tmp_path)
    obj = (tmp_path / "nix-workflow-output/model").resolve().name
    r = nw("show", obj, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("step:         model\n"), r.stdout


def test_show_of_a_missing_file_says_it_does_not_exist(tmp_path: Path) -> None:
    """README: `nw lineage results/model.json` (a file). A path that does not exist was 'no step or path named',
    as for a mistyped step name: it says the file does not exist."""
    _one_step(tmp_path)
    r = nw("lineage", "results/model.json", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("error: results/model.json does not exist"), r.stderr

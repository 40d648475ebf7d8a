"""Errors a newcomer meets, each saying what went wrong and what to do (issue 14, item 5), via the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import nw
from tests.nixcheck import require_nix


def test_a_typo_in_a_target_gets_did_you_mean(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\nmodel_base = output('echo 1 > $out/x')\n"
                   "model_large = output('echo 2 > $out/x')\n")
    for cmd in (("run",), ("run", "-n"), ("status",), ("dag",)):
        proc = nw(*cmd, str(exp), "model_bse")
        assert proc.returncode == 1, proc.stderr
        assert "no step named 'model_bse'. Did you mean 'model_base'" in proc.stderr, proc.stderr


def test_a_typo_in_a_step_reference_of_the_last_run_gets_did_you_mean(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\nmodel_base = output('echo 1 > $out/x')\n")
    nw("run", str(exp), check=True)
    for cmd in (("show",), ("log",), ("lineage",), ("check",), ("diff", "model_base")):
        proc = nw(*cmd, "modelbase")
        assert proc.returncode == 1, proc.stderr
        assert "no step or path named 'modelbase'. Did you mean 'model_base'?" in proc.stderr, proc.stderr
    proc = nw("why", "model_bas")
    assert proc.returncode == 1 and "Did you mean 'model_base'?" in proc.stderr, proc.stderr


def test_a_failed_step_says_it_ran_in_its_output_directory(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    (tmp_path / "data.csv").write_text("1,2\n")
    exp.write_text("from nixlib import output\nuse = output('cat data.csv > $out/copy.csv')\n")
    proc = nw("run", str(exp))
    assert proc.returncode == 1
    error = next(line for line in proc.stderr.splitlines() if line.startswith("error:"))
    assert "step 'use' failed" in error and "output directory ($out) as the working directory" in error
    assert "static()" in error


def test_static_paths_are_relative_to_the_experiment_file_not_the_cwd(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "raw.txt").write_text("from the project\n")
    Path("raw.txt").write_text("from the current directory\n")
    exp = project / "exp.py"
    exp.write_text("from nixlib import output, static\nraw = static('raw.txt')\n"
                   "copy = output(f'cat {raw} > $out/copy.txt')\n")
    nw("run", str(exp), check=True)
    assert Path("nix-workflow-output/copy/copy.txt").read_text() == "from the project\n"
    os.remove(project / "raw.txt")
    proc = nw("run", str(exp))
    assert proc.returncode == 1
    assert f"static input {project / 'raw.txt'} does not exist" in proc.stderr
    assert f"relative paths are taken from the experiment file's directory, {project}" in proc.stderr
    assert f"{Path('raw.txt').absolute()} exists" in proc.stderr


def test_a_python_file_without_steps_is_an_error(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text("x = 1\n")
    for cmd in ("run", "status", "dag"):
        proc = nw(cmd, str(exp))
        assert proc.returncode == 1 and f"{exp} defines no steps" in proc.stderr, proc.stderr


@pytest.mark.nix
def test_a_nix_file_without_steps_is_an_error(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    exp = tmp_path / "exp.nix"
    exp.write_text("{ }\n")
    proc = nw("run", str(exp))
    assert proc.returncode == 1 and f"{exp} defines no steps" in proc.stderr, proc.stderr


def test_an_unwritable_output_link_directory_is_reported_before_any_step_runs(tmp_path: Path,
                                                                             store_root: Path) -> None:
    mark = tmp_path / "ran"
    exp = tmp_path / "exp.py"
    exp.write_text(f"from nixlib import output\nstep = output('touch {mark}; echo 1 > $out/x')\n")
    Path("links").write_text("a file where the link directory should be\n")
    proc = nw("run", str(exp), "--out-link", "links/sub")
    assert proc.returncode == 1
    assert "the output-link directory links/sub cannot be written" in proc.stderr and "nothing was run" in proc.stderr
    assert not mark.exists()
    assert not list((store_root / "realisations").iterdir())


def test_a_pinned_object_that_was_quarantined_says_so(tmp_path: Path, store_root: Path) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\nmade = output('echo good > $out/x')\n")
    nw("run", str(exp), check=True)
    h = os.readlink("nix-workflow-output/made").rsplit("/", 1)[1]
    exp.write_text(f"from nixlib import output\npinned = output('exit 1', hash='{h}')\n")
    obj = store_root / "store" / h
    os.chmod(obj, 0o755)
    os.chmod(obj / "x", 0o644)
    (obj / "x").write_text("corrupted\n")
    proc = nw("run", str(exp))
    assert proc.returncode == 1
    assert f"step 'pinned' is pinned to object {h}" in proc.stderr
    assert "quarantined as corrupt" in proc.stderr and str(store_root / "quarantine" / h) in proc.stderr
    status = nw("status", str(exp), check=True).stdout
    assert status.startswith("pinned, missing") and "quarantined as corrupt" in status


def test_the_progress_names_running_steps_and_their_elapsed_time(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\nslow_step = output('sleep 1.5; echo 1 > $out/x')\n")
    proc = nw("run", str(exp), env={"NW_PROGRESS_INTERVAL": "0.2"}, check=True)
    still = [line for line in proc.stderr.splitlines() if line.startswith("nw: still running: ")]
    assert still and all(line.startswith("nw: still running: slow_step (") and line.endswith("s)")
                         for line in still), proc.stderr


def test_a_python_syntax_error_points_at_the_experiment_file_and_line(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\na = output('echo 1 > $out/x'\nb = 2\n")
    proc = nw("status", str(exp))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {exp}:2: evaluating the experiment failed: SyntaxError"), proc.stderr


def test_output_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\nloud = output('seq 1 200000; echo 1 > $out/x')\n")
    nw("run", "-q", str(exp), check=True)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.run(f"{sys.executable} -m nixlib.cli log loud | head -1", shell=True, env=env, text=True,
                          capture_output=True, timeout=60)
    assert proc.stdout.splitlines()[0].startswith("$ seq 1 200000") and proc.stderr == "", proc.stderr


def test_a_failure_that_is_not_about_a_missing_file_gets_no_working_directory_note(tmp_path: Path) -> None:
    """The note explains a relative path read from $out; after `exit 3` (no file missing) it would be beside the
    point."""
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\nbad = output('echo computing; exit 3')\n")
    proc = nw("run", str(exp))
    assert proc.returncode == 1
    error = next(line for line in proc.stderr.splitlines() if line.startswith("error:"))
    assert "step 'bad' failed" in error and "exited with status 3" in error
    assert "working directory" not in error

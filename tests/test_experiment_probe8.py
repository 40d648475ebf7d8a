"""Probing `nw run experiment.py` / `experiment.nix` the way an ML researcher writes experiments (wave 8).

Each test is one bug found by probing, checked to fail on the code before its fix: a step silently replaced by
another of the same name, an experiment that parses its arguments or imports a module beside it, a project
script named by a quoted path (a project directory with a space), and a nested parameter sweep.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from nixlib import dsl
from tests.helpers import nw, tree_snapshot
from tests.nixcheck import require_nix


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _refused(exp: Path, store_root: Path, *messages: str) -> None:
    """`nw run exp` is an error naming what is wrong, before any step runs and without touching the store."""
    warm = write(store_root.parent / "warm" / "warm.py", "from nixlib import output\nw = output('echo w > $out/w')\n")
    nw("run", str(warm), cwd=warm.parent, check=True)  # the store exists: its empty directories are no change
    before = tree_snapshot(store_root)
    proc = nw("run", str(exp), cwd=exp.parent)
    assert proc.returncode == 1, proc.stderr
    for message in messages:
        assert message in proc.stderr, (message, proc.stderr)
    assert "Traceback" not in proc.stderr and ": running" not in proc.stderr
    assert tree_snapshot(store_root) == before
    assert not (exp.parent / "nix-workflow-output").exists()


def test_a_variable_named_like_an_explicitly_named_step_is_an_error(tmp_path: Path, store_root: Path) -> None:
    # Before: the step assigned to `data` was silently dropped (never run) and nix-workflow-output/data showed the
    # helper's result, "helper", as if it were data's.
    exp = write(tmp_path / "p" / "experiment.py", """from nixlib import output
helper = output("echo helper > $out/x", name="data")
data = output(f"echo real > $out/x; cat {helper}/x >> $out/x")
""")
    _refused(exp, store_root, "two different steps are named 'data'", "experiment.py:3", "experiment.py:2")


def test_two_steps_with_one_name_and_other_options_are_an_error(tmp_path: Path, store_root: Path) -> None:
    # Before: a sweep over an option under one name ran only the first; `after` consumed the other step's output.
    exp = write(tmp_path / "p" / "experiment.py", """from nixlib import output
runs = [output("echo ${state:-none} > $out/x", name="train", resumable=r) for r in (False, True)]
after = output(f"cat {runs[1]}/x > $out/y")
""")
    _refused(exp, store_root, "two different steps are named 'train'", "other options or env")


def test_nix_attribute_named_like_an_explicitly_named_step_is_an_error(tmp_path: Path, store_root: Path) -> None:
    require_nix("nix-instantiate")
    exp = write(tmp_path / "p" / "experiment.nix", """let inherit ((import <nixworkflow>).lib) output; in rec {
  a = output { cmd = "echo helper > $out/x"; name = "data"; };
  data = output "echo real > $out/x";
}
""")
    _refused(exp, store_root, "two different steps are named 'data'", "experiment.nix")


def test_an_experiment_parsing_its_arguments_runs_with_their_defaults(tmp_path: Path) -> None:
    # Before: argparse saw nw's own argv (`run experiment.py`) and exited 2 with "unrecognized arguments".
    exp = write(tmp_path / "p" / "experiment.py", """import argparse
from nixlib import output
parser = argparse.ArgumentParser()
parser.add_argument("--lr", default="0.25")
args = parser.parse_args()
model = output(f"echo {args.lr} > $out/lr")
""")
    nw("run", "experiment.py", cwd=exp.parent, check=True)
    assert (exp.parent / "nix-workflow-output" / "model" / "lr").read_text() == "0.25\n"


def test_an_experiment_that_exits_is_a_clear_error_naming_its_line(tmp_path: Path, store_root: Path) -> None:
    # Before: `sys.exit(3)` ended nw with status 3 and no message at all.
    exp = write(tmp_path / "p" / "experiment.py", "import sys\nfrom nixlib import output\nsys.exit(3)\n")
    _refused(exp, store_root, "experiment.py:3", "sys.exit(3)", "with no command-line arguments")


def test_a_module_beside_the_experiment_is_imported_from_any_directory(tmp_path: Path) -> None:
    # Before: `import params` failed (ModuleNotFoundError): the experiment's directory was not on sys.path, as
    # `python experiment.py` puts it.
    project = tmp_path / "p"
    write(project / "params.py", "LR = 0.5\n")
    exp = write(project / "experiment.py", "from nixlib import output\nimport params\n"
                "model = output(f'echo {params.LR} > $out/lr')\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    nw("run", str(exp), cwd=elsewhere, check=True)
    assert (elsewhere / "nix-workflow-output" / "model" / "lr").read_text() == "0.5\n"


def test_evaluating_twice_in_one_process_reads_an_edited_module_anew(tmp_path: Path) -> None:
    project = tmp_path / "p"
    params = write(project / "params.py", "LR = 0.5\n")
    exp = write(project / "experiment.py", "from nixlib import output\nimport params\n"
                "model = output(f'echo {params.LR} > $out/lr')\n")
    argv, path = list(sys.argv), list(sys.path)
    first = dsl.load(exp).recipes["model"].command
    params.write_text("LR = 0.75\n")
    second = dsl.load(exp).recipes["model"].command
    assert "0.5" in first and "0.75" in second
    assert (sys.argv, sys.path) == (argv, path)  # restored after each evaluation
    assert "params" not in sys.modules


@pytest.mark.parametrize("quote", ['"{HERE}/train.py"', "{shlex.quote(str(HERE / 'train.py'))}"])
def test_editing_a_script_named_by_a_quoted_path_with_a_space_reruns_its_step(tmp_path: Path, quote: str) -> None:
    # Before: the command's words stopped at the space of "my exp", so train.py was not keyed and editing it served
    # the old result.
    project = tmp_path / "my exp"
    write(project / "train.py", 'print("v1")\n')
    write(project / "experiment.py", f"""import shlex
from pathlib import Path
from nixlib import output
HERE = Path(__file__).parent
model = output(f'''python3 {quote} > $out/m''')
""")
    nw("run", "experiment.py", cwd=project, check=True)
    result = project / "nix-workflow-output" / "model" / "m"
    assert result.read_text() == "v1\n"
    write(project / "train.py", 'print("v2")\n')
    proc = nw("run", "experiment.py", cwd=project, check=True)
    assert "done 1" in proc.stderr, proc.stderr
    assert result.read_text() == "v2\n"
    assert "cached 1" in nw("run", "experiment.py", cwd=project, check=True).stderr


def test_a_nested_parameter_sweep_runs_every_step_and_links_it(tmp_path: Path) -> None:
    # Before: steps in a dict of dicts or a list of lists were no top-level steps: `nw run` ran none of them and
    # reported success.
    project = tmp_path / "p"
    write(project / "experiment.py", """from nixlib import output
data = output("echo d > $out/d")
grid = {lr: {bs: output(f"echo {lr} {bs} > $out/m; cat {data}/d >> $out/m") for bs in (16, 32)} for lr in (0.1, 0.01)}
seeds = [[output(f"echo {i} {j} > $out/x") for j in range(2)] for i in range(2)]
""")
    proc = nw("run", "experiment.py", cwd=project, check=True)
    assert "done 9" in proc.stderr, proc.stderr
    out = project / "nix-workflow-output"
    assert (out / "grid.0.01.32" / "m").read_text() == "0.01 32\nd\n"
    assert (out / "seeds.1.0" / "x").read_text() == "1 0\n"
    assert "defined but not run" not in proc.stderr


def test_a_step_no_top_level_name_reaches_is_named_in_a_warning(tmp_path: Path) -> None:
    project = tmp_path / "p"
    write(project / "experiment.py", """import types
from nixlib import output
x = output("echo 1 > $out/x")
ns = types.SimpleNamespace(hidden=output("echo 2 > $out/x"))
""")
    proc = nw("run", "experiment.py", cwd=project, check=True)
    assert "1 step(s) are defined but not run" in proc.stderr and "experiment.py:4" in proc.stderr, proc.stderr
    assert "host environment, not pinned by Nix: x\n" in proc.stderr  # the step that does not run is not listed


@pytest.mark.parametrize("case", ["locals", "main guard"])
def test_an_experiment_without_top_level_steps_says_where_its_steps_went(tmp_path: Path, store_root: Path,
                                                                        case: str) -> None:
    # Before: steps kept in a function's locals ran nothing and reported success ("[0/0]"); steps under
    # `if __name__ == "__main__":` got the bare "defines no steps" with no hint why.
    call = "main()\n" if case == "locals" else 'if __name__ == "__main__":\n    main()\n'
    exp = write(tmp_path / "p" / "experiment.py", "from nixlib import output\n"
                f"def main():\n    x = output('echo 1 > $out/x')\n{call}")
    hint = "experiment.py:3" if case == "locals" else 'an `if __name__ == "__main__":` block does not run'
    _refused(exp, store_root, "defines no steps", hint)


def test_log_json_is_json_and_a_skipped_step_is_said_to_be_skipped(tmp_path: Path) -> None:
    # Before: `nw log --json` printed the raw log text; a skipped step "has no log: it skipped before it started".
    project = tmp_path / "p"
    write(project / "experiment.py", """from nixlib import output
a = output("echo said-a; echo a > $out/a")
b = output("exit 3")
c = output(f"cat {b} > $out/c")
""")
    assert nw("run", "-k", "experiment.py", cwd=project).returncode == 1
    doc = json.loads(nw("log", "--json", "a", cwd=project, check=True).stdout)
    assert doc["name"] == "a" and "said-a" in doc["text"] and doc["log"].endswith(".log")
    proc = nw("log", "c", cwd=project)
    assert proc.returncode == 1 and "it was skipped before it started" in proc.stderr, proc.stderr


def test_experiment_nix_keys_a_script_named_by_a_quoted_path_with_a_space(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    project = tmp_path / "my exp"
    write(project / "train.py", 'print("v1")\n')
    write(project / "experiment.nix", """let inherit ((import <nixworkflow>).lib) output; in {
  model = output "python3 '${toString ./.}/train.py' > $out/m";
}
""")
    nw("run", "experiment.nix", cwd=project, check=True)
    write(project / "train.py", 'print("v2")\n')
    assert "done 1" in nw("run", "experiment.nix", cwd=project, check=True).stderr
    assert (project / "nix-workflow-output" / "model" / "m").read_text() == "v2\n"


def test_a_renamed_step_is_no_longer_reported_from_the_last_run(tmp_path: Path, store_root: Path) -> None:
    # Before: the last-run summary kept every entry it ever had, so `nw show b` after renaming b to c still reported
    # b as "cached in the last run".
    project = tmp_path / "p"
    exp = write(project / "experiment.py", 'from nixlib import output\na = output("echo a > $out/x")\n'
                'b = output("echo b > $out/x")\n')
    nw("run", str(exp), cwd=project, check=True)
    assert nw("show", "b", cwd=project).returncode == 0
    write(exp, 'from nixlib import output\na = output("echo a > $out/x")\nc = output("echo c > $out/x")\n')
    nw("run", str(exp), cwd=project, check=True)
    show = nw("show", "b", cwd=project)
    assert show.returncode == 1 and "no step or path named 'b'" in show.stderr, show.stdout + show.stderr
    assert "output link left by an earlier run" in show.stderr
    kept = nw("show", "nix-workflow-output/b", cwd=project)  # the old link is still a path, matched by content
    assert kept.returncode == 0 and "b" in kept.stdout
    summary = json.loads((project / "nix-workflow-output" / ".nw-last-run.json").read_text())
    assert sorted(summary) == ["a", "c"]


def test_a_step_of_another_experiment_in_the_same_directory_stays_in_the_summary(tmp_path: Path) -> None:
    project = tmp_path / "p"
    one = write(project / "one.py", 'from nixlib import output\na = output("echo a > $out/x")\n')
    two = write(project / "two.py", 'from nixlib import output\nz = output("echo z > $out/x")\n')
    nw("run", str(one), cwd=project, check=True)
    nw("run", str(two), cwd=project, check=True)
    summary = json.loads((project / "nix-workflow-output" / ".nw-last-run.json").read_text())
    assert sorted(summary) == ["a", "z"]


def test_a_run_waits_for_the_summary_lock_and_keeps_what_another_run_wrote(tmp_path: Path, store_root: Path) -> None:
    # Before: the summary was read, changed and written back without a lock, so of two runs finishing together in one
    # directory, the later one dropped the other's entries.
    import hashlib
    import subprocess
    import time

    from nixlib import locks
    from tests.helpers import REPO

    project = tmp_path / "p"
    exp = write(project / "experiment.py", 'from nixlib import output\na = output("echo a > $out/x")\n')
    nw("run", str(exp), cwd=project, check=True)
    out_dir = project / "nix-workflow-output"
    here = hashlib.sha256(str(out_dir.absolute()).encode()).hexdigest()[:32]
    with locks.lock(store_root / "locks" / f"last-run.{here}.lock"):  # as another run updating the summary holds it
        proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp)], cwd=project,
                                env=dict(os.environ, PYTHONPATH=str(REPO)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while proc.poll() is None and "->" not in Path("/proc/locks").read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished without waiting for the summary's lock"
        summary = json.loads((out_dir / ".nw-last-run.json").read_text())
        summary["other"] = {"status": "done", "recipe_key": "x", "store": str(store_root)}  # the other run's entry
        (out_dir / ".nw-last-run.json").write_text(json.dumps(summary))
    assert proc.wait(timeout=120) == 0, proc.stderr
    assert sorted(json.loads((out_dir / ".nw-last-run.json").read_text())) == ["a", "other"]

"""A realistic ML experiment through `nw run experiment.py`: a project script the command runs by path.

Users write `python {HERE}/train.py ...` with `HERE = Path(__file__).parent`, the way they would in any Python
script. The step must find the script (it runs in $out, so `__file__` must be absolute), and editing the script
must re-run the step (its content is part of what the step computes), while an unchanged experiment re-runs nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import nw

TRAIN = """import json, sys
lr = json.load(open(sys.argv[1]))["lr"]
rows = open(sys.argv[2]).read().split()
json.dump({"lr": lr, "rows": len(rows), "version": VERSION}, open("model.json", "w"))
"""

EXPERIMENT = """from pathlib import Path
from nixlib import output, static
HERE = Path(__file__){how}.parent
params = static("params.json")
data = output("seq 1 10 > $out/data.txt")
model = output(f"python3 {{HERE}}/train.py {{params}} {{data}}/data.txt")
report = output(f"cat {{model}}/model.json > $out/report.txt")
"""


def _project(where: Path, how: str) -> Path:
    where.mkdir()
    (where / "train.py").write_text(TRAIN.replace("VERSION", "1"))
    (where / "params.json").write_text('{"lr": 0.1}\n')
    (where / "experiment.py").write_text(EXPERIMENT.format(how=how))
    return where


def _run(project: Path) -> tuple[int, int]:
    """(steps executed, steps served from the store) of one `nw run experiment.py` started in `project`."""
    proc = nw("run", "experiment.py", cwd=project, check=True)
    found = re.search(r"done (\d+) · cached (\d+)", proc.stderr)
    assert found, proc.stderr
    return int(found[1]), int(found[2])


def _report(project: Path) -> str:
    return (project / "nix-workflow-output" / "report" / "report.txt").read_text()


def test_editing_the_script_a_command_runs_reruns_that_step_and_only_what_it_changes(tmp_path: Path) -> None:
    project = _project(tmp_path / "proj", how=".resolve()")
    assert _run(project) == (3, 0)
    assert '"version": 1' in _report(project)
    assert _run(project) == (0, 3)  # unchanged: nothing runs

    (project / "train.py").write_text(TRAIN.replace("VERSION", "2"))
    assert _run(project) == (2, 1)  # model and report; data is untouched
    assert '"version": 2' in _report(project)  # not the stale result of the old script
    assert _run(project) == (0, 3)

    (project / "train.py").write_text(TRAIN.replace("VERSION", "2") + "# a comment\n")
    assert _run(project) == (1, 2)  # model re-runs; same bytes, so report is served (early cutoff)

    (project / "params.json").write_text('{"lr": 0.5}\n')  # a static input: re-runs model and report
    assert _run(project) == (2, 1)
    assert '"lr": 0.5' in _report(project)


def test_path_of_file_parent_names_the_project_from_the_step(tmp_path: Path) -> None:
    """`nw run experiment.py` by a relative name: `Path(__file__).parent` must not be `.`, which a step, running
    in $out, would read as its own output directory."""
    project = _project(tmp_path / "proj", how="")
    assert _run(project) == (3, 0)
    assert '"version": 1' in _report(project)


def test_experiment_nix_keys_the_script_a_command_runs_as_experiment_py_does(tmp_path: Path) -> None:
    """The same project script named by path in experiment.nix: editing it re-runs the step there too, and the
    Python and Nix experiments of one directory key it alike (the second front door is served from the store)."""
    from tests.nixcheck import require_nix

    require_nix("nix-instantiate")
    project = tmp_path / "proj"
    project.mkdir()
    (project / "tool.sh").write_text("echo one > v\n")
    (project / "experiment.nix").write_text(
        'let inherit ((import <nixworkflow>).lib) output; in { made = output "sh ' + str(project) + '/tool.sh"; }\n')
    (project / "experiment.py").write_text(f"from nixlib import output\nmade = output('sh {project}/tool.sh')\n")

    def run(name: str) -> tuple[int, int]:
        proc = nw("run", name, cwd=project, check=True)
        found = re.search(r"done (\d+) · cached (\d+)", proc.stderr)
        assert found, proc.stderr
        return int(found[1]), int(found[2])

    assert run("experiment.nix") == (1, 0)
    assert run("experiment.py") == (0, 1)  # one key for both front doors
    (project / "tool.sh").write_text("echo two > v\n")
    assert run("experiment.nix") == (1, 0)  # not the stale result of the old script
    assert (project / "nix-workflow-output" / "made" / "v").read_text() == "two\n"

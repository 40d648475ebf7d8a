"""Wave 11 probe of `nw run experiment.py` with other people's ML experiments (a sweep, a train/eval split, project
scripts, steps defined in helper modules, environment variables, thousands of inputs): each a regression test that
failed before its fix."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import nw


def links(where: Path) -> list[str]:
    return sorted(p.name for p in (where / "nix-workflow-output").iterdir() if not p.name.startswith("."))


def test_a_target_may_follow_the_options(tmp_path: Path) -> None:
    """`nw run experiment.py -j 4 models.0.1` was refused with `unrecognized arguments: models.0.1`: argparse gives
    TARGET (nargs='*') only the words right after the file. A target anywhere is a target; an unknown option is
    still an error naming the command."""
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\n"
                   "data = output('seq 1 5 > d.txt')\n"
                   "models = {lr: output(f'echo {lr} $(wc -l < {data}/d.txt) > m.txt') for lr in (0.1, 0.01)}\n")
    ran = nw("run", str(exp), "-j", "2", "models.0.1", "-k", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert links(tmp_path) == ["data", "models.0.1"], ran.stderr
    assert (tmp_path / "nix-workflow-output" / "models.0.1" / "m.txt").read_text() == "0.1 5\n"
    status = nw("status", str(exp), "--json", "models.0.01", cwd=tmp_path)
    assert status.returncode == 0 and '"models.0.01"' in status.stdout and '"models.0.1"' not in status.stdout, \
        status.stdout + status.stderr
    bogus = nw("run", str(exp), "-j", "2", "--bogus", "models.0.1", cwd=tmp_path)
    assert bogus.returncode == 2 and "nw run: error: unrecognized arguments: --bogus" in bogus.stderr, bogus.stderr


@pytest.fixture
def short_store() -> Iterator[Path]:
    """A store with a short root: there the paths that replace placeholders are much longer than the placeholders."""
    root = Path(tempfile.mkdtemp(prefix="nw", dir="/tmp")) / "s"
    yield root
    for dirpath, dirnames, _ in os.walk(root.parent):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), stat.S_IRWXU)
    shutil.rmtree(root.parent)


def test_a_command_too_long_once_its_inputs_are_paths_is_refused_before_anything_runs(tmp_path: Path,
                                                                                     short_store: Path) -> None:
    """An aggregate over a big sweep checked its length with placeholders in it, which are shorter than the store
    paths that replace them: a command of 119,000 bytes passed, its upstream steps ran, and then the step failed with
    a raw `[Errno 7] Argument list too long: '/bin/bash'`. It is refused at evaluation, naming the step and line."""
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\n"
                   "a = output('echo 1 > v', name='a')\n"
                   "n = 119000 // len(a)\n"
                   "report = output('echo ' + ''.join([a] * n) + ' > all')\n")
    ran = nw("run", str(exp), cwd=tmp_path, env={"NIX_WORKFLOW_STORE": str(short_store)})
    assert ran.returncode == 1, ran.stderr
    assert "Errno" not in ran.stderr and "Traceback" not in ran.stderr, ran.stderr
    assert f"step 'report' ({exp}:4): its command is" in ran.stderr, ran.stderr
    assert "nothing was run" in ran.stderr and "a: running" not in ran.stderr, ran.stderr
    assert not (tmp_path / "nix-workflow-output").exists()


def test_an_environment_variable_the_command_expands_is_keyed(tmp_path: Path) -> None:
    """`SEED=1 nw run` then `SEED=2 nw run` served the SEED=1 result: the step sees nw's environment, and what it
    expands was not part of its key (silently stale). Now its value is keyed by a digest (never stored as such),
    `nw why` names the variable; a `$X` inside single quotes is no shell expansion and is not keyed."""
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\n"
                   "seeded = output('echo seed=${SEED:-none} > s.txt')\n"
                   "quoted = output(\"awk 'BEGIN { print \\\"$SEED\\\" }' > q.txt\")\n")
    result = tmp_path / "nix-workflow-output" / "seeded" / "s.txt"
    first = nw("run", str(exp), cwd=tmp_path, env={"SEED": "1"})
    assert first.returncode == 0 and result.read_text() == "seed=1\n", first.stderr
    why = nw("why", "seeded", cwd=tmp_path, env={"SEED": "2"})
    assert "environment variable $SEED the step uses has another value" in why.stdout, why.stdout + why.stderr
    second = nw("run", str(exp), cwd=tmp_path, env={"SEED": "2"})
    assert second.returncode == 0 and result.read_text() == "seed=2\n", second.stderr
    assert "seeded: done" in second.stderr and "quoted: cached" in second.stderr, second.stderr
    back = nw("run", str(exp), cwd=tmp_path, env={"SEED": "1"})
    assert "seeded: cached" in back.stderr and result.read_text() == "seed=1\n", back.stderr
    record = json.loads(nw("show", "--json", "seeded", cwd=tmp_path, env={"SEED": "1"}).stdout)
    keyed = record["recipe"]["extra"]["environment"]
    assert list(keyed) == ["SEED"] and len(keyed["SEED"]) == 52, keyed  # a digest, not the value
    unset = nw("run", str(exp), cwd=tmp_path)  # no SEED: neither result may be served (nor one recorded before
    assert "seeded: done" in unset.stderr and result.read_text() == "seed=none\n", unset.stderr  # keying)


def test_a_step_defined_in_an_imported_project_module_is_named_after_it(tmp_path: Path) -> None:
    """A step defined at module level in a project module (`import shared`, then `shared.data` in a command) was
    named `step-bc69v59p` in the run, `nw lineage` and `nw show`, and a step of it no step used was warned about
    under that hash. It is named `shared.data`, can be selected by that name, and still runs only when needed."""
    (tmp_path / "shared.py").write_text("from nixlib import output\n"
                                        "data = output('seq 1 10 > d.txt')\n"
                                        "unused = output('echo unused > u.txt')\n")
    exp = tmp_path / "experiment.py"
    exp.write_text("import shared\nfrom nixlib import output\n"
                   "total = output(f\"awk '{{s+=$1}} END {{print s}}' {shared.data}/d.txt > t.txt\")\n")
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "shared.data: done" in ran.stderr and "step-" not in ran.stderr, ran.stderr
    assert "shared.unused (" in ran.stderr and "shared.unused: " not in ran.stderr, ran.stderr
    assert (tmp_path / "nix-workflow-output" / "total" / "t.txt").read_text() == "55\n"
    lineage = nw("lineage", "total", cwd=tmp_path)
    assert "└── shared.data " in lineage.stdout, lineage.stdout
    one = nw("run", str(exp), "shared.unused", cwd=tmp_path)
    assert one.returncode == 0 and "shared.unused: done" in one.stderr, one.stderr

"""Wave 11: `nw show`/`nw log`/`nw lineage` tell the truth about a step (issues docs11 found). Each test failed
before its fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, nw

EXPERIMENT = (
    "from nixlib import output\n"
    "a = output('echo hi > $out/a')\n"
    # writes into its input (a store object it may write to as root or owner): a is quarantined, b fails
    "b = output(f'chmod u+w {a} {a}/a; echo x >> {a}/a; cat {a}/a > $out/b')\n"
)


def test_show_of_a_step_whose_output_was_quarantined_says_so(store_root: Path, tmp_path: Path) -> None:
    """`nw show a` after a later step wrote into a's object (which was then quarantined) still said
    `status: done in the last run` and printed the output path as if it held the result; the link dangled."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "experiment.py").write_text(EXPERIMENT)
    assert nw("run", "experiment.py", cwd=work).returncode == 1
    obj = os.readlink(work / "nix-workflow-output" / "a")
    assert not os.path.lexists(obj)  # the object went to quarantine/
    moved = [n for n in os.listdir(store_root / "quarantine") if n.startswith(os.path.basename(obj) + ".")]
    assert len(moved) == 1

    shown = nw("show", "a", cwd=work, check=True).stdout
    status = next(line for line in shown.splitlines() if line.startswith("status:"))
    assert "no longer in the store" in status and "runs the step again" in status, shown
    out = next(line for line in shown.splitlines() if line.startswith("output out:"))
    assert "MISSING" in out and str(store_root / "quarantine" / moved[0]) in out, shown

    as_json = nw("show", "a", "--json", cwd=work, check=True).stdout
    assert '"missing_outputs"' in as_json and moved[0] in as_json, as_json
    assert "missing from the store" in nw("lineage", "a", cwd=work, check=True).stdout

    # removed (not quarantined): said too; and a step whose output is there reads as before
    (work / "experiment.py").write_text("from nixlib import output\nc = output('echo c > $out/c')\n")
    nw("run", "experiment.py", cwd=work, check=True)
    assert "MISSING" not in nw("show", "c", cwd=work, check=True).stdout
    c = Path(os.readlink(work / "nix-workflow-output" / "c"))
    os.chmod(c, 0o755)
    (c / "c").unlink()
    c.rmdir()
    shown = nw("show", "c", cwd=work, check=True).stdout
    assert "MISSING: removed from the store" in shown, shown


def test_a_fifo_left_in_out_fails_the_step_with_its_log(store_root: Path, tmp_path: Path) -> None:
    """A FIFO left in $out failed the step with a clear message but no log path, unlike every other failure; the
    last-run summary then had no log, so `nw log` said the step "failed before it started" and `nw show` "log: none
    (the step did not start)", although it ran and printed."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "experiment.py").write_text(
        "from nixlib import output\na = output('echo printed-by-a; echo hi > $out/a; mkfifo $out/p')\n")
    proc = nw("run", "experiment.py", cwd=work)
    assert proc.returncode == 1
    assert "FIFO" in proc.stderr and "Its log is kept at" in proc.stderr, proc.stderr
    assert "printed-by-a" in nw("log", "a", cwd=work, check=True).stdout
    assert "did not start" not in nw("show", "a", cwd=work, check=True).stdout


LUIGI = '''
import luigi
from luigi_nixworkflow import NixTask


class Make(NixTask):
    n = luigi.IntParameter(default=1)

    def command(self):
        return f"echo made {self.n} > {self.output()}/x"


class Broken(NixTask):
    def requires(self):
        return [Make(n=1), Make(n=2)]

    def command(self):
        return f"echo broken-says-hello; cat {self.input()[0]}/x; exit 3"
'''


def _luigi(work: Path, task: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{work}")
    return subprocess.run([sys.executable, "-m", "luigi", "--module", "pipe", task, "--local-scheduler"], cwd=work,
                          env=env, text=True, capture_output=True, timeout=300)


def test_luigi_tasks_are_found_by_task_id_and_family(store_root: Path, tmp_path: Path) -> None:
    """`nw show TASK_ID` / `nw log TASK_ID` did not find a Luigi task (only its output link, by content), so a failed
    task's log could not be reached by name; the error called the link one "left by an earlier run"."""
    pytest.importorskip("luigi")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "pipe.py").write_text(LUIGI)
    proc = _luigi(work, "Broken")
    assert "failed" in (proc.stdout + proc.stderr).lower()
    import luigi  # the task ids as Luigi names them (not computed by nixworkflow)

    sys.path.insert(0, str(work))
    try:
        import pipe  # type: ignore[import-not-found]

        broken, make1, make2 = pipe.Broken().task_id, pipe.Make(n=1).task_id, pipe.Make(n=2).task_id
    finally:
        sys.path.remove(str(work))
        sys.modules.pop("pipe", None)
        luigi.task_register.Register.clear_instance_cache()

    shown = nw("show", broken, cwd=work, check=True).stdout
    assert f"step:         {broken}" in shown and "status:       failed" in shown, shown
    assert "exited with status 3" in shown and "StepFailed:" not in shown, shown
    log = nw("log", broken, cwd=work, check=True).stdout
    assert "broken-says-hello" in log and "made 1" in log, log
    assert "broken-says-hello" in nw("log", "Broken", cwd=work, check=True).stdout  # one task of its family

    shown = nw("show", make1, cwd=work, check=True).stdout
    assert "status:       done" in shown and "echo made 1" in shown, shown
    assert "made 1" in (Path(os.readlink(work / "nix-workflow-output" / make1)) / "x").read_text()
    assert "made 2" in nw("lineage", make2, cwd=work, check=True).stdout
    assert nw("show", f"nix-workflow-output/{make2}", cwd=work, check=True).stdout.startswith(f"step:         {make2}")

    ambiguous = nw("show", "Make", cwd=work)  # two tasks of the family: which one is not guessed
    assert ambiguous.returncode == 1 and "Traceback" not in ambiguous.stderr
    assert make1 in ambiguous.stderr and make2 in ambiguous.stderr and "task_id" in ambiguous.stderr

    # a second run that is served from the store: its task reads as cached in that run
    _luigi(work, "Make")
    assert "status:       cached" in nw("show", "Make", cwd=work, check=True).stdout


def test_show_of_a_snakemake_job_gives_the_command_that_ran(store_root: Path, tmp_path: Path) -> None:
    """`nw show FILE` of a Snakemake job printed the normalised command (`--a=1 --b=2`, options sorted), a command
    that never ran as written; the record's provenance holds the one Snakemake ran."""
    pytest.importorskip("snakemake")
    from tests.test_snakemake import ok, snakemake
    from tests.test_snakemake_semantics import write

    wf = write(tmp_path / "wf", {
        "args.py": "import sys\nprint(*sys.argv[1:])\n",
        "Snakefile": 'rule make:\n    input: "args.py"\n    output: "out.txt"\n'
                     '    shell: "python3 {input} --zeta=1 --alpha=2 > {output}"\n'})
    ok(snakemake(wf, "out.txt"))
    assert (wf / "out.txt").read_text() == "--zeta=1 --alpha=2\n"  # as it ran
    shown = nw("show", "out.txt", cwd=wf, check=True).stdout
    command = next(line for line in shown.splitlines() if line.startswith("command:"))
    assert "args.py --zeta=1 --alpha=2 > out.txt" in command, shown
    keyed = next(line for line in shown.splitlines() if line.startswith("keyed as:"))
    assert "--alpha=2 --zeta=1" in keyed, shown
    lineage = nw("lineage", "out.txt", cwd=wf, check=True).stdout  # (the tree shows each job's keyed form: compact)
    assert "--alpha=2 --zeta=1" in lineage and "missing" not in lineage, lineage  # (args.py is no stored object)


def test_view_and_hash_help_wording(store_root: Path) -> None:
    """The view's API said "not a object"; `nw hash --help` had no description line (every other command has)."""
    from nixlib.store import Store
    from nixlib.view.data import Refused, ViewData

    view = ViewData(Store(store_root), Path("nix-workflow-output"))
    with pytest.raises(Refused) as e:
        view.files("nope", "")
    assert "not an object" in str(e.value)
    text = nw("hash", "--help", check=True).stdout
    assert "nix-hash --type sha256 --base32 PATH" in text.split("positional arguments")[0].split("\n", 2)[2]

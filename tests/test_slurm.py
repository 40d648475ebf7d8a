"""`nw run --slurm` against a real one-node Slurm (tests/slurm_cluster.py): misses become Slurm jobs, hits
never reach Slurm, the store's lock (not Slurm) dedupes, failures and interrupts leave nothing stored.

Submissions are counted by an `sbatch` first on PATH that logs each call and runs the real one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import slurm_cluster as cluster_fixtures
from tests.helpers import REPO, nw, tree_snapshot
from tests.nixcheck import require_nix
from tests.slurm_cluster import SbatchCounter

slurm_cluster = cluster_fixtures.slurm_cluster  # the fixtures, for pytest to find
sbatch_counter = cluster_fixtures.sbatch_counter

# Each step writes the id of the Slurm job it runs in: proof that it ran there, and which job it was.
EXPERIMENT = """from nixlib import output
a = output('echo "$SLURM_JOB_ID" > $out/job; echo alpha > $out/v')
b = output(f'cat {a}/v > $out/v; echo beta >> $out/v; echo "$SLURM_JOB_ID" > $out/job')
c = output('echo "$SLURM_JOB_ID" > $out/job; echo gamma > $out/v')
"""
STEPS = ("a", "b", "c")


def _experiment(tmp_path: Path, text: str = EXPERIMENT) -> Path:
    exp = tmp_path / "exp.py"
    exp.write_text(text)
    return exp


def _record(name: str, cwd: Path | None = None) -> dict:
    return json.loads(nw("show", name, "--json", cwd=cwd, check=True).stdout)


def _objects(store: Path) -> set[str]:
    d = store / "store"
    return set(os.listdir(d)) if d.exists() else set()


def test_cold_run_submits_every_step_once_and_a_rerun_none(tmp_path: Path, sbatch_counter: SbatchCounter,
                                                            isolated: Path) -> None:
    exp = _experiment(tmp_path)
    proc = nw("run", str(exp), "--slurm", "-j", "2", env=sbatch_counter.env, check=True)
    assert sbatch_counter.count() == 3, proc.stderr
    out = Path("nix-workflow-output")
    assert (out / "b" / "v").read_text() == "alpha\nbeta\n"
    jobs = set()
    for name in STEPS:
        slurm = _record(name)["provenance"]["slurm"]
        job = slurm["job_id"]
        assert slurm == {"job_id": job, "node": cluster_fixtures.NODE}  # which job, and where it ran
        assert (out / name / "job").read_text().strip() == job  # the command ran inside the recorded job
        state = sbatch_counter.cluster.client("scontrol", "show", "job", "-o", job).stdout
        assert f"JobName=nw-{name} " in state and "JobState=COMPLETED" in state
        jobs.add(job)
    assert len(jobs) == 3

    objects = _objects(isolated)
    shutil.rmtree(out)
    again = nw("run", str(exp), "--slurm", env=sbatch_counter.env, check=True)
    assert sbatch_counter.count() == 3, again.stderr  # every step was a hit: no sbatch at all
    assert "cached 3" in again.stderr
    assert (out / "b" / "v").read_text() == "alpha\nbeta\n" and _objects(isolated) == objects


def test_sbatch_options_from_the_environment_cannot_run_a_second_copy(tmp_path: Path, sbatch_counter: SbatchCounter
                                                                     ) -> None:
    """sbatch reads options from its environment: SBATCH_ARRAY_INX is --array (three tasks writing into one $out),
    SBATCH_REQUEUE --requeue, SBATCH_WAIT --wait. `nw run` drops them: one job with one task, its own id recorded."""
    exp = _experiment(tmp_path, "from nixlib import output\n"
                                "one = output('echo \"$SLURM_JOB_ID\" >> $out/jobs')\n")
    env = dict(sbatch_counter.env, SBATCH_ARRAY_INX="0-2", SBATCH_REQUEUE="1", SBATCH_WAIT="1")
    proc = nw("run", str(exp), "--slurm", env=env, check=True)
    assert sbatch_counter.count() == 1, proc.stderr
    job = _record("one")["provenance"]["slurm"]["job_id"]
    shown = sbatch_counter.cluster.client("scontrol", "show", "job", "-o", job).stdout
    assert len(shown.splitlines()) == 1 and "ArrayTaskId=" not in shown and "Requeue=0" in shown, shown
    assert Path("nix-workflow-output/one/jobs").read_text() == f"{job}\n"  # one copy ran, in the recorded job


def test_a_failing_job_stores_nothing_and_reports_like_a_local_failure(tmp_path: Path, sbatch_counter: SbatchCounter,
                                                                        isolated: Path) -> None:
    exp = _experiment(tmp_path, "from nixlib import output\n"
                                "bad = output('echo partial > $out/v; echo \"$undefined_variable\"')\n")
    before = tree_snapshot(isolated)
    proc = nw("run", str(exp), "--slurm", env=sbatch_counter.env)
    assert proc.returncode == 1 and sbatch_counter.count() == 1
    assert "step 'bad' failed: command exited with status 1 (Slurm job" in proc.stderr, proc.stderr
    after = tree_snapshot(isolated)
    added = {p for p in after if p not in before}
    assert not any(p.startswith(("store/", "realisations/")) for p in added), added
    log = next(isolated.glob("logs/**/*.log"), None) or next(p for p in isolated.rglob("*.log"))
    assert "undefined_variable: unbound variable" in log.read_text()  # strict bash, as locally; output in the log


def test_two_concurrent_runs_submit_each_step_once(tmp_path: Path, sbatch_counter: SbatchCounter) -> None:
    exp = _experiment(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO), **sbatch_counter.env)
    runs = []
    for i in (1, 2):
        cwd = tmp_path / f"run{i}"
        cwd.mkdir()
        runs.append((cwd, subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp), "--slurm"], cwd=cwd,
                                           env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    for _, p in runs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert sbatch_counter.count() == 3
    for name in STEPS:
        assert os.readlink(runs[0][0] / "nix-workflow-output" / name) == \
            os.readlink(runs[1][0] / "nix-workflow-output" / name)


def test_jobs_in_flight_are_bounded_by_j(tmp_path: Path, sbatch_counter: SbatchCounter) -> None:
    """Each step counts the nixworkflow jobs Slurm has queued or running while it runs: with -j 1, only itself."""
    count = "squeue -h -o %j | grep -c ^nw- > $out/n; sleep 0.3"
    exp = _experiment(tmp_path, "from nixlib import output\n"
                      + "".join(f"s{i} = output('{count}; echo {i} >> $out/n')\n" for i in range(2)))
    nw("run", str(exp), "--slurm", "-j", "1", env=sbatch_counter.env, check=True)
    assert sbatch_counter.count() == 2
    for i in range(2):
        assert Path(f"nix-workflow-output/s{i}/n").read_text() == f"1\n{i}\n"


def test_ctrl_c_cancels_the_submitted_jobs(tmp_path: Path, sbatch_counter: SbatchCounter, isolated: Path) -> None:
    exp = _experiment(tmp_path, "from nixlib import output\nslow = output('echo started > $out/v; sleep 61.25')\n")
    before = tree_snapshot(isolated)
    env = dict(os.environ, PYTHONPATH=str(REPO), **sbatch_counter.env)
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp), "--slurm"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cluster = sbatch_counter.cluster
    job = _wait_for(lambda: cluster.client("squeue", "-h", "-t", "RUNNING", "-n", "nw-slow", "-o", "%i").stdout.strip())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode != 0 and "interrupted" in err, err
    state = cluster.client("scontrol", "show", "job", "-o", job).stdout
    assert "JobState=CANCELLED" in state, state
    assert not _processes_with("61.25")  # the job's processes are gone, not only its record
    after = tree_snapshot(isolated)
    assert not any(p.startswith(("store/", "realisations/")) for p in after if p not in before)


def test_resources_per_run_and_per_step_reach_the_job(tmp_path: Path, sbatch_counter: SbatchCounter) -> None:
    """The job sees its own allocation (SLURM_CPUS_PER_TASK), and --slurm-step overrides the run's option."""
    step = "s{i} = output('echo \"$SLURM_CPUS_PER_TASK\" > $out/cpus; echo {i} > $out/i')\n"
    exp = _experiment(tmp_path, "from nixlib import output\n" + "".join(step.format(i=i) for i in range(2)))
    nw("run", str(exp), "--slurm", "--slurm-cpus", "1", "--slurm-step", "s0=--cpus-per-task=2",
       env=sbatch_counter.env, check=True)
    assert Path("nix-workflow-output/s0/cpus").read_text() == "2\n"
    assert Path("nix-workflow-output/s1/cpus").read_text() == "1\n"


def test_slurm_step_naming_no_step_is_refused(tmp_path: Path) -> None:
    proc = nw("run", str(_experiment(tmp_path)), "--slurm", "--slurm-step", "trian=--gpus=1")
    assert proc.returncode == 1 and "this run has no step 'trian' (its steps: a, b, c)" in proc.stderr, proc.stderr
    assert not Path("nix-workflow-output/a").exists()


def test_slurm_options_without_slurm_are_refused(tmp_path: Path) -> None:
    proc = nw("run", str(_experiment(tmp_path)), "--slurm-partition", "gpu")
    assert proc.returncode == 1 and "add --slurm" in proc.stderr and not Path("nix-workflow-output/a").exists()


def test_slurm_without_the_client_commands_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = nw("run", str(_experiment(tmp_path)), "--slurm", env={"PATH": str(empty)})
    assert proc.returncode == 1 and "`sbatch` is not on PATH" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not Path("nix-workflow-output/a").exists()


# ---- `slurm:` in nixworkflow.yaml ---------------------------------------------------------------------------

ENV_STEP = ("{n} = output('echo \"$SLURM_CPUS_PER_TASK ${{SLURM_MEM_PER_NODE:-}}\" > $out/res; "
            "echo {n} {tag} > $out/t')\n")


def _resource_experiment(tmp_path: Path, yaml_text: str, tag: str = "1") -> Path:
    (tmp_path / "nixworkflow.yaml").write_text(yaml_text)
    return _experiment(tmp_path, "from nixlib import output\n" + "".join(
        ENV_STEP.format(n=n, tag=tag) for n in ("small", "big")))


def _job(name: str, cluster: cluster_fixtures.SlurmCluster) -> str:
    return cluster.client("scontrol", "show", "job", "-o", _record(name)["provenance"]["slurm"]["job_id"]).stdout


def test_yaml_resources_reach_each_job_and_hits_never_reach_slurm(tmp_path: Path, sbatch_counter: SbatchCounter,
                                                                   isolated: Path) -> None:
    """`enabled: true` runs on Slurm without --slurm; defaults and a step's own settings reach sbatch (as the job's
    allocation shows); an unquoted 1:30:00 is 90 minutes, not YAML's sexagesimal 5400; a re-run submits nothing."""
    exp = _resource_experiment(tmp_path, "slurm:\n  enabled: true\n  cpus: 1\n  mem: 100\n  time: 1:30:00\n  steps:\n"
                               "    big: {partition: debug, cpus: 2, mem: 200M, options: [--comment=nwbig]}\n")
    proc = nw("run", str(exp), env=sbatch_counter.env, check=True)
    assert sbatch_counter.count() == 2, proc.stderr
    assert Path("nix-workflow-output/small/res").read_text() == "1 100\n"
    assert Path("nix-workflow-output/big/res").read_text() == "2 200\n"
    small, big = _job("small", sbatch_counter.cluster), _job("big", sbatch_counter.cluster)
    assert "TimeLimit=01:30:00" in small and "NumCPUs=1 " in small and "MinMemoryNode=100M" in small, small
    assert all(f in big for f in ("TimeLimit=01:30:00", "NumCPUs=2 ", "MinMemoryNode=200M", "Partition=debug",
                                  "Comment=nwbig")), big
    shutil.rmtree("nix-workflow-output")
    again = nw("run", str(exp), env=sbatch_counter.env, check=True)
    assert sbatch_counter.count() == 2 and "cached 2" in again.stderr, again.stderr


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_precedence_cli_step_over_cli_over_yaml_step_over_yaml(tmp_path: Path, sbatch_counter: SbatchCounter) -> None:
    yaml_text = "slurm:\n  cpus: 1\n  steps:\n    big: {cpus: 2}\n"
    exp = _resource_experiment(tmp_path, yaml_text)
    nw("run", str(exp), "--slurm", env=sbatch_counter.env, check=True)  # the step's entry over the file's default
    assert Path("nix-workflow-output/small/res").read_text().split()[0] == "1"
    assert Path("nix-workflow-output/big/res").read_text().split()[0] == "2"
    exp = _resource_experiment(tmp_path, yaml_text, tag="2")  # new commands: resources are not in the key
    nw("run", str(exp), "--slurm", "--slurm-cpus", "1", "--slurm-step", "small=--cpus-per-task=2",
       env=sbatch_counter.env, check=True)
    assert Path("nix-workflow-output/big/res").read_text().split()[0] == "1"  # --slurm-cpus over the step's entry
    assert Path("nix-workflow-output/small/res").read_text().split()[0] == "2"  # --slurm-step over --slurm-cpus
    assert sbatch_counter.count() == 4


def test_a_partition_slurm_does_not_have_is_sbatchs_error_and_stores_nothing(
        tmp_path: Path, sbatch_counter: SbatchCounter, isolated: Path) -> None:
    (tmp_path / "nixworkflow.yaml").write_text("slurm:\n  steps:\n    bad: {partition: nosuch}\n")
    exp = _experiment(tmp_path, "from nixlib import output\nbad = output('echo x > $out/v')\n")
    before = tree_snapshot(isolated)
    proc = nw("run", str(exp), "--slurm", env=sbatch_counter.env)
    assert proc.returncode == 1 and "step 'bad' could not be submitted to Slurm" in proc.stderr, proc.stderr
    assert "nosuch" in proc.stderr or "invalid partition" in proc.stderr.lower(), proc.stderr
    assert not any(p.startswith(("store/", "realisations/")) for p in tree_snapshot(isolated) if p not in before)


def test_bad_yaml_slurm_values_are_named_by_file_line_and_key_before_anything_runs(tmp_path: Path) -> None:
    yaml_path = tmp_path / "nixworkflow.yaml"
    yaml_path.write_text("slurm:\n  enabled: true\n  steps:\n    a:\n      mem: 4GB\n")
    proc = nw("run", str(_experiment(tmp_path)))
    assert proc.returncode == 1, proc.stderr
    assert f"{yaml_path}:5: slurm.steps.a.mem: '4GB' is not a memory size" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not Path("nix-workflow-output/a").exists()

    yaml_path.write_text("slurm:\n  steps:\n    a: {cpus: 1}\n    bb: {cpus: 2}\n")
    proc = nw("run", str(_experiment(tmp_path)), "--slurm")
    assert proc.returncode == 1 and f"{yaml_path}:4: slurm.steps.bb: the experiment has no step 'bb' (did you mean " \
        "'b'?)" in proc.stderr, proc.stderr
    assert not Path("nix-workflow-output/a").exists()


def test_bad_command_line_values_are_refused_before_anything_runs(tmp_path: Path) -> None:
    exp = str(_experiment(tmp_path))
    for argv, words in ((["--slurm-time", "2h"], "--slurm-time: '2h' is not a Slurm time"),
                        (["--slurm-option=--requeue"], "'--requeue' cannot be used"),
                        (["--slurm-step", "a=--wait"], "'--wait' cannot be used")):
        proc = nw("run", exp, "--slurm", *argv)
        assert proc.returncode == 1 and words in proc.stderr, proc.stderr
        dry = nw("run", "-n", exp, "--slurm", *argv)  # a dry run refuses them too (before, it said all was well)
        assert dry.returncode == 1 and words in dry.stderr, dry.stdout + dry.stderr
    assert not Path("nix-workflow-output/a").exists()
    dry = nw("run", "-n", exp, "--slurm-option=--account=lab")  # without --slurm, as a real run says
    assert dry.returncode == 1 and "only apply to Slurm jobs" in dry.stderr, dry.stderr


def test_enabled_in_yaml_without_slurm_here_says_where_and_no_slurm_runs_here(tmp_path: Path) -> None:
    yaml_path = tmp_path / "nixworkflow.yaml"
    yaml_path.write_text("# Slurm for everyone who runs this experiment\nslurm: {enabled: true, cpus: 2}\n")
    empty = tmp_path / "bin"
    empty.mkdir()
    counting = tmp_path / "sbatch-never"
    (empty / "sbatch").write_text(f"#!/bin/sh\necho called >> {counting}\nexit 1\n")
    (empty / "sbatch").chmod(0o755)  # sbatch alone: scontrol and scancel are missing
    proc = nw("run", str(_experiment(tmp_path)), env={"PATH": str(empty)})
    assert proc.returncode == 1 and f"`enabled: true` under `slurm:` at {yaml_path}:2" in proc.stderr, proc.stderr
    assert "--no-slurm" in proc.stderr and not counting.exists() and not Path("nix-workflow-output/a").exists()
    exp = _experiment(tmp_path, "from nixlib import output\na = output('echo \"${SLURM_JOB_ID:-here}\" > $out/job')\n")
    nw("run", str(exp), "--no-slurm", check=True)
    assert Path("nix-workflow-output/a/job").read_text() == "here\n"  # ran in this process, not in a Slurm job


def test_showcase_nix_on_slurm_then_rerun_submits_nothing(sbatch_counter: SbatchCounter) -> None:
    """Issue 12: `nw run examples/showcase/experiment.nix --slurm` runs (Nix envs, a checkpoint consumed while its
    producer trains) and a re-run after deleting the output links submits nothing."""
    require_nix("nix-instantiate")
    showcase = REPO / "examples" / "showcase" / "experiment.nix"
    first = nw("run", str(showcase), "--slurm", "-j", "2", env=sbatch_counter.env, check=True, timeout=900)
    assert sbatch_counter.count() == 13 and "done 13 · cached 1" in first.stderr, first.stderr  # as test_nix_front
    assert _record("comparison")["provenance"]["slurm"]["job_id"].isdigit()
    results = json.loads(Path("nix-workflow-output/comparison/comparison.json").read_text())["results"]
    assert len(results) == 3
    shutil.rmtree("nix-workflow-output")
    again = nw("run", str(showcase), "--slurm", env=sbatch_counter.env, check=True, timeout=900)
    assert sbatch_counter.count() == 13 and "cached 14" in again.stderr and "done 0" in again.stderr, again.stderr
    assert json.loads(Path("nix-workflow-output/comparison/comparison.json").read_text())["results"] == results


def _wait_for(probe, timeout: float = 60) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail("timed out waiting for the Slurm job to run")


def _processes_with(marker: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and "pytest" not in cmd:
            found.append(cmd)
    return found


def test_ctrl_c_while_sbatch_answers_cancels_the_job_it_submitted(tmp_path: Path, sbatch_counter: SbatchCounter,
                                                                   isolated: Path) -> None:
    """Ctrl-C at the terminal signals nw's whole process group, sbatch included: an sbatch killed after Slurm
    accepted the job but before it printed the id left that job to Slurm, cancelled by nobody (here it then failed to
    launch in its removed build directory, JobLaunchFailure). A slow slurmctld answer is made here by an sbatch that
    waits 3 s after submitting."""
    marker = tmp_path / "submitted"
    slow = sbatch_counter.bin / "sbatch"
    real = shutil.which("sbatch", path=os.environ.get("PATH"))
    slow.write_text(f'#!/bin/sh\nid=$({real} "$@") || exit $?\necho "$id" > {marker}\nsleep 3\necho "$id"\n')
    exp = _experiment(tmp_path, "from nixlib import output\nslow = output('echo started > $out/v; sleep 61.75')\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), **sbatch_counter.env)
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp), "--slurm"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _wait_for(marker.exists)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    _, err = proc.communicate(timeout=90)
    assert proc.returncode != 0, err
    cluster = sbatch_counter.cluster
    job = marker.read_text().strip()
    _wait_for(lambda: "JobState=PENDING" not in cluster.client("scontrol", "show", "job", "-o", job).stdout)
    state = cluster.client("scontrol", "show", "job", "-o", job).stdout
    assert "JobState=CANCELLED" in state, state  # cancelled by nw, not left to run (or fail) on its own
    assert not _processes_with("61.75")

"""`nw run --slurm` probe (wave 11), against the real one-node test Slurm (tests/slurm_cluster.py): what users hit on a
cluster. A job scancel'ed while it runs stores nothing and a re-run runs it; a node that does not see the store or
the step's /nix/store paths fails the step saying so (not "signal 53", not "command exited with status 127");
`nw run` started inside a Slurm allocation (a driver job, an salloc shell) does not hand that allocation's SLURM_*
variables to its steps' jobs (an `srun` in the step asked for the driver's tasks); a pending job says it is pending
and why, instead of looking like a running one.

A node without the store or without /nix/store is simulated with an `sbatch` first on PATH that rewrites those
paths in what it submits (the job's working directory, its output file, its script): the node sees them elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import nixsets
from tests import slurm_cluster as cluster_fixtures
from tests.helpers import REPO, nw, tree_snapshot
from tests.nixcheck import require_nix
from tests.slurm_cluster import SbatchCounter
from tests.test_slurm import _wait_for

slurm_cluster = cluster_fixtures.slurm_cluster  # the fixtures, for pytest to find
sbatch_counter = cluster_fixtures.sbatch_counter


def _experiment(tmp_path: Path, text: str) -> Path:
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import Env, output\n" + text)
    return exp


def _stored(store: Path, before: dict) -> set[str]:
    return {p for p in tree_snapshot(store) if p not in before and p.startswith(("store/", "realisations/"))}


def _rewriting_sbatch(counter: SbatchCounter, old: str, new: str, args_too: bool) -> None:
    """An `sbatch` (in front of the counting one) that shows the job OLD at NEW: in its script, and with
    `args_too` in its options (--chdir, --output). The script itself is still read from where nw wrote it."""
    real = counter.bin / "sbatch"
    front = counter.bin / "front"
    front.mkdir()
    rewrite = f'args+=("${{a//{old}/{new}}}")' if args_too else 'args+=("$a")'
    (front / "sbatch").write_text(
        "#!/bin/bash\n"
        's="${@: -1}"\n'
        f"sed -i 's#{old}#{new}#g' \"$s\"\n"
        "args=()\n"
        f'for a in "${{@:1:$#-1}}"; do {rewrite}; done\n'
        f'exec {real} "${{args[@]}}" "$s"\n')
    (front / "sbatch").chmod(0o755)


def _env(counter: SbatchCounter, front: bool = False) -> dict[str, str]:
    env = dict(counter.env)
    if front:
        env["PATH"] = f"{counter.bin / 'front'}:{env['PATH']}"
    return env


def test_a_job_scancelled_while_it_runs_stores_nothing_and_a_rerun_runs_it(
        tmp_path: Path, sbatch_counter: SbatchCounter, isolated: Path) -> None:
    marker = tmp_path / "cancel-me"
    exp = _experiment(tmp_path, f"slow = output('echo started > $out/v; while [ ! -e {marker} ]; do sleep 0.2; done; "
                                "echo finished >> $out/v')\n")
    before = tree_snapshot(isolated)
    env = dict(os.environ, PYTHONPATH=str(REPO), **sbatch_counter.env)
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp), "--slurm"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cluster = sbatch_counter.cluster
    try:
        job = _wait_for(lambda: cluster.client("squeue", "-h", "-t", "RUNNING", "-n", "nw-slow", "-o",
                                               "%i").stdout.strip())
        cluster.client("scancel", job)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert f"step 'slow' failed: Slurm job {job} did not complete: it was cancelled" in err, err
    assert "Its log is kept at" in err and "Traceback" not in err, err
    assert not _stored(isolated, before)
    marker.touch()  # the re-run's job finishes at once
    again = nw("run", str(exp), "--slurm", env=sbatch_counter.env, check=True)
    assert sbatch_counter.count() == 2, again.stderr  # nothing was stored: it ran again
    assert Path("nix-workflow-output/slow/v").read_text() == "started\nfinished\n"


def test_a_node_that_does_not_see_the_store_is_named_not_a_bare_signal(
        tmp_path: Path, sbatch_counter: SbatchCounter, isolated: Path) -> None:
    """Slurm cannot chdir into $out or open the output file on such a node: the job FAILED with exit code 0:53 and
    nw said `it ended in state FAILED (signal 53)`, which told the user nothing about the missing shared store."""
    _rewriting_sbatch(sbatch_counter, str(isolated), str(tmp_path / "not-mounted-here"), args_too=True)
    exp = _experiment(tmp_path, "a = output('echo a > $out/v')\n")
    before = tree_snapshot(isolated)
    proc = nw("run", str(exp), "--slurm", env=_env(sbatch_counter, front=True))
    assert proc.returncode == 1 and sbatch_counter.count() == 1, proc.stderr
    assert "step 'a' failed: Slurm job" in proc.stderr, proc.stderr
    assert "failed before the step's command started" in proc.stderr, proc.stderr
    assert f"The store root {isolated} must be on a filesystem shared by this host and the compute nodes" \
        in proc.stderr, proc.stderr
    assert "signal 53" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not _stored(isolated, before)


def test_an_env_the_node_does_not_have_is_named_not_command_not_found(
        tmp_path: Path, sbatch_counter: SbatchCounter, isolated: Path) -> None:
    """The step's tools are /nix/store paths realised on the submitting host; a node without them (no shared
    /nix/store) failed the step with `command exited with status 127` and a `No such file or directory` in the log."""
    require_nix("nix-instantiate")
    nixsets.package_set(tmp_path / "pkgs", {"nwtool": f"1.0-{tmp_path.name}"})
    _rewriting_sbatch(sbatch_counter, "/nix/store/", "/nix/store-of-another-host/", args_too=False)
    exp = _experiment(tmp_path, f"tools = Env(file={str(tmp_path / 'pkgs' / 'default.nix')!r})\n"
                                "a = output(f\"{tools['nwtool']}/bin/nwtool > $out/v\")\n"
                                "b = output('nwtool > $out/v; echo b >> $out/v', env=tools)\n")
    before = tree_snapshot(isolated)
    proc = nw("run", str(exp), "--slurm", env=_env(sbatch_counter, front=True), timeout=300)
    assert proc.returncode == 1 and sbatch_counter.count() == 2, proc.stderr
    for step in ("a", "b"):
        assert f"step '{step}' failed: Slurm job" in proc.stderr, proc.stderr
    assert proc.stderr.count(f"the step's env is not on node {cluster_fixtures.NODE} (") >= 2, proc.stderr
    assert "/nix/store must be on a filesystem the compute nodes share" in proc.stderr, proc.stderr
    assert "status 127" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not _stored(isolated, before)
    again = nw("run", str(exp), "--slurm", env=sbatch_counter.env, check=True, timeout=300)  # nodes that have it
    assert Path("nix-workflow-output/b/v").read_text() == f"nwtool 1.0-{tmp_path.name}\nb\n", again.stderr


def test_a_run_inside_a_slurm_allocation_does_not_give_its_steps_that_allocation(
        tmp_path: Path, sbatch_counter: SbatchCounter) -> None:
    """`nw run --slurm` run from a driver job or an salloc shell has that allocation's SLURM_* variables; they
    reached every step's job, so an `srun` there asked for the driver's 8 tasks in a 1-task job and failed
    ("More processors requested than permitted"), and the step saw another job's node list."""
    exp = _experiment(tmp_path, "a = output('srun echo in-step > $out/v; "
                                "echo \"${SLURM_NODELIST:-none} ${SLURM_NTASKS:-none} $SLURM_JOB_ID\" > $out/env')\n")
    driver = {"SLURM_JOB_ID": "999999", "SLURM_JOBID": "999999", "SLURM_NTASKS": "8", "SLURM_NNODES": "2",
              "SLURM_NODELIST": "gpu[01-02]", "SLURM_TASKS_PER_NODE": "4(x2)", "SLURM_ARRAY_TASK_ID": "3"}
    proc = nw("run", str(exp), "--slurm", env={**sbatch_counter.env, **driver})
    assert proc.returncode == 0, proc.stderr
    out = Path("nix-workflow-output/a")
    assert (out / "v").read_text() == "in-step\n"
    job = json.loads(nw("show", "a", "--json", check=True).stdout)["provenance"]["slurm"]["job_id"]
    assert (out / "env").read_text() == f"none none {job}\n"  # its own job, none of the driver's


def test_a_pending_job_says_it_is_pending_and_why(tmp_path: Path, sbatch_counter: SbatchCounter,
                                                  isolated: Path) -> None:
    """A job held or waiting for resources looked like a running step (`still running: a (2h)`): the user could not
    tell a queue problem from a slow step. nw says when the job is pending and Slurm's reason, then when it runs."""
    go = tmp_path / "go"
    exp = _experiment(tmp_path, f"a = output('while [ ! -e {go} ]; do sleep 0.2; done; echo a > $out/v')\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), **sbatch_counter.env)
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp), "--slurm", "--slurm-option=--hold"],
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cluster = sbatch_counter.cluster
    try:
        job = _wait_for(lambda: cluster.client("squeue", "-h", "-t", "PENDING", "-n", "nw-a", "-o",
                                               "%i").stdout.strip())
        log = _wait_for(lambda: next((p for p in (isolated / "logs").glob("*.log")
                                      if "is pending" in p.read_text()), None))
        assert f"nixworkflow: Slurm job {job} is pending (JobHeldUser)" in log.read_text(), log.read_text()
        cluster.client("scontrol", "release", job)
        _wait_for(lambda: "is running on" in log.read_text())
        go.touch()
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"[a] nixworkflow: Slurm job {job} is pending (JobHeldUser)\n" in out, out  # the step's output, echoed
    assert f"[a] nixworkflow: Slurm job {job} is running on {cluster_fixtures.NODE}\n" in out, out
    assert Path("nix-workflow-output/a/v").read_text() == "a\n"


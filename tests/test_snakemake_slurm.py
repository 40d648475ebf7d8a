"""`snakemake --executor nixworkflow --nixworkflow-backend slurm` against a real one-node Slurm
(tests/slurm_cluster.py), through the real snakemake-executor-plugin-slurm: hits are restored without any
`sbatch`, misses are submitted by the Slurm plugin, run on the node in their env and are stored with the
Slurm job id; the store's lock (not Slurm) dedupes two concurrent runs; a failed job stores nothing.

Submissions are counted by an `sbatch` first on PATH that logs each call and runs the real one. The Slurm
plugin's jobstep clears the job's SLURM_* variables before its `srun`, so SLURM_CONF (how the test cluster
is found; a real cluster has /etc/slurm/slurm.conf) is put back by an `srun` wrapper beside it."""

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

from tests import nixsets
from tests import slurm_cluster as cluster_fixtures
from tests.helpers import REPO, nw, tree_snapshot
from tests.nixcheck import require_nix
from tests.slurm_cluster import SbatchCounter

pytest.importorskip("snakemake_executor_plugin_slurm")

slurm_cluster = cluster_fixtures.slurm_cluster  # the fixtures, for pytest to find
sbatch_counter = cluster_fixtures.sbatch_counter

# The options a user of the Slurm plugin has anyway (fast polling for the test), plus the one nixworkflow adds.
SLURM = ["--executor", "nixworkflow", "--nixworkflow-backend", "slurm", "-j", "4", "--slurm-no-account",
         "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1"]

# Two independent jobs (submitted together); each writes the id of the Slurm job it runs in.
SNAKEFILE = """
rule all:
    input: expand("out/{x}.txt", x=["one", "two"])

rule w:
    output: "out/{x}.txt"
    shell: "echo {wildcards.x} > {output}; echo ${{SLURM_JOB_ID:-not-in-slurm}} >> {output}"
"""


@pytest.fixture
def slurm(sbatch_counter: SbatchCounter) -> SbatchCounter:
    srun = shutil.which("srun")
    assert srun is not None
    wrapper = sbatch_counter.bin / "srun"
    wrapper.write_text(f'#!/bin/sh\nSLURM_CONF={sbatch_counter.cluster.conf} exec {srun} "$@"\n')
    wrapper.chmod(0o755)
    return sbatch_counter


def snakemake(wf: Path, slurm: SbatchCounter, *args: str, timeout: float = 240,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), **slurm.env, **(env or {}))
    return subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", *SLURM, *args], cwd=wf, env=env,
                          text=True, capture_output=True, timeout=timeout)


def workflow(where: Path, text: str = SNAKEFILE) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "Snakefile").write_text(text)
    return where


def outputs(wf: Path) -> dict[str, bytes]:
    return {str(p.relative_to(wf)): p.read_bytes() for p in sorted((wf / "out").rglob("*")) if p.is_file()}


def test_misses_run_on_slurm_once_and_a_rerun_submits_nothing(tmp_path: Path, slurm: SbatchCounter) -> None:
    wf = workflow(tmp_path / "wf")
    proc = snakemake(wf, slurm)
    assert proc.returncode == 0, proc.stderr
    assert slurm.count() == 2, proc.stderr  # one sbatch per job; `rule all` runs nowhere
    first = outputs(wf)
    for name in ("one", "two"):
        record = json.loads(nw("show", f"out/{name}.txt", "--json", cwd=wf, check=True).stdout)
        job = record["provenance"]["slurm"]["job_id"]
        assert record["provenance"]["slurm"] == {"job_id": job, "node": cluster_fixtures.NODE}  # where it ran
        assert first[f"out/{name}.txt"] == f"{name}\n{job}\n".encode()  # it ran inside the recorded Slurm job
        state = slurm.cluster.client("scontrol", "show", "job", "-o", job).stdout
        assert "JobState=COMPLETED" in state, state

    shutil.rmtree(wf / "out")
    again = snakemake(wf, slurm)
    assert again.returncode == 0, again.stderr
    assert slurm.count() == 2, again.stderr  # every job restored in the submitting process: no sbatch at all
    assert again.stderr.count("nixworkflow: restored the outputs") == 2
    assert outputs(wf) == first


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_sbatch_options_from_the_environment_cannot_run_a_second_copy(tmp_path: Path, slurm: SbatchCounter) -> None:
    """The Slurm plugin runs sbatch with Snakemake's environment, where SBATCH_ARRAY_INX is --array (three tasks
    writing one output) and SBATCH_REQUEUE --requeue: the backend drops them. One job, one task, not requeueable."""
    wf = workflow(tmp_path / "wf", 'rule one:\n    output: "out/one.txt"\n'
                                   '    shell: "echo ${{SLURM_JOB_ID:-not-in-slurm}} >> {output}"\n')
    proc = snakemake(wf, slurm, env={"SBATCH_ARRAY_INX": "0-2", "SBATCH_REQUEUE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert slurm.count() == 1, proc.stderr
    job = json.loads(nw("show", "out/one.txt", "--json", cwd=wf, check=True).stdout)["provenance"]["slurm"]["job_id"]
    shown = slurm.cluster.client("scontrol", "show", "job", "-o", job).stdout
    assert len(shown.splitlines()) == 1 and "ArrayTaskId=" not in shown and "Requeue=0" in shown, shown
    assert (wf / "out" / "one.txt").read_text() == f"{job}\n"


def test_slurm_requeue_is_refused_before_anything_is_submitted(tmp_path: Path) -> None:
    """After a node failure Slurm would start the job again while the cut-off node may still write its outputs."""
    wf = workflow(tmp_path / "wf")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", *SLURM, "--slurm-requeue"], cwd=wf,
                          text=True, capture_output=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 1, proc.stderr
    assert "nixworkflow: '--slurm-requeue' cannot be used with --nixworkflow-backend: Slurm could start a second " \
        "copy writing into the same $out" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (wf / "out").exists()


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_failing_job_stores_nothing_and_is_reported_by_the_slurm_plugin(tmp_path: Path, slurm: SbatchCounter,
                                                                           isolated: Path) -> None:
    wf = workflow(tmp_path / "wf", 'rule bad:\n    output: "out/bad.txt"\n'
                                   '    shell: "echo partial > {output}; exit 3"\n')
    before = tree_snapshot(isolated) if isolated.exists() else {}
    proc = snakemake(wf, slurm)
    assert proc.returncode != 0 and slurm.count() == 1
    assert "Error in rule bad" in proc.stderr and "SLURM-job" in proc.stderr, proc.stderr  # the plugin's report
    after = tree_snapshot(isolated)
    added = {p for p in after if p not in before}
    assert not any(p.startswith(("store/", "realisations/")) for p in added), added


def test_a_job_the_plugin_cannot_see_is_not_stored_before_slurm_says_it_completed(tmp_path: Path,
                                                                                 slurm: SbatchCounter,
                                                                                 isolated: Path) -> None:
    """The Slurm plugin reports a job whose status reads UNKNOWN as a success ("assume it is finished"). Here
    squeue says UNKNOWN while the job waits and runs; the job then fails. Staged at the plugin's word, the stale
    file already in the working directory (or the job's partial output) would be stored as the job's result;
    the backend asks Slurm itself and stores nothing."""
    real = shutil.which("squeue")
    assert real is not None
    squeue = slurm.bin / "squeue"
    squeue.write_text(f'#!/bin/sh\n{real} "$@" | sed -e "s/|PENDING$/|UNKNOWN/" -e "s/|RUNNING$/|UNKNOWN/" '
                      '-e "s/|CONFIGURING$/|UNKNOWN/"\n')
    squeue.chmod(0o755)
    wf = workflow(tmp_path / "wf", 'rule bad:\n    output: "out/bad.txt"\n'
                                   '    shell: "echo partial > {output}; sleep 5; exit 3"\n')
    (wf / "out").mkdir()
    (wf / "out" / "bad.txt").write_text("stale, written by nobody's job\n")
    before = tree_snapshot(isolated) if isolated.exists() else {}
    proc = snakemake(wf, slurm, "--forcerun", "bad")
    assert slurm.count() == 1, proc.stderr
    assert proc.returncode != 0, proc.stderr
    assert "Slurm says it ended in state FAILED" in proc.stderr, proc.stderr  # the plugin said done
    after = tree_snapshot(isolated)
    added = {p for p in after if p not in before}
    assert not any(p.startswith(("store/", "realisations/")) for p in added), added


def test_ctrl_c_cancels_a_job_the_plugin_called_done_and_returns_once_it_has_ended(tmp_path: Path,
                                                                                  slurm: SbatchCounter,
                                                                                  isolated: Path) -> None:
    """squeue says UNKNOWN, so the Slurm plugin reports the running job done and stops polling it (it is no longer
    among the jobs its cancel would scancel) while the backend asks Slurm whether it has ended. Ctrl-C then: the
    backend cancels every job of the run still in Slurm and waits until Slurm says each has ended before the
    recipe's lock is released and Snakemake exits; nothing is stored."""
    real_squeue, real_scontrol = shutil.which("squeue"), shutil.which("scontrol")
    assert real_squeue is not None and real_scontrol is not None
    (slurm.bin / "squeue").write_text(f'#!/bin/sh\n{real_squeue} "$@" | sed -e "s/|RUNNING$/|UNKNOWN/"\n')
    asked = tmp_path / "scontrol-show-job"  # the backend asks Slurm itself: the plugin has called the job done
    (slurm.bin / "scontrol").write_text(f'#!/bin/sh\ncase "$*" in *"show job"*) touch {asked};; esac\n'
                                        f'exec {real_scontrol} "$@"\n')
    for tool in ("squeue", "scontrol"):
        (slurm.bin / tool).chmod(0o755)
    wf = workflow(tmp_path / "wf", 'rule slow:\n    output: "out/slow.txt"\n'
                                   '    shell: "echo started > {output}; sleep 67.25"\n')
    before = tree_snapshot(isolated) if isolated.exists() else {}
    env = dict(os.environ, PYTHONPATH=str(REPO), **slurm.env)
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--nocolor", *SLURM], cwd=wf, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (asked.exists() and _processes_with("67.25")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.1)
        job = slurm.cluster.client("squeue", "-h", "-t", "RUNNING", "-o", "%i").stdout.split()[0]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, err
    state = slurm.cluster.client("scontrol", "show", "job", "-o", job).stdout
    assert "JobState=CANCELLED" in state, state  # ended when Snakemake exited: not running, not still COMPLETING
    assert not _processes_with("67.25"), err
    after = tree_snapshot(isolated)
    assert not any(p.startswith(("store/", "realisations/")) for p in after if p not in before)


def _processes_with(text: str) -> list[str]:
    """Command lines of live processes containing `text` (not this test's own)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and "pytest" not in cmd and "snakemake" not in cmd:
            found.append(cmd)
    return found


def test_two_concurrent_runs_submit_each_job_once_between_them(tmp_path: Path, slurm: SbatchCounter) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), **slurm.env)
    runs = []
    for i in (1, 2):
        wf = workflow(tmp_path / f"wf{i}")
        runs.append((wf, subprocess.Popen([sys.executable, "-m", "snakemake", "--nocolor", *SLURM], cwd=wf, env=env,
                                          text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    for _, p in runs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    assert slurm.count() == 2  # the store's lock, held from before sbatch until stored, dedupes
    assert outputs(runs[0][0]) == outputs(runs[1][0])


# A local rule (run on the submitting host in a cluster run) in a Nix env, downstream of a rule run on Slurm.
LOCAL_SNAKEFILE = """
localrules: gather

rule all:
    input: "out/gathered.txt"

rule w:
    output: "out/part.txt"
    shell: "echo part > {output}; echo ${{SLURM_JOB_ID:-not-in-slurm}} >> {output}"

rule gather:
    input: "out/part.txt"
    output: "out/gathered.txt"
    shell: "nwtool > {output}; cat {input} >> {output}; echo ${{SLURM_JOB_ID:-not-in-slurm}} >> {output}"
"""


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_local_rule_runs_here_in_its_env_is_stored_and_restored(tmp_path: Path, slurm: SbatchCounter) -> None:
    """Snakemake runs `localrules` with its own local executor in a cluster run; with nixworkflow they go
    through nixworkflow's: in their Nix env (`nwtool` exists only there), on this host (no Slurm job), stored
    under the recipe's lock, and restored with the rest on a re-run."""
    require_nix("nix-instantiate")
    assert shutil.which("nwtool") is None
    src = nixsets.package_set(tmp_path / "set" / "pkgs", {"nwtool": "1.0"})
    url, sha256 = nixsets.tarball(src, tmp_path / "pkgs.tar.gz")
    wf = workflow(tmp_path / "wf", LOCAL_SNAKEFILE)
    (wf / "nixworkflow.yaml").write_text(f'nixpkgs: {{url: {url}, sha256: "{sha256}"}}\n'
                                         "envs:\n  tools: {packages: [nwtool]}\nsteps: {gather: tools}\n")
    proc = snakemake(wf, slurm)
    assert proc.returncode == 0, proc.stderr
    assert slurm.count() == 1, proc.stderr  # rule w only: gather (and all) ran here
    part = json.loads(nw("show", "out/part.txt", "--json", cwd=wf, check=True).stdout)
    job = part["provenance"]["slurm"]["job_id"]
    first = outputs(wf)
    assert first["out/gathered.txt"] == f"nwtool 1.0\npart\n{job}\nnot-in-slurm\n".encode()
    gathered = json.loads(nw("show", "out/gathered.txt", "--json", cwd=wf, check=True).stdout)
    assert "slurm" not in gathered["provenance"], gathered  # realised here, by nixworkflow's local executor

    shutil.rmtree(wf / "out")
    again = snakemake(wf, slurm)
    assert again.returncode == 0, again.stderr
    assert slurm.count() == 1, again.stderr  # nothing submitted
    assert again.stderr.count("nixworkflow: restored the outputs") == 2, again.stderr
    assert outputs(wf) == first


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
@pytest.mark.slow  # about 90 s: the Slurm plugin polls every 1, 11, 21... s while a job of the chain runs
def test_showcase_runs_on_slurm_and_reruns_with_no_submission(tmp_path: Path, slurm: SbatchCounter) -> None:
    require_nix("nix-instantiate")
    examples = tmp_path / "checkout" / "examples"
    shutil.copytree(REPO / "examples" / "snakemake", examples / "snakemake")
    shutil.copytree(REPO / "examples" / "showcase", examples / "showcase",
                    ignore=shutil.ignore_patterns("nix-workflow-output", "__pycache__"))
    wf = examples / "snakemake"
    proc = snakemake(wf, slurm, timeout=600)
    assert proc.returncode == 0, proc.stderr
    submitted = slurm.count()
    assert submitted >= 5, proc.stderr
    results = {p.relative_to(wf): p.read_bytes() for p in (wf / "results").rglob("*") if p.is_file()}
    shutil.rmtree(wf / "results")
    again = snakemake(wf, slurm)
    assert again.returncode == 0, again.stderr
    assert slurm.count() == submitted, again.stderr
    assert {p.relative_to(wf): p.read_bytes() for p in (wf / "results").rglob("*") if p.is_file()} == results


@pytest.mark.parametrize(("backend", "message"), [
    ("nosuch", "no Snakemake executor plugin 'nosuch' is installed (pip install snakemake-executor-plugin-nosuch)"),
    ("local", "a backend is a remote executor plugin"),
])
def test_a_backend_that_is_not_a_remote_executor_plugin_is_refused(tmp_path: Path, backend: str,
                                                                    message: str) -> None:
    wf = workflow(tmp_path / "wf")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-j", "1", "--executor", "nixworkflow",
                           "--nixworkflow-backend", backend], cwd=wf, text=True, capture_output=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 1 and f"nixworkflow: --nixworkflow-backend {backend}: " in proc.stderr, proc.stderr
    assert message in proc.stderr and not (wf / "out").exists()

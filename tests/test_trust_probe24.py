"""Trust probe (wave 24) of the two scale-out paths: remote caches and Slurm.

Real parts only: the real `nw` CLI, a real directory remote and SeaweedFS S3 (tests/test_remote.py's fixtures),
the real one-node Slurm (tests/slurm_cluster.py). The rule probed: nothing a failed, unfinished or still-written
step produced, and nothing a remote holds that does not verify, is ever stored or served."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import slurm_cluster as cluster_fixtures
from tests import test_remote as remote_fixtures
from tests.helpers import REPO, nw, tree_snapshot
from tests.slurm_cluster import SbatchCounter
from tests.test_remote import Host, Remote, experiment, ran

slurm_cluster = cluster_fixtures.slurm_cluster  # the fixtures, for pytest to find
sbatch_counter = cluster_fixtures.sbatch_counter
s3_endpoint = remote_fixtures.s3_endpoint
remote = remote_fixtures.remote
keys = remote_fixtures.keys


def _stored(store: Path, before: dict) -> set[str]:
    return {p for p in tree_snapshot(store) if p not in before and p.startswith(("store/", "realisations/"))}


def _exp(tmp_path: Path, text: str) -> Path:
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\n" + text)
    return exp


def _running(word: str) -> bool:
    """Whether a live process's command line names `word` (the daemon's shell, found without its pid)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if word.encode() in cmdline.read_bytes():
                return True
        except OSError:
            continue
    return False


# ---- Slurm ------------------------------------------------------------------------------------------------------

GATE_WAIT = "until [ -e {gate} ]; do sleep 0.1; done"  # (the test opens the gate once the run has ended)


@pytest.mark.parametrize("daemon", [f"{GATE_WAIT}; echo late >> v; echo evil > w",
                                    f"exec 3>>v; {GATE_WAIT}; echo late >&3"], ids=["by-name", "open-fd"])
def test_slurm_a_daemon_the_job_left_behind_never_changes_what_was_stored(
        tmp_path: Path, sbatch_counter: SbatchCounter, isolated: Path, daemon: str) -> None:
    """The job's command exits 0 while a `setsid` daemon it started keeps writing into $out (by name, or through
    a descriptor it opened before the step ended). The test cluster uses proctrack/linuxproc, which does not track
    it, so Slurm says COMPLETED. The stored object must be what the step had produced when it ended and never
    change: a re-run is a hit serving it (before the fix the daemon wrote into the stored object, the re-run found
    it changed and ran the step again, and the run's output link showed `late` once the daemon wrote). The daemon
    writes only once the test opens its gate, after the run: one that wrote while its job still ran (a loaded
    machine can take seconds to end a job) wrote into the step's output, which is no escape."""
    late, gate = tmp_path / "late-done", tmp_path / "gate"
    exp = _exp(tmp_path, f"d = output('echo early > v; setsid sh -c \"{daemon.format(gate=gate)}; touch {late}\" "
                         "</dev/null >/dev/null 2>&1 & echo done')\n")
    nw("run", str(exp), "-q", "--slurm", env=sbatch_counter.env, check=True)
    survived = _running(str(gate))  # (the node is this machine)
    gate.touch()
    deadline = time.monotonic() + 10  # a daemon that lived on is done moments after the gate opened
    while _running(str(gate)) and time.monotonic() < deadline:
        time.sleep(0.2)
    out = Path("nix-workflow-output/d")
    assert not survived and not late.exists(), "the daemon the step left behind was not killed"
    assert sorted(p.name for p in out.iterdir()) == ["v"] and (out / "v").read_text() == "early\n"
    again = nw("run", str(exp), "-q", "--slurm", env=sbatch_counter.env, check=True)
    assert sbatch_counter.count() == 1, again.stderr  # a hit: the stored object is unchanged
    assert (out / "v").read_text() == "early\n"
    assert nw("verify").returncode == 0


@pytest.mark.parametrize("end", ["exit 3", "kill -9 $$"], ids=["exit-3", "killed"])
def test_slurm_a_job_that_wrote_its_outputs_then_failed_stores_nothing(
        tmp_path: Path, sbatch_counter: SbatchCounter, isolated: Path, end: str) -> None:
    """The step's command writes a complete-looking $out, then exits non-zero or is killed by a signal: the job is
    a failure whatever its $out holds, and nothing of it is stored."""
    exp = _exp(tmp_path, f"f = output('echo complete-looking > $out/v; {end}')\n")
    before = tree_snapshot(isolated)
    proc = nw("run", str(exp), "--slurm", env=sbatch_counter.env)
    assert proc.returncode == 1, proc.stderr
    assert "step 'f' failed: command exited with status" in proc.stderr and "Traceback" not in proc.stderr
    assert ("status 3 " if end == "exit 3" else "status 137 ") in proc.stderr, proc.stderr
    assert not _stored(isolated, before)
    assert not Path("nix-workflow-output/f").exists()

@pytest.mark.long  # (~60-90 s: Slurm's time limits are whole minutes; in `make test-long`)
def test_slurm_a_job_killed_by_its_time_limit_after_writing_its_outputs_stores_nothing(
        tmp_path: Path, sbatch_counter: SbatchCounter, isolated: Path) -> None:
    """The step writes its whole output, then outlives its one-minute limit: Slurm ends it as TIMEOUT. Nothing of
    it may be stored (its $out looks complete), and the failure says it ran out of time."""
    exp = _exp(tmp_path, "t = output('echo complete-looking > $out/v; sleep 600')\n")
    before = tree_snapshot(isolated)
    proc = nw("run", str(exp), "--slurm", "--slurm-time=1", env=sbatch_counter.env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "did not complete: it ran out of time" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not _stored(isolated, before)
    assert not Path("nix-workflow-output/t").exists()


# ---- remote caches ----------------------------------------------------------------------------------------------

def _record_keys(remote: Remote) -> list[str]:
    return [k for k in remote.keys() if k.startswith("realisations/")]


def _show(host: Host, step: str) -> dict:
    return json.loads(host.nw("show", step, "--json", check=True).stdout)


def test_remote_a_record_signed_by_another_key_of_a_trusted_keys_name_is_ignored(
        tmp_path: Path, keys: dict[str, str]) -> None:
    """Someone who can write the remote makes their own key pair under the trusted key's name (`k1`) and signs the
    step's record with it. The name matches, the key does not: B ignores it and builds."""
    remote = Remote("file", tmp_path, None)
    exp, count = experiment(tmp_path)
    impostor = tmp_path / "impostor"
    impostor.mkdir()
    nw("key", "generate", "k1", cwd=impostor, check=True)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    a.run(exp, "--push", "--secret-key-file", str(impostor / "k1.sec"), step="data")
    assert json.loads(remote.read(_record_keys(remote)[0]))["sig"].startswith("k1:")
    second = b.run(exp, step="data")
    assert ran(count) == ["data", "data"] and "is not by a trusted key or does not match" in second.stderr
    assert "substituted" not in _show(b, "data")["provenance"]


def test_remote_a_validly_signed_record_filed_under_another_steps_key_is_never_served(
        tmp_path: Path, remote: Remote, keys: dict[str, str]) -> None:
    """The signed record of `data` is copied over `model`'s record name on the remote (the bytes are exactly what
    k1 signed): `model` must not be served `data`'s output. The signature covers the key inside the record, and a
    record whose key is not its name is refused."""
    exp, count = experiment(tmp_path)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    a.run(exp, "--push", "--secret-key-file", keys["k1"])
    data_rk, model_rk = _show(a, "data")["resolved_key"], _show(a, "model")["resolved_key"]
    remote.write(f"realisations/{model_rk}.json", remote.read(f"realisations/{data_rk}.json"))
    second = b.run(exp)
    assert ran(count) == ["data", "model", "model"], second.stderr  # data substituted, model rebuilt
    assert (b.cwd / "nix-workflow-output/model/y").read_text() == "hello\nabc"
    assert "substituted" not in _show(b, "model")["provenance"]
    assert b.nw("verify").returncode == 0


def test_remote_a_truncated_object_under_a_valid_record_is_rejected_and_repaired_by_the_next_push(
        tmp_path: Path, remote: Remote, keys: dict[str, str]) -> None:
    """The record verifies, its object on the remote was cut in half (a failed copy, a full disk). B stores nothing
    of it, builds, and its push replaces the bad copy, so C substitutes the step."""
    exp, count = experiment(tmp_path)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    a.run(exp, "--push", "--secret-key-file", keys["k1"], step="data")
    (obj,) = [k for k in remote.keys() if k.startswith("nar/")]
    whole = remote.read(obj)
    remote.write(obj, whole[:len(whole) // 2])
    second = b.run(exp, "--push", "--secret-key-file", keys["k1"], step="data")
    assert ran(count) == ["data", "data"], second.stderr
    assert "warning: not using" in second.stderr and "Traceback" not in second.stderr
    assert "substituted" not in _show(b, "data")["provenance"]
    assert remote.read(obj) != whole[:len(whole) // 2]  # B's (deterministic) build replaced the bad copy
    c = Host(tmp_path, "c", remote, keys["k1.pub"])
    third = c.run(exp, step="data")
    assert ran(count) == ["data", "data"], third.stderr
    assert (c.cwd / "nix-workflow-output/data/d/f").read_text() == "abc"


def test_remote_a_pull_killed_mid_object_leaves_nothing_and_the_next_run_pulls_it_whole(
        tmp_path: Path, keys: dict[str, str]) -> None:
    """B's download of the object is SIGKILLed with part of it read (NIX_WORKFLOW_FAULT=remote-object-read: this
    used to be a FIFO the test fed half of, which a pull now refuses as no file, test_remote_probe25). Nothing of
    the part may be stored or served: the next run pulls the object whole and verifies it."""
    remote = Remote("file", tmp_path, None)
    exp, count = experiment(tmp_path)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    a.run(exp, "--push", "--secret-key-file", keys["k1"], step="data")
    env = dict(os.environ, PYTHONPATH=str(REPO), NIX_WORKFLOW_FAULT="remote-object-read", **b.env)
    proc = subprocess.run([sys.executable, "-m", "nixlib.cli", "run", str(exp), "data", "-q", "--remote", remote.url],
                          cwd=b.cwd, env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert not (b.store / "realisations").exists() or not any((b.store / "realisations").rglob("*.json"))
    second = b.run(exp, step="data")
    assert ran(count) == ["data"], second.stderr  # substituted, not built
    assert (b.cwd / "nix-workflow-output/data/d/f").read_text() == "abc"
    assert a.objects() == b.objects()
    assert b.nw("verify").returncode == 0


def test_remote_a_push_killed_between_its_objects_and_its_record_shows_no_record(
        tmp_path: Path, remote: Remote, keys: dict[str, str]) -> None:
    """A's push is SIGKILLed after its objects are up and before its record: another host sees no result (it
    builds), and never a record naming objects that are not there."""
    exp, count = experiment(tmp_path)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    killed = a.run(exp, "--push", "--secret-key-file", keys["k1"], step="data", check=False,
                   env={"NIX_WORKFLOW_FAULT": "remote-objects-pushed", "NIX_WORKFLOW_LEASE_SECONDS": "1"})
    assert killed.returncode == -9, killed.stderr
    assert not _record_keys(remote) and any(k.startswith("nar/") for k in remote.keys())
    b.run(exp, step="data", env={"NIX_WORKFLOW_LEASE_POLL": "0.1"})
    assert ran(count) == ["data", "data"]
    assert "substituted" not in _show(b, "data")["provenance"]


def test_remote_two_hosts_pushing_different_bytes_for_one_key_never_mix_results(
        tmp_path: Path, keys: dict[str, str]) -> None:
    """A non-deterministic step: A and B each build it (different bytes, same key) and push; A's record wins, B's
    downstream step is pushed too. A third host must get a downstream result made from the very upstream object
    it was served, never B's downstream over A's upstream."""
    remote = Remote("file", tmp_path, None)
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\n"
                   "data = output('head -c 16 /dev/urandom | od -An -tx1 > $out/x')\n"
                   "model = output(f'cat {data}/x > $out/y')\n")
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    a.run(exp, "--push", "--secret-key-file", keys["k1"], step="data")
    b.nw("run", str(exp), "-q", check=True)  # no remote: its own random data
    pushed = b.nw("push", "model", "--remote", remote.url, "--secret-key-file", keys["k1"], check=True)
    assert "already there: data" in pushed.stdout and "pushed: model" in pushed.stdout, pushed.stdout
    c = Host(tmp_path, "c", remote, keys["k1.pub"])
    c.run(exp)
    x = (c.cwd / "nix-workflow-output/data/x").read_text()
    assert x == (a.cwd / "nix-workflow-output/data/x").read_text()  # A's record won
    assert (c.cwd / "nix-workflow-output/model/y").read_text() == x
    assert "substituted" not in _show(c, "model")["provenance"]  # B's model is of another data object
    assert c.nw("verify").returncode == 0

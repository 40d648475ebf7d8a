"""A real one-node Slurm cluster for the tests: munged, slurmctld and slurmd with a generated config.

Everything lives in a fresh directory under /tmp (short paths: the munge socket is a Unix socket); the
daemons use free ports, so a second cluster (another xdist worker) does not collide, and the client
commands find the cluster through SLURM_CONF. Needs root (the daemons run as root, jobs as the caller)
and the Debian packages `slurm-wlm` and `munge`; without them the tests skip, or fail when
NW_REQUIRE_SLURM=1 (CI).

    from tests.slurm_cluster import slurm_cluster, sbatch_counter  # noqa: F401  (fixtures)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "scontrol", "scancel", "sinfo", "squeue")
NODE = "nwnode"
START_TIMEOUT = 60.0


@dataclass
class SlurmCluster:
    """A running cluster: its directory, config, and the environment its client commands need."""

    dir: Path
    conf: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def client(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster."""
        return subprocess.run(list(argv), env=dict(os.environ, **self.env), text=True, capture_output=True,
                              timeout=30)

    def logs(self) -> str:
        """The daemons' logs (tails), for a failure message."""
        parts = []
        for name in ("munged.out", "slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
            p = self.dir / name
            if p.exists():
                parts.append(f"--- {name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(parts)


def _unavailable() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if os.geteuid() != 0:
        return "needs root to start munged, slurmctld and slurmd (run as root, as CI does with NW_REQUIRE_SLURM=1)"
    missing = [b for b in DAEMONS + CLIENTS if shutil.which(b) is None and not os.access(f"/usr/sbin/{b}", os.X_OK)]
    if missing:
        return (f"Slurm is not installed (missing {', '.join(missing)}): on Debian, apt-get install slurm-wlm munge "
                "(scripts/setup.sh does it as root)")
    return None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("NW_REQUIRE_SLURM") == "1":
        pytest.fail(f"{reason} (NW_REQUIRE_SLURM=1 makes a missing Slurm a failure)")
    pytest.skip(reason)


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _free_ports(n: int) -> list[int]:
    """`n` distinct ports that are free right now (bound and released; the daemons bind them next)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _memory_mb() -> int:
    """Half the machine's memory in MB: slurmd refuses a node that claims more than it has."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return max(256, int(line.split()[1]) // 1024 // 2)
    return 1024


def write_config(d: Path) -> Path:
    """A minimal slurm.conf in `d`: one node with this machine's CPUs, no accounting, everything in `d`."""
    ctld_port, slurmd_port = _free_ports(2)
    host = socket.gethostname().split(".")[0]
    (d / "state").mkdir()
    (d / "spool").mkdir()
    conf = d / "slurm.conf"
    conf.write_text(f"""\
ClusterName=nwtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.sock
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_min_interval=0,batch_sched_delay=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def _start(cluster: SlurmCluster, name: str, argv: list[str]) -> None:
    out = open(cluster.dir / f"{name}.out", "wb")  # noqa: SIM115  (closed with the process)
    cluster.procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True))
    out.close()


def start_cluster() -> SlurmCluster:
    """Start munged, slurmctld and slurmd; return once the node is idle (or raise with the daemons' logs)."""
    d = Path(tempfile.mkdtemp(prefix="nw-slurm-"))
    d.chmod(0o755)
    key = d / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    cluster = SlurmCluster(d, write_config(d))
    try:
        _start(cluster, "munged", [_binary("munged"), "--foreground", "--force", "-S", f"{d}/munge.sock",
                                   "--key-file", str(key), "--pid-file", f"{d}/munged.pid",
                                   "--log-file", f"{d}/munged.log", "--seed-file", f"{d}/munged.seed"])
        _wait(cluster, lambda: (d / "munge.sock").exists(), "munged to create its socket")
        _start(cluster, "slurmctld", [_binary("slurmctld"), "-D", "-f", str(cluster.conf)])
        _start(cluster, "slurmd", [_binary("slurmd"), "-D", "-f", str(cluster.conf), "-N", NODE])
        _wait(cluster, lambda: cluster.client("sinfo", "-h", "-o", "%T").stdout.strip() == "idle",
              "the node to be idle (sinfo)")
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def _wait(cluster: SlurmCluster, ready: object, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        dead = [p.args[0] for p in cluster.procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"Slurm test cluster: {', '.join(dead)} exited while waiting for {what}\n"
                               + cluster.logs())
        try:
            if ready():  # type: ignore[operator]
                return
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"Slurm test cluster: timed out waiting for {what}\n" + cluster.logs())


def stop_cluster(cluster: SlurmCluster) -> None:
    """Cancel every job, stop the daemons (slurmd, slurmctld, munged: reverse order) and remove the directory."""
    if cluster.procs and cluster.procs[-1].poll() is None:
        try:
            cluster.client("scancel", "--full", "-u", "root")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and cluster.client("squeue", "-h").stdout.strip():
                time.sleep(0.1)
        except (OSError, subprocess.TimeoutExpired):
            pass
    for proc in reversed(cluster.procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    shutil.rmtree(cluster.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A running one-node Slurm for the whole session (per xdist worker), stopped at the end."""
    reason = _unavailable()
    if reason:
        _skip_or_fail(reason)
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@dataclass
class SbatchCounter:
    """An `sbatch` first on PATH that logs each call and runs the real one: counts submissions, not our code."""

    bin: Path
    calls: Path
    cluster: SlurmCluster

    @property
    def env(self) -> dict[str, str]:
        return dict(self.cluster.env, PATH=f"{self.bin}:{os.environ.get('PATH', '')}")

    def count(self) -> int:
        return len(self.calls.read_text().splitlines()) if self.calls.exists() else 0


@pytest.fixture
def sbatch_counter(slurm_cluster: SlurmCluster, tmp_path: Path) -> SbatchCounter:
    real = shutil.which("sbatch")
    assert real is not None
    bin_dir = tmp_path / "counting-bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch-calls"
    wrapper = bin_dir / "sbatch"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    return SbatchCounter(bin_dir, calls, slurm_cluster)

"""Running one step: its environment, its process group, its log, and stopping it.

Each command runs in a process group of its own so that Ctrl-C or SIGTERM to `nw` can
stop the whole tree a step started (shells, interpreters, their children) and nothing
keeps writing after the run reports it stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nixlib.errors import Interrupted, StepFailed
from nixlib.recipe import RunOptions

Echo = Callable[[str, str], None]

# Variables a pure environment keeps from the host: identity, terminal, locale and GPU selection.
PURE_ALLOW = (
    "HOME", "USER", "LOGNAME", "TERM", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SOURCE_DATE_EPOCH",
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "HIP_VISIBLE_DEVICES",
    "SSL_CERT_FILE", "NIX_SSL_CERT_FILE", "http_proxy", "https_proxy", "no_proxy",
)
# Search paths an env's store paths contribute to, by subdirectory.
SEARCH_PATHS = {
    "PATH": "bin",
    "LD_LIBRARY_PATH": None,  # never set from an env: Nix binaries carry their RPATH
    "PYTHONPATH": None,
    "PKG_CONFIG_PATH": "lib/pkgconfig",
    "MANPATH": "share/man",
}


@dataclass
class Build:
    """Everything a running step sees: where to write, its log, and how its environment is made."""

    name: str
    out: Path
    state: Path | None
    tmp: Path
    log: Path
    store_root: Path
    env_paths: tuple[str, ...] = ()
    options: RunOptions = field(default_factory=RunOptions)
    variables: dict[str, str] = field(default_factory=dict)
    echo: Echo | None = None

    def environ(self) -> dict[str, str]:
        """The step's environment: pure keeps only the allow-list, impure prepends the env to the host's."""
        base = {k: v for k, v in os.environ.items() if k in PURE_ALLOW} if self.options.pure else dict(os.environ)
        for var, sub in SEARCH_PATHS.items():
            if sub is None:
                continue
            dirs = [f"{p}/{sub}" for p in self.env_paths if os.path.isdir(f"{p}/{sub}")]
            inherited = [] if self.options.pure else [d for d in base.get(var, "").split(":") if d]
            if dirs or inherited:
                base[var] = ":".join(dirs + inherited)
            elif var == "PATH":
                base[var] = ""
        if self.state is not None:
            base["state"] = str(self.state)
        base.update(
            out=str(self.out),
            TMPDIR=str(self.tmp),
            NIX_WORKFLOW_STORE=str(self.store_root),
            NIX_WORKFLOW_STEP=self.name,
        )
        base.update(self.variables)
        return base


class _Children:
    """Process groups started by this process, so an interrupt can stop all of them."""

    def __init__(self) -> None:
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def add(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.procs.add(proc)
        if self.stopping.is_set():
            _signal_group(proc, signal.SIGTERM)

    def discard(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.procs.discard(proc)

    def terminate(self, grace: float = 5.0) -> None:
        """SIGTERM every group, then SIGKILL what is still alive after `grace` seconds."""
        self.stopping.set()
        with self.lock:
            procs = list(self.procs)
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)


CHILDREN = _Children()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def argv_for(build: Build, command: str) -> list[str]:
    """The argv that runs `command`: `/bin/sh -c`, wrapped in bubblewrap when the step asks for a sandbox."""
    argv = ["/bin/sh", "-c", command]
    if build.options.sandbox:
        from nixlib.sandbox import wrap

        argv = wrap(argv, build)
    return argv


def run_shell(build: Build, command: str) -> None:
    """Run `command` with cwd=$out, streaming its merged stdout/stderr to the log and the echo."""
    if CHILDREN.stopping.is_set():
        raise Interrupted("interrupted before the step started")
    argv = argv_for(build, command)
    with open(build.log, "wb") as log:
        log.write(f"$ {command}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv, cwd=build.out, env=build.environ(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        CHILDREN.add(proc)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if build.echo:
                    build.echo(build.name, line.decode(errors="replace").rstrip("\n"))
            code = proc.wait()
        finally:
            CHILDREN.discard(proc)
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
    if CHILDREN.stopping.is_set() and code != 0:
        raise Interrupted(f"step '{build.name}' was stopped")
    if code < 0:
        raise StepFailed(build.name, f"killed by signal {signal.Signals(-code).name}", str(build.log))
    if code != 0:
        raise StepFailed(build.name, f"command exited with status {code}", str(build.log))

"""Running one step: its environment, its shell, its processes, its log, and stopping it.

A shell step runs under bash strict mode (`bash -euo pipefail -c CMD`, as Snakemake's shell
rules and Nix builders do): any failing command, any failing part of a pipe and any unset
variable fails the step. Each command runs in a session of its own so that Ctrl-C or SIGTERM
to `nw` can stop the whole tree a step started; when its main process exits, whatever it left
running (background jobs, daemons) is killed before its outputs are hashed (nixlib.reaper).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from nixlib import reaper
from nixlib.errors import Interrupted, NixWorkflowError, StepFailed
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
    marker: str = field(default_factory=reaper.new_marker)  # carried by every process of this step
    # Descriptors the step's processes inherit, e.g. the per-key lock's: a flock stays held while any
    # holder lives, so even orphans of a killed runner keep a re-run of the recipe waiting.
    keep_fds: tuple[int, ...] = ()
    # What the action adds to the realisation's provenance (e.g. nixlib.slurm: the Slurm job id).
    provenance: dict[str, Any] = field(default_factory=dict)
    # Outputs the action staged as hard links it made itself (Snakemake's hardlink mode): stored keeping them.
    linked: set[Path] = field(default_factory=set)

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
        base.update(reaper.inherited_markers(os.environ))  # an enclosing step still finds our processes
        base[self.marker] = "1"
        return base


class _Children:
    """Process groups started by this process, so an interrupt can stop all of them."""

    def __init__(self) -> None:
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.RLock()  # (re-entrant: kill() runs in a signal handler, maybe inside terminate())
        self.stopping = threading.Event()
        self.killing = threading.Event()  # a second interrupt: SIGKILL at once, no grace

    def add(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.procs.add(proc)
        if self.stopping.is_set():
            _signal_group(proc, signal.SIGKILL if self.killing.is_set() else signal.SIGTERM)

    def discard(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.procs.discard(proc)

    def terminate(self, grace: float = 5.0) -> None:
        """SIGTERM every group, then SIGKILL every group whose step has not ended after `grace` seconds (at once
        after kill()). A step ends once every process of its group has (run_shell discards it then), not when its
        shell does: a shell that dies of the SIGTERM leaves a program it started that ignores SIGTERM (a Python
        script) holding the step's output pipe, and that group, too, must get its SIGKILL."""
        self.stopping.set()
        with self.lock:
            procs = list(self.procs)
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while True:
            with self.lock:
                left = [p for p in procs if p in self.procs]
            if not left or self.killing.is_set() or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        for proc in left:
            _signal_group(proc, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL every group now (a second Ctrl-C while stopping: no grace for steps that ignore SIGTERM)."""
        self.stopping.set()
        self.killing.set()
        with self.lock:
            procs = list(self.procs)
        for proc in procs:
            _signal_group(proc, signal.SIGKILL)


CHILDREN = _Children()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


STRICT = ("-e", "-u", "-o", "pipefail")  # errexit, nounset, pipefail: bash strict mode


def shell_for(build: Build) -> str:
    """The bash a step runs with: the env's own when it has one (pinned with the env), else the host's."""
    for p in build.env_paths:
        if os.access(f"{p}/bin/bash", os.X_OK):
            return f"{p}/bin/bash"
    if os.access("/bin/bash", os.X_OK):
        return "/bin/bash"
    candidate = shutil.which("bash")  # (searched only without /bin/bash: a dozen stats per step otherwise)
    if candidate and os.access(candidate, os.X_OK):
        return candidate
    raise NixWorkflowError(f"step '{build.name}' is a shell command, which runs under bash strict mode, but there is "
                           "no bash: add bash to the step's env (packages = [\"bash\"]) or install it on the host")


def argv_for(build: Build, command: str) -> list[str]:
    """The argv that runs `command`: `bash -euo pipefail -c`, wrapped in bubblewrap when the step asks for a
    sandbox. Options, not a `set` line prepended to the command, so `$0` and line numbers are the command's."""
    argv = [shell_for(build), *STRICT, "-c", command]
    if build.options.sandbox:
        from nixlib.sandbox import wrap

        argv = wrap(argv, build)
    return argv


def open_log(path: Path) -> BinaryIO:
    """A step's log, truncated for this run. Never through a symlink: the name was checked (Store.log_path), but a
    link planted at it since would otherwise redirect this truncating write to wherever it points."""
    return os.fdopen(_log_fd(path, os.O_TRUNC), "wb")


def append_log(path: Path) -> TextIO:
    """A step's log opened to add text (a Python step's output, a front door's note), never through a symlink."""
    return os.fdopen(_log_fd(path, os.O_APPEND), "a", encoding="utf-8")


def _log_fd(path: Path, how: int) -> int:
    """Open a log, truncated only once it is known to be a file with no other name: a hard link planted at its
    name (possible where fs.protected_hardlinks is off) would otherwise have a file of ours elsewhere overwritten."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | (how & ~os.O_TRUNC) | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise NixWorkflowError(f"cannot open the step's log {path}: {e.strerror or e} (something other than a log "
                               "was put at its name meanwhile); nothing was stored, run again") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise NixWorkflowError(f"cannot open the step's log {path}: it is not a file of its own (it has "
                               f"{st.st_nlink} names; something other than a log was put at its name meanwhile); "
                               "nothing was stored, run again")
    if how & os.O_TRUNC:
        os.ftruncate(fd, 0)
    return fd


def run_shell(build: Build, command: str) -> None:
    """Run `command` with cwd=$out, streaming its merged stdout/stderr to the log and the echo. Returns (or
    raises) only once every process of the step has ended: leftovers are killed and noted in the log."""
    if CHILDREN.stopping.is_set():
        raise Interrupted("interrupted before the step started")
    argv = argv_for(build, command)
    env = build.environ()
    env[reaper.run_marker()] = "1"
    with open_log(build.log) as log:
        log.write(f"$ {command}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv, cwd=build.out, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, pass_fds=build.keep_fds,
        )
        CHILDREN.add(proc)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()  # (a running step's log is read live: nw view's tail, `nw log` of a running step)
                if build.echo:
                    build.echo(build.name, line.decode(errors="replace").rstrip("\n"))
            code = proc.wait()
        finally:
            CHILDREN.discard(proc)
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            _reap(build, proc.pid, log)
    if CHILDREN.stopping.is_set() and code != 0:
        raise Interrupted(f"step '{build.name}' was stopped", log=str(build.log))
    if code < 0:
        raise StepFailed(build.name, f"killed by signal {signal.Signals(-code).name}", str(build.log))
    if code != 0:
        raise StepFailed(build.name, f"command exited with status {code}", str(build.log))


def _reap(build: Build, group: int, log: BinaryIO) -> None:
    """Kill what the step left running and say so in its log (its output may be incomplete: a process
    that was still writing when the step's command exited): what carries its marker or still works in or holds
    open its build directory (one that cleared its environment: reaper.reap_leftovers)."""
    try:
        killed = reaper.reap_leftovers(build.marker, [str(build.tmp)], group)
    except reaper.StuckProcesses as e:
        raise StepFailed(build.name, f"processes it started ({e}) did not end after SIGKILL (stuck in the kernel?), "
                         "so its outputs were not stored", str(build.log)) from None
    if killed:
        note = (f"nixworkflow: killed {killed} process(es) the step left running when its command exited; a step "
                "ends when all of its processes end: wait for background jobs (`wait`) before the command ends\n")
        log.write(note.encode())
        if build.echo:
            build.echo(build.name, note.rstrip("\n"))

"""Calling the real Nix CLI: evaluate expressions, instantiate and realise derivations.

Nothing here re-implements Nix: `nix-instantiate` evaluates (and writes `.drv` files),
`nix-store --realise` builds and registers GC roots. This module only prepares the
processes (settings, search path, the pinning guard) and turns Nix's output and errors
into values and one-paragraph messages.

Settings for root without a daemon: a root user on a machine where Nix was installed
without a daemon (Debian's `nix-bin`, CI containers) cannot build with the default
`build-users-group = nixbld` unless that group exists with members, usually has no
binary cache reachable, and cannot use Nix's sandbox for `/bin/sh` builders. When we run
as root, no daemon socket exists and /etc/nix/nix.conf does not set `build-users-group`,
the Nix processes we spawn get `build-users-group =`, `substituters =`, `sandbox = false`
and `experimental-features = nix-command flakes` prepended to NIX_CONFIG (the user's
own NIX_CONFIG lines come after, so they win). Everyone else uses their Nix as configured.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixlib import nixpaths
from nixlib.errors import NixWorkflowError

LIB_DIR = Path(__file__).resolve().parent / "nix"
STORE_DIR = os.environ.get("NIX_STORE_DIR", "/nix/store")
DAEMON_SOCKET = Path(os.environ.get("NIX_DAEMON_SOCKET_PATH", "/nix/var/nix/daemon-socket/socket"))
ROOT_NO_DAEMON_CONFIG = ("build-users-group =\nsubstituters =\nsandbox = false\n"
                         "experimental-features = nix-command flakes")
INSTALL_HINT = ("Install Nix: `sh <(curl -L https://nixos.org/nix/install)` (or on Debian/Ubuntu "
                "`apt-get install nix-bin`). Steps with host envs (no env, or env='host') still run without Nix.")
UNPINNED_MARK = "nixworkflow-unpinned: "
# How to opt into unpinned sources, worded for every front door: `snakemake` and Luigi have no --allow-unpinned.
UNPINNED_OPT_IN = "set NIX_WORKFLOW_ALLOW_UNPINNED=1 (or pass --allow-unpinned to `nw run`)"
_SHOW_TRACE_HINT = "(use '--show-trace' to show detailed location information)"
_DEP_TRACE = re.compile(r"^trace: nixworkflow-dep:(.*)$")
_GETENV_TRACE = re.compile(r"^trace: nixworkflow-getenv:(.*)$")
_VOLATILE_TRACE = re.compile(r"^trace: nixworkflow-volatile:(.*)$")
ENV_DEP = "$"  # a dep `$NAME` is the environment variable NAME (a file dep is an absolute path)
VOLATILE_DEP = "!"  # a dep `!WHAT` (`!currentTime`) differs at every evaluation: the evaluation is never reused
LITERAL_DEP = "@"  # a dep `@PATH` is a path literal of the user's Nix code (see _parse_log), checked by its stat
_COPIED = re.compile(r"^copied source '(.*)' -> '")
_EVALUATING = re.compile(r"^evaluating file '(.*)'$")
# nixpkgs imported without `config` or `overlays` (`import (fetchTarball …) { }`, as the docs show) reads the user's
# own configuration with builtins nw's guard does not reach (pkgs/top-level/impure.nix): which of these files exist,
# and what they hold, decides its packages; these variables decide which it reads and what it refuses.
_NIXPKGS_HOME_FILES = (".config/nixpkgs/config.nix", ".nixpkgs/config.nix", ".config/nixpkgs/overlays.nix",
                       ".config/nixpkgs/overlays")
_NIXPKGS_VARIABLES = ("HOME", "NIXPKGS_CONFIG", "NIXPKGS_ALLOW_UNFREE", "NIXPKGS_ALLOW_INSECURE",
                      "NIXPKGS_ALLOW_BROKEN", "NIXPKGS_ALLOW_UNSUPPORTED_SYSTEM")
_DRV_OUTPUTS = re.compile(r'\("([^"]+)","([^"]*)","[^"]*","[^"]*"\)')


class NixMissing(NixWorkflowError):
    """The Nix CLI is not installed (or not on PATH)."""


class NixFailed(NixWorkflowError):
    """Nix ran and reported an error (evaluation or build)."""


class Calls:
    """How many Nix processes this process started (for tests and the benchmark)."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def add(self) -> None:
        with self.lock:
            self.count += 1


CALLS = Calls()

# While `nw` evaluates an experiment, envs are evaluated (their .drv files name their outputs) but not built:
# a dry run, `nw status` or `nw dag` must not start hours of Nix builds, and `nw run FILE STEP` builds only the
# envs of the steps it may run, so one broken package does not stop the steps that do not use it (nixlib.cli).
DEFER_BUILDS = False


def tool(name: str, needed_for: str = "") -> str:
    """The path of a Nix CLI tool, or a NixMissing error saying how to install Nix."""
    path = shutil.which(name)
    if path is None:
        purpose = f" to {needed_for}" if needed_for else ""
        raise NixMissing(f"Nix is needed{purpose}, but `{name}` is not on PATH. {INSTALL_HINT}")
    return path


def _conf_sets(key: str) -> bool:
    conf = Path(os.environ.get("NIX_CONF_DIR", "/etc/nix")) / "nix.conf"
    try:
        text = conf.read_text()
    except OSError:
        return False
    return any(line.split("=", 1)[0].strip() == key for line in text.splitlines() if "=" in line)


def needs_root_settings() -> bool:
    """Root, no daemon, and no build users configured: builds need ROOT_NO_DAEMON_CONFIG."""
    return os.geteuid() == 0 and not DAEMON_SOCKET.exists() and not _conf_sets("build-users-group")


def environ(pinned: bool = True) -> dict[str, str]:
    """The environment of a Nix process: settings for root without a daemon, and the search path.

    With `pinned`, NIX_PATH is emptied so `<nixpkgs>` (a channel: not pinned) fails; the
    nixworkflow library is always reachable as `<nixworkflow>` through `-I`.
    """
    env = dict(os.environ)
    if needs_root_settings():
        env["NIX_CONFIG"] = ROOT_NO_DAEMON_CONFIG + "\n" + env.get("NIX_CONFIG", "")
    if pinned:
        env["NIX_PATH"] = ""
    return env


def search_path_args() -> list[str]:
    return ["-I", f"nixworkflow={LIB_DIR}"]


def _run(argv: Sequence[str], env: dict[str, str], cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    CALLS.add()
    try:
        return subprocess.run(list(argv), env=env, text=True, capture_output=True, stdin=subprocess.DEVNULL, cwd=cwd)
    except FileNotFoundError:
        raise NixMissing(f"Nix is needed, but `{argv[0]}` cannot be run. {INSTALL_HINT}") from None


@dataclass
class Evaluation:
    """A value Nix computed, and the local (non-store) files the evaluation read."""

    value: Any
    deps: list[str]


def evaluate(nix_file: Path, args: dict[str, Any], what: str, allow_unpinned: bool = False,
             exprs: dict[str, str] | None = None, cwd: str | None = None) -> Evaluation:
    """`nix-instantiate --eval --strict --json` of `nix_file` called with `args` (as JSON) and `exprs`, Nix
    expressions by argument name (nix-instantiate's own --arg NAME EXPR: Nix parses them, a relative path in one
    from `cwd`, the directory they were given in).

    The evaluation writes the `.drv` files of every derivation it touches (read-write mode),
    so they can be realised later. Files read are found from the guard's traces and Nix's
    debug log (`evaluating file`, `copied source`), for the evaluation cache.
    """
    argv = [tool("nix-instantiate", f"evaluate {what}"), "--eval", "--strict", "--json", "--read-write-mode",
            "--extra-experimental-features", "nix-command flakes",  # getFlake, for flake references
            *search_path_args(), str(nix_file), "--argstr", "json", json.dumps(args),
            *(w for name, expr in (exprs or {}).items() for w in ("--arg", name, expr))]
    env = environ(pinned=not allow_unpinned)
    proc = _run([*argv, "-vvvv"], env, cwd)
    if proc.returncode != 0:
        raise NixFailed(f"evaluating {what} with Nix failed:\n{_explain(argv, env, proc.stderr, cwd)}")
    deps, traces = _parse_log(proc.stderr)
    if traces:
        print("\n".join(traces), file=sys.stderr)
    try:
        return Evaluation(json.loads(proc.stdout), deps)
    except json.JSONDecodeError as e:  # pragma: no cover - Nix always prints JSON on success
        raise NixFailed(f"Nix printed no JSON when evaluating {what}: {e}") from None


def _parse_log(stderr: str) -> tuple[list[str], list[str]]:
    """(local files and `$NAME` environment variables the evaluation depended on, the user's own
    `builtins.trace` lines).

    A file read through a symlink depends on the file it points to as well. When code from the Nix
    store ran (a package set), it may have read local files untraced (`pkgs.lib.importJSON ./x.json`):
    then every path literal of the local Nix files evaluated is a dependency too (`LITERAL_DEP`), and so is the
    path an environment variable the user's code read names (`pkgs.lib.importJSON (builtins.getEnv "CFG")`), and
    nixpkgs' own impure inputs (its config and overlays in the user's home, _NIXPKGS_HOME_FILES)."""
    deps: dict[str, None] = {}
    traces: list[str] = []
    nix_files: list[str] = []
    variables: list[str] = []
    store_code = False
    for line in stderr.splitlines():
        if m := _GETENV_TRACE.match(line):
            deps[ENV_DEP + m.group(1)] = None
            variables.append(m.group(1))
            continue
        if m := _VOLATILE_TRACE.match(line):
            deps[VOLATILE_DEP + m.group(1)] = None
            continue
        m = _DEP_TRACE.match(line) or _COPIED.match(line) or _EVALUATING.match(line)
        if m:
            path = m.group(1)
            if path.startswith(STORE_DIR + "/"):
                store_code = store_code or m.re is _EVALUATING
                continue
            deps[path] = None
            if m.re is not _COPIED:  # (Nix copies a symlink as a symlink; it reads and imports what it points to)
                deps[os.path.realpath(path)] = None
            if m.re is _EVALUATING and not path.startswith(str(LIB_DIR) + "/"):
                nix_files.append(path)
        elif line.startswith("trace: "):
            traces.append(line)
    if store_code:
        named = [v for v in (os.environ.get(n, "") for n in variables) if v.startswith("/")]
        for path in [*(p for f in nix_files for p in nixpaths.literal_paths(f)), *map(os.path.normpath, named)]:
            if not path.startswith(STORE_DIR + "/"):
                deps[LITERAL_DEP + path] = None
                deps[LITERAL_DEP + os.path.realpath(path)] = None
        deps.update(dict.fromkeys(ENV_DEP + n for n in _NIXPKGS_VARIABLES))
        home, config = os.environ.get("HOME", ""), os.environ.get("NIXPKGS_CONFIG", "")
        files = [*(os.path.join(home, f) for f in _NIXPKGS_HOME_FILES if home.startswith("/")),
                 *([config] if config.startswith("/") else [])]
        for f in (f for f in files if not f.startswith(STORE_DIR + "/")):
            deps.update(dict.fromkeys((f, os.path.realpath(f))))
    return list(deps), traces


def _explain(argv: list[str], env: dict[str, str], stderr: str, cwd: str | None = None) -> str:
    """Nix's own error message (file and line included). Errors thrown by nixworkflow's library
    (`output` arguments, the unpinned-source guard) or by `throw` carry no position: for those,
    Nix is run again with --show-trace to find the innermost position in the user's files."""
    message = _error_block(stderr)
    if _SHOW_TRACE_HINT in message or UNPINNED_MARK in message:
        where = _user_position(_run([*argv, "--show-trace"], env, cwd).stderr)
        message = message.replace(_SHOW_TRACE_HINT, "").replace(UNPINNED_MARK, "").rstrip()
        if where and where not in message:
            message += f"\n\n       at {where}"
    ours = "|".join(re.escape(str(LIB_DIR / f)) for f in ("guard.nix", "front.nix"))
    if "called without required argument" in message and re.search(ours, message):
        # Nix's position is nw's own call (with its source): the user's is the function's, named above
        message = re.sub(r"\n\s*at (?:" + ours + r"):\d+:\d+:?\n(?:\n?[ \t]+\d*\|[^\n]*)*", "", message).rstrip()
        message += ("\n\nnw calls an experiment that is a function with the parameters given as --arg NAME EXPR or "
                    "--argstr NAME VALUE (as nix-build does), and an env file with none: give the parameter a default, "
                    "e.g. { lr ? 0.001 }: ..., or pass it: nw run experiment.nix --arg lr 0.001")
    if UNPINNED_MARK in stderr or "was not found in the Nix search path" in message:
        message += ("\n\nPin every source: fetchTarball/fetchurl with sha256, fetchGit with rev, flakes with a "
                    "revision, and no <nixpkgs> (a channel). " + _unpinned_hint())
    return message


def _unpinned_hint() -> str:
    """How to run unpinned, or, when the user already opted in, why that did not help: telling them to set the
    variable they set sends them in a circle."""
    if os.environ.get("NIX_WORKFLOW_ALLOW_UNPINNED", "") not in ("", "0"):
        return ("Unpinned sources are allowed (NIX_WORKFLOW_ALLOW_UNPINNED is set), but a channel such as "
                "<nixpkgs> must then be on the Nix search path (NIX_PATH) of this machine.")
    return f"To run unpinned anyway, {UNPINNED_OPT_IN}: the run is then not reproducible."


def _error_block(stderr: str) -> str:
    """From the first `error:` line on, without Nix's debug chatter."""
    lines = stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    if start is None:
        return stderr.strip() or "(Nix printed no message)"
    kept = [line for line in lines[start:] if not _is_debug(line)]
    return "\n".join(kept).rstrip()


_DEBUG_PREFIXES = ("evaluating file", "copied source", "trace: nixworkflow-dep:", "download thread", "acquiring ",
                   "locking path", "lock acquired", "lock released", "did not find cache entry", "using cache entry",
                   "starting download", "finished download", "got header", "curl:", "verify TLS", "downloading '",
                   "instantiated '", "processing attribute", "trace: nixworkflow-getenv:",
                   "trace: nixworkflow-volatile:",
                   "warning: you did not specify '--add-root'")


def _is_debug(line: str) -> bool:
    return line.startswith(_DEBUG_PREFIXES)


def _user_position(stderr: str) -> str | None:
    """The innermost `at FILE:LINE:COL` of a --show-trace outside nixworkflow's own Nix files."""
    found = None
    for m in re.finditer(r"^\s*at (/[^\n]*?):(\d+):(\d+):$", stderr, re.M):
        if not m.group(1).startswith(str(LIB_DIR)):
            found = f"{m.group(1)}:{m.group(2)}:{m.group(3)}"
            break
    return found


def drv_outputs(drv: str) -> dict[str, str]:
    """Output name -> store path of a derivation, read from its `.drv` file (no Nix process)."""
    try:
        head = Path(drv).read_text(errors="replace").split("],", 1)[0]
    except OSError:
        return {}
    return {m.group(1): m.group(2) for m in _DRV_OUTPUTS.finditer(head)}


def realise(targets: Sequence[str], root: Path, what: str) -> list[str]:
    """Build (or check) `targets` (.drv paths or store paths) and register indirect GC roots at `root`,
    `root-2`, …; returns the output paths Nix printed."""
    root.parent.mkdir(parents=True, exist_ok=True)
    argv = [tool("nix-store", f"build {what}"), "--realise", *targets, "--add-root", str(root), "--indirect"]
    proc = _run(argv, environ(pinned=True))
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        raise NixFailed(f"building {what} with Nix failed:\n{tail}")
    return [line for line in proc.stdout.splitlines() if line.startswith("/")]


def fingerprint() -> str:
    """Which Nix evaluates (binary path, size, mtime): part of the evaluation cache key, since an
    upgraded Nix may evaluate differently. A stat, not a process: cache hits must not start Nix."""
    path = os.path.realpath(tool("nix-instantiate"))
    st = os.stat(path)
    return f"{path}:{st.st_size}:{st.st_mtime_ns}:{STORE_DIR}"

"""The variables of the host environment a step's command expands, as part of its key.

A step that is not pure sees the environment it was started from (nw's, a Luigi worker's), so `SEED=2 nw run`
computes something else than `SEED=1 nw run` for a command that expands `$SEED`: serving the first result to the
second would be silently stale. Every front door whose commands see that environment keys them here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from nixlib.command import expanded_variables
from nixlib.recipe import RunOptions, digest

# Variables a command may name that say where or as whom it runs, not what it computes (or that the step sets
# itself): keying them would re-run every step for another user, machine, terminal or GPU.
_UNKEYED = frozenset({
    "out", "state", "TMPDIR", "TMP", "TEMP", "TEMPDIR", "HOME", "USER", "LOGNAME", "PATH", "SHELL", "PWD", "OLDPWD",
    "TERM", "HOSTNAME", "TZ", "LANG", "LANGUAGE", "DISPLAY", "SHLVL", "PPID", "UID", "EUID", "GROUPS", "RANDOM",
    "SRANDOM", "SECONDS", "LINENO", "EPOCHSECONDS", "EPOCHREALTIME", "IFS", "OPTARG", "OPTIND", "REPLY",
    "PIPESTATUS", "FUNCNAME", "HOSTTYPE", "MACHTYPE", "OSTYPE", "PS1", "PS2", "PS3", "PS4", "_",
    "LD_LIBRARY_PATH", "PYTHONPATH", "PKG_CONFIG_PATH", "MANPATH", "SSL_CERT_FILE", "NIX_SSL_CERT_FILE",
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SOURCE_DATE_EPOCH",
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "HIP_VISIBLE_DEVICES",
})
_UNKEYED_PREFIXES = ("LC_", "BASH", "NIX_WORKFLOW_", "NW_", "SLURM_", "XDG_", "SSH_")


def keyed(command: str, options: RunOptions) -> dict[str, str]:
    """{name: digest of its value} of the host variables `command` expands: a digest, never the value (variables
    often carry credentials); an unset variable as "unset" (a result recorded before variables were keyed, with
    SEED=1, must not be served to a run without SEED; a shell variable of the command itself, `for f in …; do … $f`,
    keys as unset). None of a pure step's (it sees only an allow-list of host variables, none of them keyed), nor
    the variables that say where, or as whom, a step runs (`_UNKEYED`)."""
    return named(expanded_variables(command), options) if not options.pure else {}


def named(names: Iterable[str], options: RunOptions, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`keyed` for variables named otherwise than by a command's expansion (`os.environ["SEED"]` in a script:
    nixlib.envreads), with their values in `environ` (default os.environ: a Luigi task yielded inside another's run()
    passes the worker's own, which that run() has replaced by its step's while it runs)."""
    if options.pure:
        return {}
    environ = os.environ if environ is None else environ
    names = sorted(n for n in set(names) if n not in _UNKEYED and not n.startswith(_UNKEYED_PREFIXES))
    return {n: digest(f"{n}={environ[n]}") if n in environ else "unset" for n in names}

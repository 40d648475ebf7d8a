"""Which env a job runs in, and how its processes see that env.

A rule's env is, in order: its `nix_env` resource (overridable with `--set-resources
RULE:nix_env=NAME`), the `steps:` entry for the rule name in nixworkflow.yaml,
`--nixworkflow-env`, the config's default `env:`; without any of them the host (unpinned).

Snakemake's `shell()` starts every shell:, script: and wrapper: command with
`Popen(cmd, shell=True, executable=resources.shell_exec or the default shell, env=os.environ+...)`.
`os.environ` is process-wide, so it cannot carry a per-job PATH in a threaded executor; the
per-job `shell_exec` resource can. For each job we write a tiny `sh` script, named like the shell
it wraps (so Snakemake still adds `set -euo pipefail` for bash), that gives the job its own reaper
marker (so what it leaves running is killed when it ends), puts the env's `bin/` (and
pkg-config/man paths) in front of PATH, or in pure mode replaces the environment by an
allow-list, optionally enters nixlib's bubblewrap sandbox, and then execs the shell (the env's
own `bash`/`sh` when it has one). Spawned jobs (`run:` blocks, shadow rules) use the same kind
of script as the shell that starts their Snakemake process.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shlex
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from nixlib import env as nixenv
from nixlib.env import ResolvedEnv
from nixlib.errors import NixWorkflowError
from nixlib.recipe import RunOptions
from nixlib.runner import PURE_ALLOW, SEARCH_PATHS, Build
from nixlib.store import force_remove

CONFIG_NAME = "nixworkflow.yaml"
# Besides nixlib's allow-list, a pure job keeps what Snakemake itself sets for a job.
SNAKEMAKE_VARS = (
    "OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS", "TMPDIR", "TMP", "TEMP", "TEMPDIR", "NIX_WORKFLOW_STORE",
)


def sandbox_readable(workdir: str, snakefiles: list[str], inputs: list[str]) -> tuple[str, ...]:
    """What a sandboxed job must read besides system directories and /nix/store, bound read-only: Snakemake's
    own Python (a `script:` runs with its interpreter, a `run:` block in a Snakemake process it starts: the
    installation, its virtualenv and the directories on its import path), the directories of the Snakefiles
    and the ones above them (the rules' scripts and the modules they import, `../scripts/x.py`), and the input
    files outside the working directory (a reference genome under /data). Nothing of them is writable, and
    nothing that holds the working directory is bound (the project's parent may be a home directory)."""
    import sys

    work = os.path.realpath(workdir)
    paths = [sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))]
    paths += [p for p in sys.path if p and os.path.isabs(p)]
    for snakefile in snakefiles:
        here = os.path.dirname(os.path.abspath(snakefile))
        paths += [here, os.path.dirname(here)]
    paths += outside_inputs([os.path.abspath(f) for f in inputs], work)
    return tuple(p for p in dict.fromkeys(os.path.normpath(p) for p in paths)
                 if os.path.exists(p) and not covered(os.path.realpath(p), work))


def outside_inputs(inputs: list[str], work: str, per_dir: int = 20) -> list[str]:
    """The input files outside the working directory, each bound by itself, except that a directory holding
    more than `per_dir` of them (a sequencing run's FASTQs) is bound whole: one bind, not thousands, keeps the
    sandbox's command line short."""
    by_dir: dict[str, list[str]] = {}
    for f in inputs:
        if not covered(os.path.realpath(f), work):
            by_dir.setdefault(os.path.dirname(f), []).append(f)
    out: list[str] = []
    for d, files in by_dir.items():
        out += [d] if len(files) > per_dir and not covered(os.path.realpath(d), work) else files
    return out


def covered(path: str, work: str) -> bool:
    """True for a path the sandbox has anyway or must not expose: inside the working directory or /nix/store,
    or a directory holding the working directory (binding it would expose the project's parent)."""
    inside = (path + os.sep).startswith((work + os.sep, "/nix/store/"))
    return inside or path == "/" or (work + os.sep).startswith(path.rstrip(os.sep) + os.sep)


def load_side_car(path: Path | None, snakefile_dir: Path) -> Any | None:
    """The side-car config (`nixworkflow.yaml` next to the Snakefile unless given), or None without one."""
    from nixlib.config import load_config

    explicit = path is not None
    path = Path(path) if explicit else snakefile_dir / CONFIG_NAME
    if not path.exists():
        if explicit:
            raise NixWorkflowError(f"the config {path} given with --nixworkflow-config does not exist")
        return None
    return load_config(path)


def unpinned_warning(config: bool, rules: list[Any], methods: Any) -> str:
    """One paragraph for the rules of a run that use the host's tools: they are not pinned, and for those that
    declare software Snakemake does not deploy in this run (`conda:` without `--sdm conda`, `container:` without
    `--sdm apptainer`, `envmodules:` without `--sdm env-modules`), what they ask for and how to pin it with Nix."""
    shown = ", ".join(r.name for r in rules[:8]) + (f" and {len(rules) - 8} more" if len(rules) > 8 else "")
    text = ("nixworkflow: no nixworkflow.yaml next to the Snakefile: jobs run with the host's tools and are recorded "
            f"as unpinned (rules {shown})" if not config else
            f"nixworkflow: {len(rules)} rule(s) of this run use the host's tools, not pinned by Nix, and are recorded "
            f"as unpinned: {shown}")
    asks = [(r, "; ".join(what)) for r in rules for what in [undeployed_software(r, methods)] if what]
    if not asks:
        return text + "."
    named = ", ".join(f"rule {r.name} ({what})" for r, what in asks[:6]) + (" …" if len(asks) > 6 else "")
    rule, packages = next(((r, p) for r, _ in asks for p in [conda_packages(r)] if p), (asks[0][0], ["..."]))
    return (f"{text}. Of these, {named} {'declares' if len(asks) == 1 else 'declare'} software this run does not "
            "deploy (no --sdm conda, apptainer or env-modules for it), so it is not used: the host's tools run "
            f"instead. To pin them with Nix, define an env with the same tools in {CONFIG_NAME} next to the "
            f"Snakefile and name it for the rule, e.g. `envs: {{tools: {{packages: [{', '.join(packages)}]}}}}` with "
            f"`steps: {{{rule.name}: tools}}` (or `resources: nix_env=\"tools\"` in the rule).")


def undeployed_software(rule: Any, methods: Any) -> list[str]:
    """What `rule` declares for Snakemake's software deployment that `methods` (--sdm) leaves unused."""
    return [text for method, text in declared_software(rule) if method not in methods]


def deployed_software(rule: Any, methods: Any) -> list[str]:
    """What Snakemake's software deployment (`methods`, --sdm) puts in front of `rule`'s env: not pinned by Nix."""
    return [text for method, text in declared_software(rule) if method in methods]


def declared_software(rule: Any) -> list[tuple[Any, str]]:
    """(deployment method, "conda: envs/x.yaml") for each of a rule's `conda:`, `container:`, `envmodules:`
    (a wrapper's own conda env included: Snakemake sets it as the rule's)."""
    from snakemake.settings.types import DeploymentMethod

    out = []
    conda = getattr(rule, "conda_env", None)
    if conda:
        out.append((DeploymentMethod.CONDA, f"conda: {conda}" if isinstance(conda, str | os.PathLike)
                    else "conda: set by a function"))
    image = getattr(rule, "container_img", None)
    if image:
        out.append((DeploymentMethod.APPTAINER, f"container: {image}" if isinstance(image, str)
                    else "container: set by a function"))
    modules = getattr(rule, "env_modules", None)
    if modules:
        out.append((DeploymentMethod.ENV_MODULES, f"envmodules: {modules}"))
    return out


def deployed_warning(rules: list[Any], methods: Any) -> str:
    """One paragraph for the rules of a run whose software Snakemake deploys (`--sdm`): it comes before their
    env on PATH (a container replaces it), and Nix does not pin it."""
    named = ", ".join(f"rule {r.name} ({'; '.join(deployed_software(r, methods))})" for r in rules[:6])
    named += (" …" if len(rules) > 6 else "") + (" runs" if len(rules) == 1 else " run")
    return (f"nixworkflow: {named} with software Snakemake deploys (--sdm), "
            "which comes before the rule's env on PATH (a container replaces it): that software is not pinned by Nix "
            "(its records say so). Drop the --sdm option to run such rules in their Nix envs only.")


def conda_packages(rule: Any) -> list[str]:
    """The package names of a rule's local conda env file, without versions or channels (`bioconda::samtools=1.17`
    is `samtools`), as a hint for the Nix env that replaces it (Nix attribute names often match); [] if unreadable."""
    conda = getattr(rule, "conda_env", None)
    if not isinstance(conda, str | os.PathLike):
        return []
    try:
        import yaml

        path = Path(str(rule.snakefile)).parent / conda  # Snakemake reads it from the rule's Snakefile's directory
        deps = (yaml.safe_load(path.read_text()) or {}).get("dependencies") or []
    except Exception:  # noqa: BLE001 - a hint only: a remote, missing or malformed file gives none
        return []
    names = [re.split(r"[=<>!~ \[]", str(d).split("::")[-1], maxsplit=1)[0] for d in deps if isinstance(d, str)]
    return list(dict.fromkeys(n for n in names if n))[:6]


class Runtime:
    """Env resolution (once per env name, thread-safe) and the per-env shell wrappers."""

    def __init__(self, config: Any | None, default_env: str | None, forced: RunOptions, workdir: str,
                 store_root: Path, keep_vars: tuple[str, ...] = (), readable: tuple[str, ...] = ()) -> None:
        self.config = config
        self.readable = readable  # what a sandboxed job reads besides system directories (`sandbox_readable`)
        self.keep_vars = keep_vars  # the workflow's `envvars:`: a pure job still gets what it declares
        self.default_env = default_env
        self.forced = forced  # options switched on from the command line, on top of the config's
        self.workdir = workdir
        self.store_root = store_root
        self._envs: dict[str | None, ResolvedEnv | NixWorkflowError] = {}
        self._locks: dict[str | None, threading.Lock] = {}
        self._options: dict[str | None, RunOptions] = {}
        self._lock = threading.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="nixworkflow-shells-"))
        atexit.register(self.close)  # also when Snakemake stops before shutting its executor down

    # ---- envs ---------------------------------------------------------------------------

    def env_name(self, job: Any) -> str | None:
        """The env a job asks for (None: the config's default env, or the host without a config). Reads the
        job's evaluated resources: call it only when the job is about to run (resources are lazy)."""
        return self.choose(job.resources.get("nix_env"), job.rule.name)

    def choose(self, nix_env: Any, rule: str) -> str | None:
        """The env of rule `rule` whose `nix_env` resource is `nix_env` (None or "" when unset)."""
        if nix_env not in (None, ""):
            return str(nix_env)
        if self.config is not None and rule in self.config.steps:
            return self.config.steps[rule]
        return self.default_env

    def spec(self, name: str | None) -> Any:
        """The env spec for `name` from the side-car config; raises naming the known envs if there is none."""
        if self.config is None:
            if name in (None, "host"):
                return None
            raise NixWorkflowError(f"env '{name}' is requested but there is no {CONFIG_NAME} next to the Snakefile "
                                   "(or given with --nixworkflow-config) to define it")
        if name == "host" and "host" not in self.config.envs:
            return None
        return self.config.env(name)

    def is_host(self, name: str | None) -> bool:
        """Whether env `name` (a known one: see `spec`) is the host's tools, not pinned."""
        spec = self.spec(name)
        return spec is None or bool(getattr(spec, "host", False))

    def options(self, name: str | None) -> RunOptions:
        """Run options: the env entry's (pure, sandbox, network, gpu), with the command line's switched on top
        (once per env name: every job asks)."""
        known = self._options.get(name)
        if known is None:
            known = self._options[name] = self._make_options(name)
        return known

    def _make_options(self, name: str | None) -> RunOptions:
        base = RunOptions() if self.config is None or (name == "host" and "host" not in self.config.envs) \
            else self.config.options(name)
        f = self.forced
        return replace(base, pure=base.pure or f.pure, sandbox=base.sandbox or f.sandbox,
                       network=True if f.network else base.network, gpu=base.gpu or f.gpu)

    def resolve(self, name: str | None) -> ResolvedEnv:
        """Evaluate and realise env `name` once; later jobs (and a failure) are served from memory."""
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            known = self._envs.get(name)
            if known is None:
                try:
                    known = nixenv.resolve(self.spec(name))
                except NixWorkflowError as e:
                    known = NixWorkflowError(f"env '{name or 'default'}' cannot be used: {e}")
                self._envs[name] = known
        if isinstance(known, NixWorkflowError):
            raise NixWorkflowError(str(known))  # a fresh exception per job: jobs fail on several threads
        return known

    # ---- processes ----------------------------------------------------------------------

    def shell(self, env: ResolvedEnv, options: RunOptions, base: str | None, where: Path,
              exports: dict[str, str], keep: tuple[str, ...] = ()) -> str:
        """Path of a job's own wrapper, in its directory `where`, that sets `exports` (the job's reaper marker,
        its `$state`) and runs the shell `base` inside `env` with `options`; a pure job also keeps the variables
        `keep` (the reaper markers it inherits: the run's, an enclosing step's). One exec, however many of these.

        The job's wrapper is a symlink to a script shared by every job of that env and shell (written once), which
        reads the job's variables from `job.env` beside the link (`$0`'s directory). Writing an executable per job
        would fail jobs at random with "Text file busy": a process another job's thread forks while the file is
        open for writing holds that descriptor until it execs, and exec of a file open for writing fails."""
        base = base or "/bin/sh"
        name = os.path.basename(base)
        own = [f"{p}/bin/{name}" for p in env.paths if os.access(f"{p}/bin/{name}", os.X_OK)]
        shared = self._shared(self.script(env, options, own[0] if own else base, keep), name)
        where.mkdir(parents=True, exist_ok=True)
        (where / "job.env").write_text("".join(f"{var}={shlex.quote(value)}; export {var}\n"
                                               for var, value in exports.items())
                                       + f"NW_JOB_VARS={shlex.quote(' '.join(exports))}\n")
        link = where / name
        tmp = where / f".{name}.tmp"
        force_remove(tmp)
        os.symlink(shared, tmp)
        os.replace(tmp, link)
        return str(link)

    def _shared(self, text: str, name: str) -> str:
        """The script `text`, written once per content under this run's directory, named `name` (the shell it
        wraps: Snakemake adds its strict mode for bash by that name)."""
        path = self._dir / hashlib.sha256(text.encode()).hexdigest()[:24] / name
        with self._lock:
            if not path.exists():
                path.parent.mkdir(exist_ok=True)
                tmp = path.with_name(f".{name}.tmp")
                tmp.write_text(text)
                tmp.chmod(0o755)
                os.replace(tmp, path)
        return str(path)

    def script(self, env: ResolvedEnv, options: RunOptions, shell: str, keep: tuple[str, ...] = ()) -> str:
        """The wrapper's text: the job's variables first (`job.env` beside the path it was run by, which names
        them in NW_JOB_VARS, so a pure job keeps them), then the env and the shell."""
        argv = self.sandboxed([shell], options)
        search = {var: [f"{p}/{sub}" for p in env.paths if os.path.isdir(f"{p}/{sub}")]
                  for var, sub in SEARCH_PATHS.items() if sub is not None}
        lines = ["#!/bin/sh", '. "${0%/*}/job.env"']
        if options.pure:
            kept = " ".join(dict.fromkeys(PURE_ALLOW + SNAKEMAKE_VARS + self.keep_vars + keep))
            assigns = [shlex.quote(f"{var}={':'.join(dirs)}") for var, dirs in search.items() if dirs]
            lines += [
                "set -- " + " ".join(shlex.quote(a) for a in argv) + ' "$@"',
                f"for v in {kept} $NW_JOB_VARS; do",
                '  eval "if [ -n \\"\\${$v+x}\\" ]; then set -- \\"$v=\\${$v}\\" \\"\\$@\\"; fi"',
                "done",
                "exec /usr/bin/env -i " + " ".join(assigns + ([] if search["PATH"] else ["PATH="])) + ' "$@"',
            ]
        else:
            lines += [f"{var}={shlex.quote(':'.join(dirs))}${{{var}:+:${var}}}; export {var}"
                      for var, dirs in search.items() if dirs]
            lines.append("exec " + " ".join(shlex.quote(a) for a in argv) + ' "$@"')
        return "\n".join(lines) + "\n"

    def scratch(self, name: str) -> Path:
        """A directory `name` in the sandbox's writable scratch space (shared by this run's sandboxed jobs)."""
        path = self._dir / "tmp" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def sandboxed(self, argv: list[str], options: RunOptions) -> list[str]:
        """`argv` inside nixlib's bubblewrap sandbox when asked: the working directory and a scratch
        directory writable, everything else read-only, a private /tmp, network and GPUs per options."""
        if not options.sandbox:
            return argv
        from nixlib.sandbox import wrap

        scratch = self._dir / "tmp"
        build = Build(name="snakemake", out=Path(self.workdir), state=None, tmp=scratch,  # type: ignore[arg-type]
                      log=scratch / "log", store_root=self.store_root, options=options, env_paths=self.readable)
        return wrap(argv, build)

    def close(self) -> None:
        force_remove(self._dir)  # iterative: any depth

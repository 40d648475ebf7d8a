"""`nw run --slurm`: cache misses run as Slurm batch jobs; everything else stays in the submitting process.

The engine does lookup, lock, ingest and record as for a local run; only the action differs. The job
runs the exact argv and environment a local run would use (nixlib.runner: `bash -euo pipefail -c CMD`,
cwd and $out the build directory, the step's PATH and variables, bubblewrap when sandboxed), launched
with `env -i` so nothing of the node's or Slurm's environment leaks in. Its output directory lives in
the store's scratch space, so the store root (and /nix/store for Nix envs) must be on a filesystem the
nodes share; the submitting process, which holds the recipe's lock for the whole job, stores the
outputs. A hit never reaches Slurm (the scheduler answers it before any action runs), two runs of one
recipe submit it once (the store's lock), `-j N` bounds jobs in flight (one thread waits per job), and
Ctrl-C or SIGTERM cancels the submitted jobs (`scancel`) and waits for them to end before anything is
removed. The Slurm job id and its node are recorded in the realisation's provenance (`slurm.job_id`, `slurm.node`).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from nixlib.errors import Interrupted, NixWorkflowError, StepFailed

if TYPE_CHECKING:  # the runner is imported when a job is submitted: `nw --help` builds this module's options
    from nixlib.runner import Build

# Job states after which no process of the job runs any more (COMPLETING is not one: processes are still killed).
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                      "DEADLINE", "OUT_OF_MEMORY", "SPECIAL_EXIT", "REVOKED"})
POLL_FIRST, POLL_MAX = 0.1, 5.0  # seconds between `scontrol show job` calls: fast for short steps, gentle after
QUERY_PATIENCE = 120.0  # how long `scontrol` may fail in a row (a busy or restarting slurmctld) before giving up
CANCEL_WAIT = 60.0  # after scancel: how long to wait for the job's processes to end
PENDING_NOTE = 5.0  # a job still pending after this many seconds is said to be, with Slurm's reason
# What the job's own environment decides on the node, not the submitting host: which job and resources it has
# (a command may size its threads by SLURM_CPUS_PER_TASK) and which GPUs Slurm gave it.
FROM_JOB = ("SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_JOB_PARTITION", "SLURM_JOB_NODELIST", "SLURMD_NODENAME",
            "SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE", "SLURM_MEM_PER_NODE", "SLURM_MEM_PER_CPU", "SLURM_GPUS",
            "SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
            "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")
# Of the submitting host's own SLURM_* variables, only where the cluster's config is reaches the job: the others
# describe the allocation `nw run` itself runs in (a driver job, an salloc shell), not the step's job, and would
# mislead what the step starts there (`srun` took the driver's SLURM_NTASKS: "More processors requested than
# permitted"; an MPI launcher its SLURM_NODELIST).
HOST_SLURM_KEPT = frozenset({"SLURM_CONF"})


def _of_another_job(variable: str) -> bool:
    return variable.startswith(("SLURM_", "SLURMD_")) and variable not in HOST_SLURM_KEPT


def add_run_options(run: argparse.ArgumentParser) -> None:
    """The `nw run` options that send cache misses to Slurm."""
    g = run.add_argument_group("Slurm", "run cache misses as Slurm jobs (docs/slurm.md); hits never reach Slurm. "
                               "Defaults and per-step settings: `slurm:` in nixworkflow.yaml beside the experiment")
    g.add_argument("--slurm", action=argparse.BooleanOptionalAction, default=None,
                   help="submit each step that is not cached as a Slurm batch job (sbatch) and store its outputs "
                   "here; needs the store and /nix/store on a shared filesystem (default: `enabled:` under `slurm:` "
                   "in nixworkflow.yaml, else off; --no-slurm runs every step here)")
    g.add_argument("--slurm-partition", metavar="NAME", help="sbatch --partition")
    g.add_argument("--slurm-time", metavar="TIME", help="sbatch --time, e.g. 30 or 2:00:00 (per step)")
    g.add_argument("--slurm-cpus", type=int, metavar="N", help="sbatch --cpus-per-task")
    g.add_argument("--slurm-mem", metavar="SIZE", help="sbatch --mem, e.g. 4G")
    g.add_argument("--slurm-gpus", metavar="N", help="sbatch --gpus, e.g. 1 or a100:2")
    g.add_argument("--slurm-option", action="append", default=[], metavar="ARG",
                   help="any other sbatch option, e.g. --slurm-option=--account=lab (repeatable)")
    g.add_argument("--slurm-step", action="append", default=[], metavar="STEP=ARG",
                   help="an sbatch option for one step's job only, after the others (so it wins), e.g. "
                   "--slurm-step train=--gpus=2 --slurm-step train=--mem=64G (repeatable)")


# ---- checking values (the command line and nixworkflow.yaml share these rules) ------------------------------

_TIME = re.compile(r"(?:\d+(?::\d+){0,2}|\d+-\d+(?::\d+){0,2}|infinite|unlimited)", re.IGNORECASE)
_MEM = re.compile(r"\d+[KMGT]?", re.IGNORECASE)
_GPUS = re.compile(r"(?:[A-Za-z0-9_.-]+:)?\d+")
# sbatch options that would break what `nw run` promises: a requeued or array job runs a second copy writing into
# the same $out, --wrap replaces the job script, --wait makes sbatch block instead of returning the job id.
REFUSED = {"--requeue": "Slurm could start a second copy writing into the same $out",
           "--array": "every array task would write into the same $out",
           "--wrap": "the job must run the script nw writes", "--wait": "nw waits for the job itself"}
REFUSED_SHORT = {"-a": "--array", "-W": "--wait"}


# sbatch also reads options from its environment (`man sbatch`, INPUT ENVIRONMENT VARIABLES). These would break
# what the command line promises, so they never reach sbatch: a second copy writing into the same $out (an array,
# a requeue), sbatch blocking (--wait), the job submitted to a cluster `scontrol` here does not ask (it would look
# finished while it runs), its stderr kept out of the step's log. The others (account, partition, time, ...) are
# the user's resources and apply as usual.
DROPPED_ENV = {"SBATCH_ARRAY_INX": "--array", "SBATCH_REQUEUE": "--requeue", "SBATCH_WAIT": "--wait",
               "SBATCH_CLUSTERS": "--clusters", "SBATCH_ERROR": "--error"}


def sbatch_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment to run sbatch with: `environ` (default: this process's) without DROPPED_ENV."""
    return {k: v for k, v in (os.environ if environ is None else environ).items() if k not in DROPPED_ENV}


def time_problem(value: str) -> str | None:
    if _TIME.fullmatch(value):
        return None
    return (f"{value!r} is not a Slurm time: give minutes (90), MM:SS, HH:MM:SS (2:00:00), D-HH, D-HH:MM or "
            "D-HH:MM:SS (quote it in YAML: time: \"2:00:00\")")


def mem_problem(value: str) -> str | None:
    return None if _MEM.fullmatch(value) else f"{value!r} is not a memory size: give megabytes (4096) or a " \
        "number with K, M, G or T (4G)"


def gpus_problem(value: str) -> str | None:
    return None if _GPUS.fullmatch(value) else f"{value!r} is not a GPU count: give a number (1) or TYPE:N (a100:2)"


def partition_problem(value: str) -> str | None:
    if value and value.isprintable() and not value.startswith("-") and not any(c.isspace() for c in value):
        return None
    return f"{value!r} is not a partition name (one word, or several separated by commas)"


def option_problem(value: str) -> str | None:
    """Why `value` cannot be an extra sbatch option: not an option, or one that breaks nw's job control."""
    if not value.startswith("-") or not value.isprintable():
        return f"{value!r} is not an sbatch option (expected e.g. --account=lab, one option per item)"
    if value.startswith("--"):
        name = value.split("=", 1)[0]  # sbatch also takes an unambiguous prefix: --ar is --array, --wr --wrap
        flag = next((f for f in REFUSED if len(name) >= 4 and f.startswith(name)), None)
    else:
        flag = REFUSED_SHORT.get(value[:2])
    return f"{value!r} cannot be used: {REFUSED[flag]}" if flag else None


def cpus_problem(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return None
    return f"{value!r} is not a CPU count: give a whole number of at least 1"


@dataclass(frozen=True)
class SlurmOptions:
    """What a job asks Slurm for, from one source (the command line, or one entry of nixworkflow.yaml)."""

    partition: str | None = None
    time: str | None = None
    cpus: int | None = None
    mem: str | None = None
    gpus: str | None = None
    extra: tuple[str, ...] = ()

    def named(self) -> dict[str, str | int | None]:
        return {"--partition": self.partition, "--time": self.time, "--cpus-per-task": self.cpus,
                "--mem": self.mem, "--gpus": self.gpus}

    def sbatch_args(self) -> list[str]:
        return layered([self])


# ---- a step's own `resources` (experiment.py's output(resources=...), experiment.nix's `resources = {...};`) ---

RESOURCE_KEYS = ("partition", "time", "cpus", "mem", "gpus", "options")  # the keys of a `slurm:` job entry


class ResourceProblem(ValueError):
    """A step's `resources` that cannot be used; the front door adds the step's name and file:line."""


def resources_options(value: object) -> SlurmOptions:
    """A step's `resources` mapping as SlurmOptions, checked by the rules `slurm:` in nixworkflow.yaml and the
    --slurm-* options follow (the same keys as a yaml job entry). Time, memory and GPUs may be whole numbers
    (minutes, megabytes, a count), as YAML reads them; anything else must be text. None or {} asks for nothing."""
    if value is None:
        return SlurmOptions()
    if not isinstance(value, Mapping):
        raise ResourceProblem(f"resources must map {', '.join(RESOURCE_KEYS[:-1])} or options to values (Python: "
                              f"{{\"gpus\": 1, \"mem\": \"64G\"}}; Nix: {{ gpus = 1; mem = \"64G\"; }}), not "
                              f"{type(value).__name__}")
    for key in value:
        if key not in RESOURCE_KEYS:
            close = difflib.get_close_matches(str(key), RESOURCE_KEYS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ResourceProblem(f"resources: unknown key {key!r} ({hint}the keys are {', '.join(RESOURCE_KEYS)})")
    checks = {"partition": partition_problem, "time": time_problem, "mem": mem_problem, "gpus": gpus_problem}
    text = {key: _resource_text(key, value.get(key), check, numbers=key != "partition")
            for key, check in checks.items()}
    cpus = value.get("cpus")
    if cpus is not None and cpus_problem(cpus):
        raise ResourceProblem(f"resources.cpus: {cpus_problem(cpus)}")
    return SlurmOptions(text["partition"], text["time"], cpus, text["mem"], text["gpus"],
                        _resource_options(value.get("options")))


def _resource_text(key: str, value: object, check: Callable[[str], str | None], numbers: bool) -> str | None:
    if value is None:
        return None
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ResourceProblem(f"resources.{key}: {value!r} is not {'text or a whole number' if numbers else 'text'}")
    problem = check(value)
    if problem:
        raise ResourceProblem(f"resources.{key}: {problem}")
    return value


def _resource_options(value: object) -> tuple[str, ...]:
    """Extra sbatch options: one string or a list of them, none refused by option_problem."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value if isinstance(value, list | tuple) else None
    if items is None or not all(isinstance(o, str) for o in items):
        raise ResourceProblem(f"resources.options: expected an sbatch option or a list of them (e.g. "
                              f"[\"--account=lab\"]), not {value!r}")
    for i, option in enumerate(items):
        problem = option_problem(option)
        if problem:
            raise ResourceProblem(f"resources.options[{i}]: {problem}")
    return tuple(items)


def layered(layers: Sequence[SlurmOptions]) -> list[str]:
    """sbatch options from several sources, lowest precedence first. A named setting (partition, time, cpus,
    mem, gpus) is given once, by the highest layer that sets it, among that layer's options; each layer's extra
    options follow its named ones. sbatch keeps the last occurrence of an option, so a higher layer wins over
    everything below it, whether the lower one named the setting or gave it as an extra option."""
    top: dict[str, int] = {}
    for i, layer in enumerate(layers):
        for flag, value in layer.named().items():
            if value is not None:
                top[flag] = i
    argv: list[str] = []
    for i, layer in enumerate(layers):
        argv += [f"{flag}={value}" for flag, value in layer.named().items() if top.get(flag) == i]
        argv += layer.extra
    return argv


@dataclass(frozen=True)
class SlurmConfig:
    """`slurm:` of a nixworkflow.yaml (nixlib.config reads and checks it): whether `nw run` uses Slurm without
    --slurm, and the settings for every job and per step name."""

    path: Path
    enabled: bool | None = None  # None: not said (Slurm only with --slurm)
    enabled_at: str = ""  # file:line of `enabled`, for messages
    default: SlurmOptions = SlurmOptions()
    steps: Mapping[str, SlurmOptions] = field(default_factory=dict)
    step_lines: Mapping[str, str] = field(default_factory=dict)  # step -> file:line of its entry


def configure(args: argparse.Namespace, directory: Path, steps: Iterable[str],
              resources: Mapping[str, SlurmOptions] | None = None) -> None:
    """Read `slurm:` from DIRECTORY/nixworkflow.yaml (the experiment's directory) into args.slurm_config and decide
    args.slurm: the command line (--slurm / --no-slurm) wins over `enabled:`. A step name under `steps:` that the
    experiment does not have is an error here, before anything runs: a typo must not silently drop a step's
    resources (its job would then fail for lack of memory or time, hours later). `resources` are the steps' own
    (the experiment's `resources=`), kept in args.slurm_resources for the action; without --slurm nothing uses them."""
    from nixlib.config import ConfigError, find_config, load_config, mentions

    args.slurm_resources = dict(resources or {})
    path = find_config(directory)
    cfg = load_config(path).slurm if path is not None and mentions(path, "slurm") else None
    args.slurm_config = cfg
    if cfg is None:
        return
    names = set(steps)
    for step, where in cfg.step_lines.items():
        if step not in names:
            close = difflib.get_close_matches(step, sorted(names), n=1)
            hint = f"did you mean '{close[0]}'?" if close else \
                f"its steps: {', '.join(sorted(names)[:12])}{' …' if len(names) > 12 else ''}"
            raise ConfigError(f"{where}: slurm.steps.{step}: the experiment has no step '{step}' ({hint}); "
                              "nothing was run")
    if getattr(args, "slurm", None) is None and cfg.enabled is not None:
        args.slurm = cfg.enabled
        args.slurm_from_config = True


def action_from_args(args: argparse.Namespace, steps: Iterable[str]) -> SlurmAction | None:
    """The action `nw run` uses: a SlurmAction with --slurm (or `enabled: true` in nixworkflow.yaml), None (run
    locally) without; refuses --slurm-* alone, bad values and a --slurm-step naming none of `steps`."""
    checked = check_args(args, steps)
    if checked is None:
        return None
    opts, per_step = checked
    cfg: SlurmConfig | None = getattr(args, "slurm_config", None)
    for tool in ("sbatch", "scontrol", "scancel"):
        if shutil.which(tool) is None:
            why = f" (`enabled: true` under `slurm:` at {cfg.enabled_at}; --no-slurm runs every step here)" \
                if cfg is not None and getattr(args, "slurm_from_config", False) else ""
            raise NixWorkflowError(f"--slurm needs the Slurm client commands, but `{tool}` is not on PATH{why}: run "
                                   "on a host that can submit jobs (a login node), or install the Slurm client "
                                   "(Debian: apt-get install slurm-client) configured for your cluster; nothing "
                                   "was run")
    return SlurmAction(opts, per_step, cfg, getattr(args, "slurm_resources", None))


PerStep = dict[str, tuple[str, ...]]  # step name -> its own sbatch options


def check_args(args: argparse.Namespace, steps: Iterable[str]) -> tuple[SlurmOptions, PerStep] | None:
    """The command line's Slurm options and per-step options, checked (`nw run -n` refuses what a run would);
    None without --slurm. Refuses --slurm-* alone, bad values and a --slurm-step naming none of `steps`."""
    opts = SlurmOptions(args.slurm_partition, args.slurm_time, args.slurm_cpus, args.slurm_mem, args.slurm_gpus,
                        tuple(args.slurm_option))
    per_step = _per_step(args.slurm_step, set(steps))
    if not getattr(args, "slurm", False):
        if opts != SlurmOptions() or per_step:
            raise NixWorkflowError("the --slurm-* options only apply to Slurm jobs: add --slurm to run cache misses "
                                   "on Slurm, or drop them to run every step here")
        return None
    _check_cli(opts)
    return opts, per_step


def _check_cli(opts: SlurmOptions) -> None:
    """The command line's values, checked by the rules nixworkflow.yaml's are, before anything runs."""
    checks = [("--slurm-partition", opts.partition, partition_problem), ("--slurm-time", opts.time, time_problem),
              ("--slurm-mem", opts.mem, mem_problem), ("--slurm-gpus", opts.gpus, gpus_problem)]
    problems = [f"{flag}: {check(value)}" for flag, value, check in checks if value is not None and check(value)]
    if opts.cpus is not None and cpus_problem(opts.cpus):
        problems.append(f"--slurm-cpus must be at least 1, not {opts.cpus}")
    problems += [f"--slurm-option: {option_problem(o)}" for o in opts.extra if option_problem(o)]
    if problems:
        raise NixWorkflowError("; ".join(problems) + "; nothing was run")


def _per_step(given: Iterable[str], steps: set[str]) -> dict[str, tuple[str, ...]]:
    """--slurm-step STEP=ARG values by step; an unknown step is an error, not a silently ignored option."""
    found: dict[str, tuple[str, ...]] = {}
    for item in given:
        step, sep, arg = _step_and_option(item, steps)
        if not sep or not arg.startswith("-"):
            raise NixWorkflowError(f"--slurm-step {item!r}: expected STEP=SBATCH_OPTION, e.g. --slurm-step "
                                   "train=--gpus=1")
        if option_problem(arg):
            raise NixWorkflowError(f"--slurm-step {item!r}: {option_problem(arg)}; nothing was run")
        if step not in steps:
            known = ", ".join(sorted(steps)[:12]) + (" …" if len(steps) > 12 else "")
            raise NixWorkflowError(f"--slurm-step {item!r}: this run has no step '{step}' (its steps: {known}); "
                                   "nothing was run")
        found[step] = (*found.get(step, ()), arg)
    return found


def _step_and_option(item: str, steps: set[str]) -> tuple[str, str, str]:
    """STEP=ARG split where ARG begins: at an `=` followed by `-` whose left side is a step of the run (a step
    name may hold `=` itself: a sweep's `sweep.lr=0.1`, `--slurm-step sweep.lr=0.1=--mem=64G`), else at the first
    such `=`, else at the first `=`."""
    cuts = [i for i, c in enumerate(item) if c == "=" and item[i + 1:i + 2] == "-"]
    i = next((i for i in cuts if item[:i] in steps), cuts[0] if cuts else item.find("="))
    return (item, "", "") if i < 0 else (item[:i], "=", item[i + 1:])


class SlurmAction:
    """An engine Action that runs a step as one Slurm batch job and returns once no process of it runs."""

    def __init__(self, options: SlurmOptions, per_step: Mapping[str, tuple[str, ...]] | None = None,
                 config: SlurmConfig | None = None, resources: Mapping[str, SlurmOptions] | None = None) -> None:
        self.options = options
        self.per_step = dict(per_step or {})  # step name -> its own sbatch options (after the run's: they win)
        self.config = config
        self.resources = dict(resources or {})  # step name -> what the experiment says the step needs

    def sbatch_args(self, step: str) -> list[str]:
        """The resources of `step`'s job. Precedence, highest first: --slurm-step, the other --slurm-* options,
        the step's entry under `slurm: steps:` in nixworkflow.yaml, the step's own `resources` in the experiment,
        then the file's `slurm:` defaults. The experiment's word on one step beats a default for every step (a
        yaml `mem: 4G` must not shrink the training step's declared 64G); whoever runs it on a particular cluster
        (the yaml's step entry, the command line) adapts it."""
        return layered(self.layers(step))

    def layers(self, step: str) -> list[SlurmOptions]:
        """The sources of `step`'s settings, lowest precedence first (see sbatch_args)."""
        default = self.config.default if self.config else SlurmOptions()
        own = self.config.steps.get(step, SlurmOptions()) if self.config else SlurmOptions()
        return [default, self.resources.get(step, SlurmOptions()), own, self.options,
                SlurmOptions(extra=self.per_step.get(step, ()))]

    def __call__(self, build: Build, command: str) -> Mapping[str, Path]:
        from nixlib.runner import CHILDREN, open_log

        if CHILDREN.stopping.is_set():
            raise Interrupted("interrupted before the step started")
        with open_log(build.log) as log:
            log.write(f"$ {command}\n".encode())
            log.flush()
            job = self._submit(build, command)
            build.provenance["slurm"] = {"job_id": job}
            _note(build, log, f"nixworkflow: submitted as Slurm job {job}")
            state, exit_code = self._wait(build, job, log)
            node = job_node(job)
            if node:
                build.provenance["slurm"] = {"job_id": job, "node": node}
        if state != "COMPLETED" or exit_code != "0:0":
            raise StepFailed(build.name, _not_on_node(build, job, state, exit_code, node)
                             or _failure(job, state, exit_code), str(build.log))
        return {"out": build.out}

    def _submit(self, build: Build, command: str) -> str:
        script = build.tmp / "slurm-job.sh"
        script.write_text(job_script(build, command))
        argv = ["sbatch", "--parsable", "--no-requeue", f"--job-name=nw-{build.name}",
                f"--output={build.tmp / 'slurm-job.out'}", f"--chdir={build.out}", *self.sbatch_args(build.name),
                str(script)]
        try:
            # In a session of its own: Ctrl-C at the terminal reaches nw's whole process group, and an sbatch killed
            # after Slurm accepted the job but before it printed the id would leave a job nobody cancels. Let it
            # answer; nw then cancels the job it names (_wait sees the interrupt).
            proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
                                  env=sbatch_environ(), start_new_session=True)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise NixWorkflowError(f"step '{build.name}' could not be submitted to Slurm: sbatch failed ({e}); "
                                   "nothing was stored") from None
        lines = proc.stdout.strip().splitlines()  # the id (`ID;CLUSTER` on a federation) is the last line
        job = lines[-1].split(";")[0] if lines else ""
        if proc.returncode != 0 or not job.isdigit():
            why = (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}").replace("\n", " ")
            raise NixWorkflowError(f"step '{build.name}' could not be submitted to Slurm: {why}. Check its resources "
                                   "(the --slurm-* options, `slurm:` in nixworkflow.yaml, the step's `resources` in "
                                   "the experiment) against `sinfo`; nothing was stored")
        return job

    def _wait(self, build: Build, job: str, log: BinaryIO) -> tuple[str, str]:
        """Poll until the job has finished, copying its output to the step's log as it comes; on an interrupt
        (or any error here) cancel it and wait until its processes are gone, so nothing writes to $out after."""
        from nixlib.runner import CHILDREN

        output = _Follower(build.tmp / "slurm-job.out", build, log)
        delay, failing_since = POLL_FIRST, None
        finished = False
        said = ""  # what the log last said of the job's queue state: a pending job must not pass for a running one
        pending_since: float | None = None
        try:
            while True:
                fields = job_fields(job)
                state, exit_code = _state_of(fields)
                output.copy()
                news = _queue_news(job, fields)
                never = never_starts(job, fields) if state == "PENDING" else None
                if never:  # a limit of the cluster's, not a queue: it would wait for ever (EnforcePartLimits=NO)
                    _note(build, log, f"nixworkflow: {never}")
                    raise StepFailed(build.name, never, str(build.log))
                if state == "PENDING":  # said once it waits long enough to matter, and again when the reason changes
                    pending_since = pending_since or time.monotonic()
                    news = news if time.monotonic() - pending_since >= PENDING_NOTE else ""
                elif not said:  # a job that started at once: no news (its submission was noted)
                    news = ""
                if news and news != said:
                    said = news
                    _note(build, log, news)
                if state in FINISHED or state == "PURGED":  # purged: finished long ago, outcome unknown (a failure)
                    finished = True
                    return state, exit_code
                if state == "":  # scontrol failed: slurmctld busy or restarting; keep asking for a while
                    failing_since = failing_since or time.monotonic()
                    if time.monotonic() - failing_since > QUERY_PATIENCE:
                        raise StepFailed(build.name, f"Slurm job {job}: its state could not be read for "
                                         f"{QUERY_PATIENCE:.0f} s (`scontrol show job {job}` fails); it was cancelled",
                                         str(build.log))
                else:
                    failing_since = None
                if CHILDREN.stopping.wait(delay):
                    raise Interrupted(f"step '{build.name}' was stopped (Slurm job {job} cancelled)",
                                      log=str(build.log))
                delay = min(delay * 1.25, POLL_MAX)
        finally:
            if not finished:
                cancel(job)
            output.copy()
            output.close()


CHUNK = 1 << 20  # bytes of a job's output copied at a time


class _Follower:
    """Appends what the job wrote to its output file since the last call to the step's log and echo."""

    def __init__(self, path: Path, build: Build, log: BinaryIO) -> None:
        self.path, self.build, self.log = path, build, log
        self.offset = 0
        self.partial = b""

    def copy(self) -> None:
        """In chunks: a step that prints hundreds of MB between two polls must not cost that much memory here."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                while data := f.read(CHUNK):
                    self._append(data)
        except FileNotFoundError:
            return
        self.log.flush()

    def _append(self, data: bytes) -> None:
        self.offset += len(data)
        self.log.write(data)
        if self.build.echo:
            *lines, self.partial = (self.partial + data).split(b"\n")
            if len(self.partial) > CHUNK:  # (a line with no end in sight: echoed in pieces)
                lines.append(self.partial)
                self.partial = b""
            for line in lines:
                self.build.echo(self.build.name, line.decode(errors="replace"))

    def close(self) -> None:
        """Echo the output's last line when it has no newline (an error message printed without one, a progress
        line): a local run echoes it too, and it is often the line that says why the step failed."""
        if self.build.echo and self.partial:
            self.build.echo(self.build.name, self.partial.decode(errors="replace"))
        self.partial = b""


# Files the batch script writes beside its output, so a failure can be told apart from the command's own:
STARTED = "slurm-job.started"  # the script ran on a node that sees the store (absent: Slurm could not start it)
ENV_MISSING = "slurm-env-missing"  # the /nix/store paths the step uses that the node does not have
_NIX_PATH = re.compile(r"/nix/store/[0-9a-z]{32}-[A-Za-z0-9+._?=-]+")


def nix_paths(build: Build, command: str) -> list[str]:
    """The /nix/store paths a step needs on the node: its env's, and those its command names."""
    return list(dict.fromkeys([*build.env_paths, *_NIX_PATH.findall(command)]))


def job_script(build: Build, command: str) -> str:
    """The batch script: run the argv a local run would use with exactly its environment (`env -i`), once it
    has noted that it started and checked that the node has the step's /nix/store paths (else a failure that
    says so, not a `command not found` the command never caused); then kill what the step left running
    (reap_script, reap_place_script) and exit with the command's status."""
    from nixlib.runner import argv_for

    env = {k: v for k, v in build.environ().items() if k not in FROM_JOB and not _of_another_job(k)}
    assigns = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(env.items()))
    from_job = " ".join(f'${{{k}+"{k}=${k}"}}' for k in FROM_JOB)  # each only if the job has it
    argv = " ".join(shlex.quote(a) for a in argv_for(build, command))
    paths = " ".join(shlex.quote(p) for p in nix_paths(build, command))
    missing = shlex.quote(str(build.tmp / ENV_MISSING))
    check = ("missing=\n"
             f"for p in {paths}; do [ -e \"$p\" ] || missing=\"$missing$p\n\"; done\n"
             'if [ -n "$missing" ]; then\n'
             f"  printf '%s' \"$missing\" > {missing}\n"
             "  echo \"nixworkflow: the step's env is not on node $(hostname): missing$(printf '%s' \"$missing\" | "
             "tr '\\n' ' ')\" >&2\n"
             "  exit 1\n"
             "fi\n") if paths else ""
    return ("#!/bin/sh\n"
            f"# nixworkflow step {build.name}: runs as `nw run` would run it here (cwd $out, strict bash)\n"
            f"cd {shlex.quote(str(build.out))} || exit 1\n"
            f": > {shlex.quote(str(build.tmp / STARTED))}\n"
            f"{check}"
            f"/usr/bin/env -i {assigns} {from_job} {argv}\n"
            "status=$?\n"
            f"{reap_place_script(str(build.out))}"  # (first: what has no marker would write while reap_script looks)
            f"{reap_script(build.marker)}"
            f"{reap_place_script(str(build.out))}"
            'exit "$status"\n')


REAP_ROUNDS = 50  # a process that forks as fast as it is killed is given up on after this many scans of /proc
UNSETTLED_ROUNDS = 10  # scans (0.05 s apart) while one of the user's processes shows no environment (mid-exec)


def reap_script(marker: str) -> str:
    """Shell lines that SIGKILL, on the node, every process of this user still carrying the step's marker (its
    environment variable, nixlib.reaper) once the step's command has ended, before the batch script exits: a
    `setsid` daemon the step left behind, which Slurm does not end under proctrack/linuxproc or pgid, would
    otherwise keep writing into $out after Slurm said COMPLETED, into the object stored from it (a local run
    reaps it the same way). One `grep -l` reads every environment per scan (a grep per process took seconds on a
    loaded node, time a daemon could use to write); only the user's own processes are killed (`-O`). A live
    process whose environment reads empty may be in the middle of an exec (the daemon exec'ing `setsid` as the
    step's shell exits), so the scan is repeated a few times while there is one (nixlib.reaper does the same)."""
    return ("PATH=/usr/bin:/bin:$PATH rounds=0 unsettled=0\n"
            f"while [ $rounds -lt {REAP_ROUNDS} ]; do\n"
            "  left= empty=\n"
            f"  for e in $(grep -lsz '^{marker}=' /proc/[0-9]*/environ); do\n"
            "    p=${e#/proc/}; p=${p%/environ}\n"
            "    [ -O \"$e\" ] && kill -9 \"$p\" 2>/dev/null && left=1\n"
            "  done\n"
            "  if [ -z \"$left\" ]; then\n"
            "    for e in $(grep -Lsz . /proc/[0-9]*/environ); do  # (a process that ends meanwhile is not listed)\n"
            "      [ -O \"$e\" ] || continue\n"
            "      p=${e#/proc/}; p=${p%/environ}\n"
            "      read -r st < \"/proc/$p/stat\" 2>/dev/null || continue\n"
            "      set -- ${st##*) }  # (state, ppid: not a zombie, not init, not a kernel thread)\n"
            "      case $1 in Z*|X*) continue ;; esac; [ \"$2\" = 2 ] || [ \"$p\" -le 2 ] || empty=1\n"
            "    done\n"
            f'    [ -n "$empty" ] && [ $unsettled -lt {UNSETTLED_ROUNDS} ] || break\n'
            "    unsettled=$((unsettled + 1)); sleep 0.05; continue\n"
            "  fi\n"
            "  rounds=$((rounds + 1)); sleep 0.1\n"
            "done\n")


def reap_place_script(out: str) -> str:
    """Shell lines that SIGKILL, on the node, every process still working in $out or holding open or mapping a file
    of it, after reap_script: one that also cleared its environment (`setsid env -i …`) carries no marker, but a
    working directory, a descriptor or a mapping is how it would still write into the object stored from $out. One
    `find` lists every process's working directory and descriptors and one `grep -l` their mappings; $out is the
    step's own build directory (a random name), so nothing else works there. The script itself leaves it first."""
    return (f"cd / && NW_OUT={shlex.quote(out)} && export NW_OUT && rounds=0\n"
            f"while [ $rounds -lt {REAP_ROUNDS} ]; do\n"
            "  left=\n"
            "  for p in $({ find /proc/[0-9]*/cwd /proc/[0-9]*/fd -maxdepth 1 -type l -printf '%p\\t%l\\n' "
            "2>/dev/null | awk -F '\\t' '$2 == ENVIRON[\"NW_OUT\"] || index($2, ENVIRON[\"NW_OUT\"] \"/\") == 1 "
            "{ split($1, a, \"/\"); print a[3] }'; grep -lsF \"$NW_OUT/\" /proc/[0-9]*/maps | cut -d/ -f3; } "
            "| sort -u); do\n"
            "    [ \"$p\" != $$ ] && [ -O \"/proc/$p\" ] && kill -9 \"$p\" 2>/dev/null && left=1\n"
            "  done\n"
            "  [ -n \"$left\" ] || break\n"
            "  rounds=$((rounds + 1)); sleep 0.1\n"
            "done\n")


def job_state(job: str) -> tuple[str, str]:
    """(JobState, ExitCode) of a job from `scontrol show job`; ("", "") when scontrol fails, ("PURGED", "")
    when slurmctld no longer knows it (it finished more than MinJobAge ago)."""
    return _state_of(job_fields(job))


def job_fields(job: str) -> dict[str, str] | None:
    """The KEY=VALUE fields of `scontrol show job -o` (JobState, ExitCode, Reason, NodeList, ...); {} when
    slurmctld no longer knows the job, None when scontrol fails."""
    try:
        proc = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return {} if "Invalid job id" in proc.stderr else None
    return dict(re.findall(r"(?:^|\s)(JobState|ExitCode|Reason|NodeList|TimeLimit|Partition)=(\S+)", proc.stdout))


def _state_of(fields: dict[str, str] | None) -> tuple[str, str]:
    if fields is None:
        return "", ""
    if not fields:
        return "PURGED", ""
    return fields.get("JobState", ""), fields.get("ExitCode", "")


def _queue_news(job: str, fields: dict[str, str] | None) -> str:
    """What the step's log says of a job waiting in the queue or started: pending and Slurm's reason (held, no
    resources, a limit, a node down: the user's to act on), then where it runs. "" otherwise."""
    state = (fields or {}).get("JobState", "")
    if state == "PENDING":
        reason = fields.get("Reason", "") if fields else ""
        return f"nixworkflow: Slurm job {job} is pending" + (f" ({reason})" if reason not in ("", "None") else "")
    if state == "RUNNING":
        node = fields.get("NodeList", "") if fields else ""
        return f"nixworkflow: Slurm job {job} is running" + (f" on {node}" if node not in ("", "(null)") else "")
    return ""


_PER_JOB_LIMIT = re.compile(r"(?:QOS|Assoc)Max\w*PerJob\w*")


def cannot_start(reason: str) -> bool:
    """Whether Slurm's reason for a pending job is a limit the job itself exceeds (its partition's time or node
    limit, its QOS's or account's per-job limit): as submitted, it can never start."""
    return reason in ("PartitionTimeLimit", "PartitionNodeLimit") or bool(_PER_JOB_LIMIT.fullmatch(reason))


@dataclass(frozen=True)
class Knobs:
    """Where a front door's user changes what a job asks for, named in the message of a job that can never start."""

    time: str = "`time` (--slurm-time, or in the step's resources or under `slurm:` in nixworkflow.yaml)"
    resources: str = "its resources (the --slurm-* options, the step's resources, `slurm:` in nixworkflow.yaml)"
    partition: str = "another partition"


def never_starts(job: str, fields: dict[str, str] | None, knobs: Knobs = Knobs()) -> str | None:
    """Why a pending job can never start as submitted, or None (cannot_start). Unless the cluster rejects such a
    job at submission (EnforcePartLimits), Slurm keeps it pending for ever, and `nw run` would wait for ever."""
    fields = fields or {}
    reason, partition, limit = fields.get("Reason", ""), fields.get("Partition", ""), fields.get("TimeLimit", "")
    if not cannot_start(reason):
        return None
    where = f"partition {partition}" if partition not in ("", "(null)") else "its partition"
    if reason == "PartitionTimeLimit":
        most = partition_max_time(partition) if where != "its partition" else ""
        allows = f"MaxTime {most}" if most else "`sinfo -o '%P %l'` lists each partition's limit"
        why = (f"its time limit ({limit}) is longer than {where} allows ({allows}): lower {knobs.time} or choose "
               f"{knobs.partition}")
    elif reason == "PartitionNodeLimit":
        why = (f"the nodes it asks for are outside the limits of {where} (`scontrol show partition`): change "
               f"{knobs.resources} or choose {knobs.partition}")
    else:
        why = ("it asks for more than its QOS or account allows one job (`sacctmgr show qos`, `sacctmgr show "
               f"assoc`): lower {knobs.resources} or use another QOS or account")
    return f"Slurm job {job} can never start (Slurm's reason: {reason}): {why}; it was cancelled, nothing was stored"


def partition_max_time(partition: str) -> str:
    """A partition's MaxTime (`scontrol show partition`: `00:05:00`, `UNLIMITED`), "" when Slurm cannot say (a job
    submitted to several partitions, scontrol failing). Asked only when a failure is reported."""
    if not partition or "," in partition:
        return ""
    try:
        proc = subprocess.run(["scontrol", "show", "partition", "-o", partition], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    found = re.search(r"(?:^|\s)MaxTime=(\S+)", proc.stdout) if proc.returncode == 0 else None
    return found.group(1) if found else ""


PENDING_BATCH = 1000  # job ids per `squeue -j` (one argument of the command line, well below its length limit)


def pending_reasons(jobs: Iterable[str]) -> dict[str, str]:
    """Slurm's reason for each of `jobs` still pending (`squeue -t PD`), asked in one call per PENDING_BATCH jobs,
    whatever their number (one `scontrol show job` per job would load slurmctld); jobs no longer pending, unknown
    to Slurm, or when squeue fails, are left out."""
    ids = sorted(set(jobs))
    reasons: dict[str, str] = {}
    for i in range(0, len(ids), PENDING_BATCH):
        batch = ids[i:i + PENDING_BATCH]
        try:
            proc = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i %r", "-j", ",".join(batch)],
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        asked = set(batch)
        for line in proc.stdout.splitlines():  # an id Slurm has forgotten makes squeue fail, but the others print
            job, _, reason = line.strip().partition(" ")
            if job in asked:
                reasons[job] = reason.strip()
    return reasons


def job_node(job: str) -> str:
    """Where the job ran: its NodeList (`scontrol show job`, else `sacct`), "" when Slurm cannot say (it never
    started, or nobody remembers it)."""
    try:
        proc = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=60)
        found = re.search(r"(?:^|\s)NodeList=(\S+)", proc.stdout) if proc.returncode == 0 else None
        if found is None:
            proc = subprocess.run(["sacct", "-j", job, "-X", "-n", "-P", "-o", "NodeList"], capture_output=True,
                                  text=True, stdin=subprocess.DEVNULL, timeout=60)
            found = re.match(r"\s*(\S+)", proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return ""
    node = found.group(1) if found else ""
    return "" if node in ("(null)", "None", "") or node.startswith("None") else node


def final_state(job: str, stop: threading.Event | None = None) -> tuple[str, str]:
    """(JobState, ExitCode) of `job` once Slurm says no process of it runs any more, asked of Slurm itself: for
    a front door told "done" by someone else (the Snakemake Slurm plugin also reports a job whose status it
    cannot read, UNKNOWN, as a success). A job slurmctld has purged is looked up in `sacct` (if there is
    accounting); ("PURGED", "") when nobody can say. ("", "") if `stop` is set or scontrol keeps failing."""
    delay, failing_since = POLL_FIRST, None
    while True:
        state, exit_code = job_state(job)
        if state == "PURGED":
            return accounted_state(job)
        if state in FINISHED:
            return state, exit_code
        if state == "":
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > QUERY_PATIENCE:
                return "", ""
        else:
            failing_since = None
        if stop is None:
            time.sleep(delay)
        elif stop.wait(delay):
            return "", ""
        delay = min(delay * 1.25, POLL_MAX)


def accounted_state(job: str) -> tuple[str, str]:
    """(State, ExitCode) of a finished job from Slurm's accounting (`sacct`); ("PURGED", "") without it."""
    try:
        proc = subprocess.run(["sacct", "-j", job, "-X", "-n", "-P", "-o", "State,ExitCode"], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "PURGED", ""
    fields = proc.stdout.strip().splitlines()[0].split("|") if proc.returncode == 0 and proc.stdout.strip() else []
    if len(fields) != 2 or fields[0].split()[0] not in FINISHED:  # "CANCELLED by 0": the state is the first word
        return "PURGED", ""
    return fields[0].split()[0], fields[1]


def cancel(*jobs: str) -> list[str]:
    """scancel the jobs and wait (bounded) until slurmctld says they have finished: their processes are gone.
    Returns those still not finished after CANCEL_WAIT."""
    if not jobs:
        return []
    try:
        subprocess.run(["scancel", *jobs], capture_output=True, stdin=subprocess.DEVNULL, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass  # still wait: a job may end anyway (its time limit), and the bound holds
    return wait_ended(jobs, CANCEL_WAIT)


def jobs_named(name: str) -> list[str]:
    """The ids of this user's jobs named `name` that Slurm still lists (any state); [] if squeue fails."""
    try:
        proc = subprocess.run(["squeue", "-h", "-u", str(os.getuid()), "-n", name, "-o", "%i"], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()] if proc.returncode == 0 else []


def wait_ended(jobs: Iterable[str], timeout: float) -> list[str]:
    """Wait until Slurm says each job has finished (no process of it runs: after scancel, Slurm's KillWait may
    pass first), or `timeout` seconds; returns the jobs still not finished then."""
    left = list(jobs)
    deadline = time.monotonic() + timeout
    while left:
        left = [job for job in left if job_state(job)[0] not in FINISHED | {"PURGED"}]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    return left


def _not_on_node(build: Build, job: str, state: str, exit_code: str, node: str) -> str | None:
    """Why a job failed before the step's command ran, when the node lacks what the submitting host has: the
    store's scratch directory (the store root is not shared), or the step's /nix/store paths; None otherwise.
    Slurm reports the first as state FAILED with a bare code (0:53), the second would be `command not found`."""
    where = f"node {node}" if node else "its node"
    try:
        missing = (build.tmp / ENV_MISSING).read_text().split()
    except OSError:
        missing = []
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return (f"Slurm job {job} could not run it: the step's env is not on {where} ({missing[0]}{more} is missing "
                "there); /nix/store must be on a filesystem the compute nodes share, or the same store paths "
                "present on every node (docs/slurm.md, Requirements); nothing was stored")
    if state == "FAILED" and not (build.tmp / STARTED).exists():
        return (f"Slurm job {job} failed before the step's command started (state FAILED, exit code {exit_code}): "
                f"{where} could not use the step's scratch directory {build.tmp} (the job's working directory and "
                f"output file). The store root {build.store_root} must be on a filesystem shared by this host and "
                "the compute nodes, at the same path (docs/slurm.md, Requirements); nothing was stored")
    return None


def _failure(job: str, state: str, exit_code: str) -> str:
    """Why the job counts as failed, in the user's words."""
    status, _, sig = exit_code.partition(":")
    if state == "COMPLETED" or (state == "FAILED" and status not in ("", "0")):
        return f"command exited with status {status} (Slurm job {job})"
    hints = {"TIMEOUT": "it ran out of time: raise --slurm-time (or `time` in the step's resources or under `slurm:` "
                        "in nixworkflow.yaml)",
             "OUT_OF_MEMORY": "it ran out of memory: raise --slurm-mem (or `mem` in the step's resources or under "
                              "`slurm:`)",
             "CANCELLED": "it was cancelled (scancel, or by an administrator)",
             "PURGED": "slurmctld no longer knows it, so whether it succeeded is unknown",
             "NODE_FAIL": "its node failed"}
    detail = hints.get(state, f"it ended in state {state}" + (f" (signal {sig})" if sig not in ("", "0") else ""))
    return f"Slurm job {job} did not complete: {detail}; nothing was stored"


def _note(build: Build, log: BinaryIO, text: str) -> None:
    log.write((text + "\n").encode())
    log.flush()
    if build.echo:
        build.echo(build.name, text)


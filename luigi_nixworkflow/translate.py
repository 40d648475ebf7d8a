"""A NixTask as a Recipe: what the engine keys, looks up and runs.

The key covers the task family, its significant parameters, a digest of its code, the Config values it
reads (keying.py), its env identity, the content of plain upstream LocalTargets and, through recipe
inputs with step references, its upstream NixTasks (inputs.py; their recipe keys before they exist,
their content hashes once realised: early cutoff comes from `Recipe.resolved_key`); a command() adds
what it references (commands.py). This module assembles them; it never runs or looks anything up.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from luigi.task import flatten

from luigi_nixworkflow import claims, commands, keying, legacy, settings
from luigi_nixworkflow.inputs import Pending, logical_name, step_inputs, unhashable, upstream
from nixlib import codefiles, configfiles, hostenv, makefiles, statics
from nixlib.errors import NixWorkflowError
from nixlib.names import check_step_name, name_problem
from nixlib.recipe import Recipe, RunOptions

if TYPE_CHECKING:
    from luigi_nixworkflow.task import NixTask


def build(task: NixTask, root: str, kind: str, runnable: bool = False) -> Recipe:
    """The task's recipe; raises Pending while a plain upstream output is missing. Only a `runnable`
    recipe carries the shell form of its command (what runs; not keyed, so complete() skips it)."""
    cls = type(task)
    if name_problem(task.task_id) is not None:
        check_step_name(task.task_id, f"Luigi task {task.task_family} (its task_id names the step and its output link)")
    luigi_part: dict[str, Any] = {"family": task.task_family, "params": keying.params(task),
                                  "code": keying.code_digest(cls)}
    configs = keying.config_values(cls)
    if configs:
        luigi_part["configs"] = configs
    variables = keying.environment(cls)
    if variables:  # (a class that reads none keeps the key it had)
        luigi_part["environment"] = variables
    extra: dict[str, Any] = {"luigi": luigi_part}
    choice = settings.choose_env(cls)  # a misnamed env is an error now, even while inputs are still missing
    deps = task.nix_requires()
    covered: set[type] = set()
    ups, files, local, opaque = upstream(root, deps, covered)
    named = keying.named_tasks(task, covered)
    if named:  # (a class that names no task class it does not require keeps the key it had)
        luigi_part["tasks"] = named
    if kind != "legacy" and (opaque or len(ups) < len(deps)):  # (a legacy task reading one runs as plain Luigi)
        _refuse_unhashable(task)
    mentioned: set[str] = set()
    shell: str | None = None
    outputs: tuple[str, ...] = ("out",)
    written: list[Any] = []
    if kind == "shell":
        command, shell, inputs = commands.translate(task, root, local, deps, mentioned, runnable)
    elif kind == "legacy":
        written = legacy.paths(task)
        claims.claim(task, written)  # (another task of this build declaring one of them fails the build)
        _own_outputs_out(files, written, root)
        outputs = legacy.output_names(len(written))
        luigi_part["outputs"] = [logical_name(str(p)) for p in written]
        command, inputs = f"python {task.task_family}.run", []
    else:
        command, inputs = f"python {task.task_family}.produce", []
    # (made only when a parameter or a word can name a file: most tasks have none)
    declared = lambda: {str(p) for p in written} | {os.path.abspath(p) for p in local}  # noqa: E731
    ran: list[str] = []  # (the absolute paths of those scripts)
    scripts = _scripts(cls, kind, command, root, declared, ran)
    if scripts:  # the project's scripts it runs (`subprocess.run([sys.executable, "scripts/clean.py"])`)
        luigi_part["runs"] = scripts
    files.update(_param_files(task, root, declared, ups))  # files its parameters name, by content
    # data files its code names by a literal path (`open("data/lookup.csv")` in run()), or command() by an absolute one
    files.update(_code_data(task, declared, deps, files, command if kind == "shell" else None, ran))
    for up in ups:
        recipe = up.nix_recipe(root=root)
        if recipe is None:
            raise Pending(up.task_id)
        if up.task_id not in mentioned:  # required but not interpolated: keyed all the same
            inputs += step_inputs(up, recipe, root)
    env, configured = settings.resolve_env(cls, command, choice)
    options = _options(cls, kind, configured)
    expanded = hostenv.keyed(command, options) if kind == "shell" else {}
    if expanded:  # `$SEED` in command(): the worker's environment is what the step sees
        luigi_part["command_environment"] = expanded
    read = keying.scripts_environment(cls, ran, command if kind == "shell" else None, options)
    if read:  # `$SCALE` in the run.sh it runs (nixlib.envreads); a task whose scripts read none keeps its key
        luigi_part["runs_environment"] = read
    if opaque:
        extra["opaque"] = opaque
    return Recipe(name=task.task_id, command=command, inputs=inputs, env=env.identity, env_paths=env.paths,
                  outputs=outputs, files=dict(sorted(files.items())), extra=extra, options=options, shell=shell)


def _own_outputs_out(files: dict[str, str], written: list[Any], root: str) -> None:
    """A plain task's directory input holding this task's own declared output (`Setup` declares out/, the task
    writes out/b.txt) is keyed without it (statics.hashed_without): run() reads that directory with its output
    moved aside, and keyed with it, the task's first result would change its own key (run again at the next
    build, and at every build if what it writes differs each time)."""
    if not files:
        return
    inside: dict[str, list[str]] = {}
    for p in written:
        for above in p.parents:
            name = logical_name(str(above))
            if files.get(name, "absent") != "absent":
                inside.setdefault(name, []).append(str(p))
    for name, own in inside.items():
        real = os.path.realpath(name)
        for key in [k for k in files if k == name or k.startswith(name + "/")]:
            del files[key]
        parts = statics.hashed_without(settings.engine(root).store.memo, real,
                                       [os.path.join(real, os.path.relpath(p, os.path.abspath(name))) for p in own])
        files.update((f"{name}/{rel}", h) for rel, h in parts.items())


def _refuse_unhashable(task: NixTask) -> None:
    """A command() or produce() that reads a target whose content the store cannot hash (inputs.unhashable) cannot
    be keyed by what it reads, and cannot run as a plain Luigi task either (its output is a NixTarget)."""
    reads = unhashable(task)
    if reads:
        raise NixWorkflowError(
            f"task {task.task_id} reads {', '.join(reads[:3])}{' …' if len(reads) > 3 else ''}, whose content the "
            "store cannot hash: its result would be served after that content changed. Copy the data into a "
            "LocalTarget with a plain task in between (its file is then keyed by content), or write this task in "
            "the plain Luigi shape (run() and output()), which then runs uncached, as plain Luigi runs it")


def _param_files(task: NixTask, root: str, declared: Callable[[], set[str]], ups: list[Any]) -> dict[str, str]:
    """Files its parameters name, by content (keying.param_files), except a file an upstream task it requires
    writes (a legacy NixTask's declared output, passed down as a path): that one is keyed as the upstream's
    result, and whether it is on disk when the key is computed (restored or not yet) must not change the key."""
    named = keying.param_files(task, root, declared)
    if not named:
        return named
    produced = {str(p) for up in ups if up.nix_kind() == "legacy" for p in legacy.paths(up)}
    return {k: h for k, h in named.items() if os.path.abspath(k.split(":", 2)[2]) not in produced}


def _code_data(task: NixTask, declared: Callable[[], set[str]], deps: list[Any], keyed: dict[str, str],
               command: str | None, scripts: list[str]) -> dict[str, str]:
    """Data files the task's code names by a literal path (keying.named_data) or, for a command() (`command`: its
    keyed text), that the command names by an absolute path (keying.command_data), and those the project `scripts`
    it runs name (keying.script_data), except a file a task it requires declares as its output (keyed as that
    task's result, whether on disk yet or not) and one a parameter names (keyed as the parameter's already)."""
    if command is None and not scripts and not keying.data_words(type(task)) \
            and not keying.param_templates(type(task)):  # (the common case: two memo lookups)
        return {}

    def produced() -> set[str]:
        out = {os.path.abspath(k.split(":", 2)[2]) for k in keyed if k.startswith("param:")}
        for dep in deps:
            try:
                targets = flatten(dep.output())
            except Exception:  # noqa: BLE001 - its own complete() will report it
                continue
            out.update(str(t.path) for t in targets if isinstance(getattr(t, "path", None), str))
        return out

    found = keying.script_data(type(task), scripts, declared, produced, command) \
        if scripts or (command is not None and configfiles.command_dirs(command)) else {}
    if command is not None:
        return {**found, **keying.command_data(type(task), command, declared, produced)}
    return {**found, **keying.named_data(type(task), declared, produced), **keying.template_data(task, declared,
                                                                                                   produced)}


def _scripts(cls: type, kind: str, command: str, root: str, declared: Callable[[], set[str]],
             paths: list[str]) -> dict[str, str]:
    """The project's code files the task runs (nixlib.codefiles): named in its code's string constants, or,
    for a command(), by an absolute path in the command outside the store; never one of the `declared()`
    paths (its outputs, its plain inputs). `paths` receives their absolute paths."""
    if kind == "shell":  # (it runs in its output directory: only an absolute path names a project file)
        absolute = codefiles.command_paths(command, root)
        modules = codefiles.command_modules(command)  # (`python -m pkg.train`: an editable install's package)
        if not absolute and not modules:
            return {}
        cds = keying.command_dirs(cls, command)  # (`cd /proj && python train.py`: relative to where it changes into)
        words = absolute + [os.path.join(d, w) for d in cds for w in codefiles.words(command) if not os.path.isabs(w)]
        imports = keying.import_dirs(cls, command, cds)  # (where its Pythons import the project's package from)
        words += [p for d in imports for p in codefiles.module_paths(modules, d)]
        # `make -C {HERE}/sub`: its makefile; `cd {HERE} && python3 -c 'import helpers'`: the modules it imports
        words += [*makefiles.of_command(command, cds), *codefiles.inline_modules(command, [*imports, *cds])]
        return keying.named_code(words, keying.module_dirs(cls), declared(), command=True, paths=paths,
                                 imports=imports)
    words = [*keying.script_words(cls), *keying.module_files(cls), *keying.make_files(cls)]
    if not words:
        return {}
    return keying.named_code(words, keying.module_dirs(cls), declared(), paths=paths,
                             imports=keying.import_dirs(cls, None))


@functools.lru_cache(maxsize=1024)
def _options(cls: type, kind: str, configured: RunOptions) -> RunOptions:
    """How the task runs: the class's own settings over its env's (fixed per class and env: made once)."""
    own = {o: settings.of_class(cls, o) for o in ("pure", "sandbox", "network", "gpu")}
    options = RunOptions(**{o: getattr(configured, o) if v is None else v for o, v in own.items()})
    if kind != "shell":  # run() and produce() run inside the worker: no sandbox can wrap them
        options = dataclasses.replace(options, sandbox=False)
    if kind == "legacy":  # a declared LocalTarget written empty is Luigi's marker file: done (legacy.check_written)
        options = dataclasses.replace(options, empty_files=True)
    if settings.of_class(cls, "allow_empty"):
        options = dataclasses.replace(options, allow_empty=True)
    if settings.of_class(cls, "resumable"):  # a persistent $state keyed by the resolved key (nixlib.checkpoints)
        options = dataclasses.replace(options, resumable=True)
    return options


def reset() -> None:
    """Forget the memoised run options (a class's attributes changed in a long-lived interpreter)."""
    _options.cache_clear()

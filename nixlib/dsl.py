"""The Python front door: `output()` and `static()`, and loading an experiment.py into recipes.

`output()` returns a `Step`, which *is* a string: its placeholder path. Every way Python
builds strings (f-strings, `.format`, `%`, `+`, `str.join`) copies the placeholder into
the dependant's command, and the reference scanner recovers the dependency from there,
exactly as Nix string context does. Nothing runs and nothing is stored while the file is
evaluated; `nw run` turns the steps into recipes and hands them to the engine.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import runpy
import sys
import traceback
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixlib import codefiles, configfiles, context, envreads, hostenv, makefiles, nar, pyimports, slurm, statics
from nixlib import env as envmod
from nixlib.command import CommandSyntaxError, CommandTooLong, expanded_variables, normalise, shell_form
from nixlib.errors import NixWorkflowError, check_readable
from nixlib.lineage import OUT_DIR
from nixlib.names import check_step_name, name_problem
from nixlib.nix import STORE_DIR
from nixlib.recipe import Input, Recipe, RunOptions, canonical_json
from nixlib.slurm import SlurmOptions
from nixlib.statmemo import StatMemo
from nixlib.store import default_root


def _root() -> str:
    return str(default_root().absolute())


class Step(str):
    """A step's placeholder path, carrying the step's definition."""

    command: str
    name: str | None
    env: Any
    pinned: str | None
    options: RunOptions
    hash32: str
    where: str
    resources: Any  # what the step asks Slurm for, as written (checked when named); not part of its identity

    def __new__(cls, command: str, name: str | None, env: Any, pinned: str | None, options: RunOptions,
                where: str, resources: Any = None) -> Step:
        if not isinstance(command, str):
            raise NixWorkflowError(f"{where}: output() takes the command as a string, not {type(command).__name__}")
        if name is not None:
            check_step_name(name, where)
        identity = canonical_json([command, name, repr(env), pinned, vars(options)])  # resources: never in it
        token, hash32 = context.placeholder(_root(), identity, name or "output")
        same = _DEFINED.get(hash32)
        if same is not None and (same.resources or None) != (resources or None):
            raise NixWorkflowError(f"{where}: this step is also defined at {same.where} with other resources "
                                   f"({same.resources!r} there, {resources!r} here); it is one step (the same command "
                                   "and options), so it has one set of resources: give both the same")
        self = super().__new__(cls, token)
        self.command, self.name, self.env, self.pinned, self.options = command, name, env, pinned, options
        self.hash32, self.where, self.resources = hash32, where, resources
        _DEFINED[hash32] = self
        return self

    def checkpoint(self, name: str, hash: str | None = None) -> Step:
        """Checkpoint `name` of this step, as an input of another step: it is served as soon as this step
        publishes it (this step must be declared with checkpoints=True; docs/resume.md). With `hash` (what
        `nw pin STEP --checkpoint NAME` prints) it is that object: served as is, and this step is not needed."""
        return Checkpoint(self, name, _caller(), hash)


class Checkpoint(Step):
    """A reference to one checkpoint of a step (`model.checkpoint("epoch-2")`); interpolated like a step."""

    producer: Step
    checkpoint: str

    def __new__(cls, producer: Step, name: str, where: str,  # type: ignore[misc]
                pinned: str | None = None) -> Checkpoint:
        from nixlib import checkpoints

        problem = checkpoints.name_problem(name) if isinstance(name, str) else "it is not a string"
        if problem is not None:
            raise NixWorkflowError(f"{where}: {name!r} cannot name a checkpoint: {problem}")
        if pinned is not None and not nar.is_nar_hash(pinned):
            raise NixWorkflowError(f"{where}: hash {pinned!r} of checkpoint {name!r} is not a 52-character Nix "
                                   "base32 SHA-256 (`nw pin STEP --checkpoint NAME` prints it)")
        if pinned is None and (not producer.options.checkpoints or producer.pinned is not None):
            raise NixWorkflowError(f"{where}: checkpoint {name!r} of a step that publishes none: declare the step "
                                   "with checkpoints=True (a step pinned with hash= publishes none; pin the "
                                   "checkpoint itself with hash=)")
        identity = canonical_json(["checkpoint", producer.hash32, name] + ([pinned] if pinned else []))
        token, hash32 = context.placeholder(_root(), identity, "output")  # the scanner matches unnamed steps so
        self = str.__new__(cls, token)
        self.command, self.name, self.env, self.pinned = "", None, None, pinned
        self.options, self.hash32, self.where, self.resources = RunOptions(), hash32, where, None
        self.producer, self.checkpoint = producer, name
        _DEFINED[hash32] = self
        return self


# A script copied into a store by content (Nix's `${./train.py}`, `static("train.py")`) keeps its text, which its key
# covers, but not the values of the variables it reads.
_NIX_SOURCE = re.compile(re.escape(STORE_DIR.rstrip("/"))
                         + r"/[0-9a-z]{32}-[A-Za-z0-9+._?=-]+")


def _stored_scripts_variables(command: str, refs: Iterable[context.Ref[Any]]) -> frozenset[str]:
    """The environment variables the scripts a command runs from a store read by name (nixlib.envreads): a file
    Nix copied into /nix/store (`python3 ${./train.py}`: /nix/store/<hash>-train.py) or a static() file (by its
    source, which it holds the bytes of). Their content is keyed, but `SCALE=3 nw run` must not be served what
    `SCALE=2` made, as for a script the command names in the project."""
    files = [m.group(0) for m in _NIX_SOURCE.finditer(command)]
    files += [str(s.source) for r in refs if r.target is None
              and (s := _STATICS.get(str(r.obj))) is not None and s.source is not None]
    names: set[str] = set()
    for f in dict.fromkeys(files):
        if os.path.isfile(f):  # (not a package's directory: `${pkgs.hello}/bin/hello` names a tool, not project code)
            names.update(envreads.file_variables(f))  # (by its suffix, else its `#!` line; memoised by stat)
    return frozenset(names)


class Static(str):
    """A static input: its future store path, plus where it comes from."""

    source: Path | None
    hash: str
    where: str

    def __new__(cls, source: Path | None, h: str, where: str) -> Static:
        self = super().__new__(cls, f"{_root()}/store/{h}")
        self.source, self.hash, self.where = source, h, where
        _STATICS[h] = self
        return self


_DEFINED: dict[str, Step] = {}
_STATICS: dict[str, Static] = {}


def _caller() -> str:
    """file:line of the experiment code that called output()/static(), for error messages. (Walks frames
    directly: traceback.extract_stack reads every frame's source line and cost more than the rest of output().)"""
    frame = sys._getframe(1)
    while frame is not None:
        if not frame.f_code.co_filename.endswith(("nixlib/dsl.py", "nixlib\\dsl.py")):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


def _caller_dir() -> Path:
    """The directory of the file that called static(): relative paths are taken from there, as Nix takes a path
    from the file it is written in, so `nw run` gives the same inputs from any working directory. Code with no
    file (`python -c`, an interactive session) falls back to the current directory."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not frame.filename.endswith(("nixlib/dsl.py", "nixlib\\dsl.py")):
            if os.path.isfile(frame.filename):
                return Path(frame.filename).absolute().parent
            break
    return Path(os.getcwd())


def output(cmd: str, name: str | None = None, env: Any = None, hash: str | None = None, *, pure: bool = False,
           sandbox: bool = False, network: bool | None = None, gpu: bool = False, resumable: bool = False,
           allow_empty: bool = False, checkpoints: bool = False, resources: Mapping[str, Any] | None = None) -> Step:
    """Declare a step whose `$out` directory is the output of `cmd` run in `env`.

    `hash` pins the step to an existing store object: the step is then never run and the
    object is served as is (an error if the store lacks it) — for results of long runs
    that downstream work should build on now. `resumable` gives the step a persistent
    `$state` directory (checkpoints) that survives failures and interrupts, keyed by everything
    that determines its result (a changed input starts afresh; docs/resume.md). A step whose `$out`
    is left empty fails (it usually means the command did not do its work) unless `allow_empty`.
    `checkpoints` lets the step publish named snapshots while it runs (`$NW_CHECKPOINTS`, docs/resume.md).
    `resources` says what the step's Slurm job needs (`{"gpus": 1, "mem": "64G", "time": "2:00:00", "cpus": 8}`;
    the keys of `slurm:` in nixworkflow.yaml, docs/slurm.md): used by `nw run --slurm` only, and not part of
    the step's key, so changing them re-runs nothing.
    """
    if hash is not None and not nar.is_nar_hash(hash):
        raise NixWorkflowError(f"{_caller()}: hash {hash!r} is not a 52-character Nix base32 SHA-256")
    flags = {"pure": pure, "sandbox": sandbox, "gpu": gpu, "resumable": resumable, "allow_empty": allow_empty,
             "checkpoints": checkpoints, "network": network}
    options = RunOptions(**{k: _flag(k, v) for k, v in flags.items()})
    return Step(cmd, name, env, hash, options, _caller(), dict(resources) if isinstance(resources, Mapping)
                else resources)


def _flag(option: str, value: Any) -> bool | None:
    """An on/off option of output() as a bool. Anything else is an error naming the caller's file and line: a
    string is true whatever it says (`sandbox="false"` would switch the sandbox on, `gpu="no"` ask for a GPU), and
    experiment.nix refuses the same values. A NumPy bool (a sweep built with NumPy) is a bool; `network` may be
    None (its default: open when loose, closed in the sandbox)."""
    if isinstance(value, bool) or (value is None and option == "network"):
        return value
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    raise NixWorkflowError(f"{_caller()}: output() option {option} must be True or False"
                           f"{' (or None)' if option == 'network' else ''}, not {value!r} ({type(value).__name__})")


def static(path: str | os.PathLike | None = None, hash: str | None = None, name: str | None = None) -> Static:
    """Use a file or directory as an input by content; with `hash`, verify it (or take it from the store).
    A relative `path` is taken from the directory of the file that calls static() (the experiment's), not
    from the current directory."""
    where = _caller()
    if hash is not None and not nar.is_nar_hash(hash):
        raise NixWorkflowError(f"{where}: static hash {hash!r} is not a 52-character Nix base32 SHA-256")
    if path is None:
        if hash is None:
            raise NixWorkflowError(f"{where}: static() needs a path, a hash, or both")
        return Static(None, hash, where)
    source = Path(path)
    if not source.is_absolute():
        source = _caller_dir() / source
    if not os.path.lexists(source):
        if hash is not None and (default_root() / "store" / hash).exists():
            return Static(None, hash, where)
        beside = Path(os.getcwd()) / path
        hint = (f" (relative paths are taken from the experiment file's directory, {source.parent}, not the current "
                f"directory: {beside} exists; give an absolute path to use it)"
                if not Path(path).is_absolute() and os.path.lexists(beside) else "")
        raise NixWorkflowError(f"{where}: static input {source} does not exist{hint}. Create it, fix the path, or "
                               "give hash= of an object already in the store.")
    if not os.path.exists(source):
        raise NixWorkflowError(f"{where}: static input {source} is a symlink to {os.path.realpath(source)}, which does "
                               "not exist")
    real, h = statics.content(StatMemo.for_store(default_root()), source, where)  # (a symlink: the data it points to)
    if hash is not None and h != hash:
        raise NixWorkflowError(f"{where}: static input {source} has hash {h}, but the experiment pins {hash}"
                               f"{statics.link_hint(source)}. The file changed: restore it, or update the pinned "
                               "hash if the change is intended.")
    return Static(real, h, where)


@dataclass
class Workflow:
    """An evaluated experiment: its recipes by name, the named (module-level) ones, and static inputs."""

    recipes: dict[str, Recipe] = field(default_factory=dict)
    named: list[str] = field(default_factory=list)
    statics: dict[str, Static] = field(default_factory=dict)
    host_steps: list[str] = field(default_factory=list)
    resources: dict[str, SlurmOptions] = field(default_factory=dict)  # step -> its own Slurm resources (checked)
    where: dict[str, str] = field(default_factory=dict)  # step -> file:line that defined it
    same_as: dict[str, str] = field(default_factory=dict)  # a name that holds the very step another name has
    renamed: set[str] = field(default_factory=set)  # of those, the one variable of a step given its own `name=`

    def unreached(self) -> list[str]:
        """Steps defined but neither top-level nor needed by one (kept in an object, a set, a function's local):
        a run of the whole experiment does not run them, which the user should hear about."""
        from nixlib.recipe import topological

        needed = {r.name for r in topological([self.recipes[n] for n in self.named])}
        return [n for n in self.recipes if n not in needed]

    def select(self, targets: list[str]) -> list[Recipe]:
        """The recipes `targets` name (every top-level step when none): a step's name, or a group's (`models`,
        `grid.0.1`: every step named under it, as a dict or sweep of steps is named)."""
        if not targets:
            return [self.recipes[n] for n in self.named]
        targets = [self.same_as.get(t, t) for t in targets]  # a name of a step another name also holds
        targets = list(dict.fromkeys(n for t in targets for n in self._members(t)))
        unknown = [t for t in targets if t not in self.recipes]
        if unknown:
            close = {u: difflib.get_close_matches(u, list(self.recipes), n=3, cutoff=0.6) for u in unknown}
            hints = "".join(f" Did you mean {' or '.join(repr(c) for c in close[u])}?" for u in unknown if close[u])
            raise NixWorkflowError(f"no step named {', '.join(repr(u) for u in unknown)}.{hints} The experiment "
                                   f"defines {', '.join(self.recipes) or 'no steps'}.")
        return [self.recipes[t] for t in targets]

    def _members(self, target: str) -> list[str]:
        """`target` itself if a step has that name, else the steps of the group it names (none: itself, unknown)."""
        if target in self.recipes:
            return [target]
        return [n for n in self.recipes if n.startswith(target + ".")] or [target]


def load(path: str | os.PathLike, argv: Sequence[str] = ()) -> Workflow:
    """Evaluate experiment.py with `argv` as its arguments (sys.argv[1:]; nw's words after `--`) and turn its steps
    into recipes (nothing runs, nothing is stored)."""
    path = Path(path)
    check_readable(path, "experiment file")
    # `__file__` absolute, as `python experiment.py` makes it: `Path(__file__).parent / "train.py"` in a command
    # must name the file from $out, the directory a step runs in, not from where nw was started.
    path = path.absolute()
    forget()
    try:
        with _as_script(path, argv):
            namespace = runpy.run_path(str(path), run_name="__nixworkflow__")
    except NixWorkflowError:
        raise
    except SystemExit as e:  # argparse's error or --help, or an explicit sys.exit(): say where, do not just stop
        tb = traceback.extract_tb(e.__traceback__)
        frame = next((f for f in reversed(tb) if f.filename == str(path)), None)
        where = f"{frame.filename}:{frame.lineno}" if frame else str(path)
        given = f"the arguments {' '.join(argv)}" if argv else "no command-line arguments"
        raise NixWorkflowError(f"{where}: evaluating the experiment failed: it exited (sys.exit({e.code!r})) instead "
                               f"of defining its steps. nw evaluated {path.name} with {given} (sys.argv[1:], the "
                               f"words after `--`: nw run {path.name} -- --lr 0.01); give parameters defaults, or "
                               "pass them after `--`.") from None
    except Exception as e:  # the user's code failed: show where, not our internals
        if isinstance(e, SyntaxError) and e.filename:  # from compiling: its own position, not runpy's frame
            raise NixWorkflowError(f"{e.filename}:{e.lineno}: evaluating the experiment failed: SyntaxError: "
                                   f"{e.msg}") from None
        tb = traceback.extract_tb(e.__traceback__)
        frame = next((f for f in reversed(tb) if f.filename == str(path)), tb[-1])
        raise NixWorkflowError(f"{frame.filename}:{frame.lineno}: evaluating the experiment failed: "
                               f"{type(e).__name__}: {_reason(e, path.parent)}{_raised_in(tb, frame, path.parent)}"
                               ) from None
    workflow = build(unique_names(_named_steps(namespace)), code_roots=project_roots(path.parent),
                     aliases=_module_steps(namespace, path.parent))
    if not workflow.named:
        raise NixWorkflowError(f"{path} defines no steps: an experiment declares each step with output() and assigns "
                               "it to a module-level name, e.g. `data = output('echo 1,2 > $out/data.csv')`"
                               + _why_none(path, workflow))
    return workflow


def _reason(e: Exception, project: Path) -> str:
    """The error's text; an OSError's without the raw `[Errno N]`, and for a file the experiment's code opens by a
    relative path that is missing here but exists beside the experiment (`json.load(open("cfg.json"))`, run as
    `nw run proj/experiment.py` from elsewhere), where that path is taken from and how to name it from anywhere."""
    if not isinstance(e, OSError) or not e.strerror:
        return str(e)
    name = e.filename if isinstance(e.filename, str) else None
    text = f"{e.strerror}: {name}" if name is not None else e.strerror
    if isinstance(e, FileNotFoundError) and name and not os.path.isabs(name) and (project / name).exists() \
            and Path(os.getcwd()).absolute() != project:
        text += (f" (a relative path in the experiment's code is taken from the current directory, {os.getcwd()}, "
                 f"as under `python experiment.py`; it exists beside the experiment, in {project}: run nw from there, "
                 f"or write Path(__file__).parent / {name!r})")
    return text


def _raised_in(tb: traceback.StackSummary, frame: traceback.FrameSummary, project: Path) -> str:
    """Where in the project's own modules the error was raised, when not at the experiment's line that called
    them (`lr = params.load()` failing inside params.py): that line alone leaves the user to guess."""
    inside = str(project) + os.sep
    last = next((f for f in reversed(tb) if f.filename.startswith(inside)), None)
    if last is None or last is frame:
        return ""
    return f" (raised at {last.filename}:{last.lineno}, in {last.name})"


def _why_none(path: Path, workflow: Workflow) -> str:
    """What an experiment without top-level steps most likely did instead: kept them in a function's locals, or
    defined them under `if __name__ == "__main__":`, which does not run when nw evaluates the file."""
    if workflow.where:
        return (". Steps were defined, but no module-level name holds them (a function's local variables?): "
                + ", ".join(list(workflow.where.values())[:3]))
    try:
        source = path.read_text(errors="replace")
    except OSError:
        return ""
    if "__main__" in source:
        return (". nw evaluates the file as a module named __nixworkflow__, so an `if __name__ == \"__main__\":` "
                "block does not run: define the steps outside it")
    return ""


@contextmanager
def _as_script(path: Path, argv: Sequence[str] = ()) -> Iterator[None]:
    """Evaluate as `python experiment.py ARGV…` would: sys.argv is [experiment.py, *argv] (not nw's own arguments,
    which an argparse parser at module level would reject) and the experiment's directory comes first on sys.path, so
    `import params` finds params.py beside it from any working directory. Both are restored afterwards, and
    modules imported from that directory are forgotten, so a later evaluation in this process reads them anew."""
    saved_argv, saved_path = sys.argv, list(sys.path)
    before = set(sys.modules)
    sys.argv = [str(path), *argv]
    sys.path.insert(0, str(path.parent))
    try:
        yield
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        base = str(path.parent) + os.sep
        for name in set(sys.modules) - before:
            if str(getattr(sys.modules[name], "__file__", None) or "").startswith(base):
                del sys.modules[name]


def forget() -> None:
    """Start a new evaluation: steps and statics defined before are no longer part of the workflow."""
    _DEFINED.clear()
    _STATICS.clear()


def project_roots(directory: str | os.PathLike) -> tuple[str, ...]:
    """The experiment's directory as `code_roots`: as named (`__file__`'s), and resolved when a symlink leads to it
    (`HERE = Path(__file__).resolve().parent` names the project's files by their real path: not keyed, an edited
    file served the old result when nw was started through a linked directory)."""
    named, real = os.path.abspath(directory), os.path.realpath(directory)
    return (named,) if named == real else (named, real)


def build(named: dict[str, Step], code_roots: tuple[str, ...] = (), aliases: Mapping[str, str] | None = None
          ) -> Workflow:
    """Recipes for every step defined since `forget()`, named by `named` where given (any front door).
    Project code files a command names by absolute path inside one of `code_roots` key the step by content.
    `aliases` (hash32 -> name) names steps that `named` does not, before falling back to `step-<hash>`."""
    return _Builder(named, code_roots, aliases or {}).build()


def _module_steps(namespace: dict[str, Any], project: Path) -> dict[str, str]:
    """hash32 -> `module.attr` for the module-level steps of the project's own modules the experiment imports
    (`import shared` then `shared.data` in a command): such a step is named after where it is defined, as a step in
    a dict is, not `step-<hash>`. It is not a top-level step of the experiment (it runs when a step needs it, or
    when named on the command line), only its name."""
    inside = str(project) + os.sep
    names: dict[str, str] = {}
    for var, module in namespace.items():
        if var.startswith("__") or not isinstance(module, types.ModuleType) or \
                not str(getattr(module, "__file__", None) or "").startswith(inside):
            continue
        for attr, value in vars(module).items():
            if not attr.startswith("__"):
                for name, step in _members(f"{var}.{attr}", value, set()):
                    if name_problem(name) is None:
                        names.setdefault(step.hash32, name)
    return names


def _named_steps(namespace: dict[str, Any]) -> Iterator[tuple[str, Step]]:
    """Module-level steps, including those in dicts and lists, nested as a sweep nests them
    (`models["small"]` → `models.small`, `grid[0.1][32]` and `grid[(0.1, 32)]` → `grid.0.1.32`): a step only
    reachable through a nested container would otherwise be no top-level step, and `nw run` would silently not
    run it."""
    for var, value in namespace.items():
        if not var.startswith("__"):
            yield from _members(var, value, set())


def unique_names(pairs: Iterable[tuple[str, Step]]) -> dict[str, Step]:
    """name -> step, refusing one name for two different steps: a key with a dot (`{"a.b": s}`) and a nested one
    (`{"a": {"b": t}}`) both give `a.b`, and keeping either would silently drop the other from the run."""
    named: dict[str, Step] = {}
    for name, step in pairs:
        other = named.setdefault(name, step)
        if other.hash32 != step.hash32:
            raise NixWorkflowError(f"two different steps are named '{name}' ({other.where} and {step.where}): a key "
                                   "or attribute containing a dot gives the same name as a nested one; step names "
                                   "must be unique: rename one of them.")
    return named


def _members(name: str, value: Any, seen: set[int]) -> Iterator[tuple[str, Step]]:
    if isinstance(value, Step):
        yield name, value
        return
    if id(value) in seen:  # (a container holding itself)
        return
    if isinstance(value, dict | list | tuple):
        items: Iterable[tuple[Any, Any]] = value.items() if isinstance(value, dict) else enumerate(value)
    else:
        attributes = _attributes(value)
        if attributes is None:
            return
        items = attributes
    seen.add(id(value))
    for key, member in items:
        yield from _members(f"{name}.{_key_name(key)}", member, seen)


def _attributes(value: Any) -> Iterable[tuple[str, Any]] | None:
    """The members of a record of steps, by attribute name: a dataclass's fields (`Exp(model=..., ev=...)` per run of
    a sweep), and a class or an object of a class the experiment itself defines (`class Cfg: report = output(...)`);
    None for any other value (not walked: a library's object may be big)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f.name, getattr(value, f.name, None)) for f in dataclasses.fields(value)]
    own = value if isinstance(value, type) else type(value)
    if getattr(own, "__module__", None) == "__nixworkflow__" and hasattr(value, "__dict__"):
        return [(k, v) for k, v in vars(value).items() if not k.startswith("__")]
    return None


def _link_paths(paths: Iterable[str]) -> dict[str, tuple[str, str]]:
    """{path: (name, link)} of the paths under a directory of output links named as nw run names it by default
    (`/p/nix-workflow-output/train/model.txt`: train, `/p/nix-workflow-output/train`), its last such part. Pure string
    work (the link may not exist yet: the first run); a link of another --out-link directory is found by the store
    path it leads to (_Builder._store_link)."""
    found: dict[str, tuple[str, str]] = {}
    marker = os.sep + OUT_DIR + os.sep
    for p in paths:
        at = p.rfind(marker)
        if at < 0:
            continue
        name = p[at + len(marker):].split(os.sep, 1)[0]
        if name:
            found[p] = (name, p[:at + len(marker)] + name)
    return found


def _above(inputs: Sequence[Input]) -> set[str]:
    """The names of the steps the inputs are, and of every step above them (a checkpoint's producer too)."""
    names: set[str] = set()
    todo = [i.step for i in inputs if i.step is not None]
    while todo:
        r = todo.pop()
        if r.name in names:
            continue
        names.add(r.name)
        todo += [*r.upstream(), *([r.producer] if getattr(r, "producer", None) is not None else [])]
    return names


def _key_name(key: Any) -> str:
    """A dict key as part of a step name: a tuple key (a sweep over `itertools.product`) by its parts, as the
    nested dicts of the same sweep are (`grid[(0.1, 32)]` → `grid.0.1.32`), not by its repr (`grid.(0.1, 32)`,
    which a user must quote to type and which has spaces)."""
    if isinstance(key, tuple) and key:
        return ".".join(_key_name(k) for k in key)
    return str(key)


class _Builder:
    """Turns Steps into Recipes, naming each exactly once and resolving references by scanning."""

    def __init__(self, named: dict[str, Step], code_roots: tuple[str, ...] = (),
                 aliases: Mapping[str, str] | None = None) -> None:
        self.code_roots = code_roots
        self.aliases = aliases or {}
        self.code_files: codefiles.CodeFiles | None = None
        self.config_dirs: dict[str, list[str]] = {}  # a config directory -> its config files (configfiles.files_in)
        # what the scripts a command runs read (_data): ({path: hash} of project data files, of files in the store,
        # {path: (name, link)} of those under an output-link directory)
        self.chain_data: dict[tuple, tuple[dict[str, str], dict[str, str], dict[str, tuple[str, str]]]] = {}
        self.store_links: dict[str, tuple[str, str] | None] = {}  # a file in the store -> the output link to it
        self.read_names: dict[tuple, frozenset[str]] = {}  # the scripts a command runs -> the variables they read
        self.workflow = Workflow()
        self.names: dict[str, str] = {}  # hash32 -> step name
        self.scanner: context.Scanner[Step] = context.Scanner(_root())
        for hash32, step in _DEFINED.items():
            self.scanner.register(hash32, step.name or "output", step)
        self._assign_names(named)
        self.envs: dict[str, envmod.ResolvedEnv] = {}

    def _assign_names(self, named: dict[str, Step]) -> None:
        explicit: dict[str, Step] = {}
        for step in _DEFINED.values():
            if step.name is None:
                continue
            other = explicit.setdefault(step.name, step)
            if other is not step:  # another command, env or option: one name would serve both (the first)
                same = "the same command with other options or env" if other.command == step.command else \
                    "different commands"
                raise NixWorkflowError(f"two different steps are named '{step.name}' ({other.where} and {step.where}; "
                                       f"{same}); step names must be unique: rename one of them.")
            self.names[step.hash32] = step.name
        owner = {name: step for step in _DEFINED.values() if step.name is not None for name in [step.name]}
        held: set[str] = set()  # steps a variable already holds
        for var, step in named.items():
            if step.hash32 not in self.names:  # a dict key or Nix attribute becomes the name: `models.../x`
                check_step_name(var, step.where)
                self._claim(owner, var, step)
                self.names[step.hash32] = var
            elif self.names[step.hash32] != var:  # the same command, env and options as another name's: one step
                self.workflow.same_as[var] = self.names[step.hash32]
                if step.name is not None and step.hash32 not in held:  # (`a = output(..., name="alpha")`)
                    self.workflow.renamed.add(var)
            held.add(step.hash32)
            self.workflow.named.append(self.names[step.hash32])
        self.workflow.named = list(dict.fromkeys(self.workflow.named))
        taken = set(self.names.values())
        for hash32, step in _DEFINED.items():
            if hash32 not in self.names:
                base = f"{self.names[step.producer.hash32]}@{step.checkpoint}" if isinstance(step, Checkpoint) \
                    else step.name or self.aliases.get(hash32) or f"step-{hash32[:8]}"
                self.names[hash32] = base if base not in taken else f"{base}-{hash32[:8]}"
                taken.add(self.names[hash32])

    @staticmethod
    def _claim(owner: dict[str, Step], name: str, step: Step) -> None:
        """Name `step` after its variable or attribute, unless another step already has that name: otherwise
        the later one would silently be the earlier (never run, its output link showing the other's result)."""
        other = owner.setdefault(name, step)
        if other is not step:
            raise NixWorkflowError(f"two different steps are named '{name}': the step at {step.where} is named after "
                                   f"its variable or attribute, and the step at {other.where} has that name too "
                                   "(name=, or another variable); step names must be unique: rename one of them.")

    def build(self) -> Workflow:
        for hash32 in _DEFINED:
            self.recipe(_DEFINED[hash32], [])
        return self.workflow

    def recipe(self, step: Step, path: list[str]) -> Recipe:
        name = self.names[step.hash32]
        if name in self.workflow.recipes:
            return self.workflow.recipes[name]
        if name in path:
            raise NixWorkflowError(f"steps form a cycle: {' -> '.join(path + [name])}")
        if isinstance(step, Checkpoint):
            from nixlib.checkpoints import CheckpointRecipe

            if step.pinned is not None:  # locked by `nw pin`: that object, whatever the producer does now
                ref = Recipe(name=name, command=f"checkpoint {step.checkpoint} of {self.names[step.producer.hash32]}",
                             pinned=step.pinned)
                self.workflow.recipes[name] = ref
                return ref
            ref = CheckpointRecipe(name, self.recipe(step.producer, path + [name]), step.checkpoint)
            self.workflow.recipes[name] = ref
            return ref
        try:
            command, shell = normalise(step.command), shell_form(step.command)
        except CommandSyntaxError as e:
            raise NixWorkflowError(f"step '{name}' ({step.where}): {e}. Close the quote or escape it.") from None
        # one input per reference, not per occurrence (`cat {raw}; wc -l {raw}`): records list each once
        refs = list({ref.token: ref for ref in self._scan(name, step, command)}.values())
        inputs = [self._input(name, ref, path + [name]) for ref in refs]
        self._resources(name, step)
        env = self._env(name, step)
        code, data, command, read = self._project_files(step.command, command, name, step.where, inputs) \
            if step.pinned is None else ({}, {}, command, frozenset())
        # the host variables its command expands (`$SCALE`) and those the project scripts it runs read by name
        # (`os.environ["SCALE"]` in train.py: nixlib.envreads): the step sees them, its code's text does not change
        read |= _stored_scripts_variables(step.command, refs)
        variables = hostenv.named(expanded_variables(step.command) | read, step.options) \
            if step.pinned is None else {}
        extra = {**({"code": code} if code else {}), **({"data": data} if data else {}),
                 **({"environment": variables} if variables else {})}
        try:
            recipe = Recipe(name=name, command=command, inputs=inputs, env=env.identity, env_paths=env.paths,
                            extra=extra, options=step.options, pinned=step.pinned, shell=shell)
        except CommandTooLong as e:  # say where the step is defined (a sweep's aggregate is easily too long)
            raise NixWorkflowError(str(e).replace(f"step '{name}':", f"step '{name}' ({step.where}):", 1)) from None
        self.workflow.recipes[name] = recipe
        self.workflow.where[name] = step.where
        return recipe

    def _project_files(self, command: str, keyed: str, name: str = "", where: str = "", inputs: Sequence[Input] = ()
                       ) -> tuple[dict[str, str], dict[str, str], str, frozenset[str]]:
        """({path: digest} of the project's code files, {path: content hash} of its data files) that the command
        names inside the experiment's directory without static(): editing one re-runs the step, as Luigi's and
        Snakemake's front doors do. Named relative to that directory, so a clone keys the same; and the `keyed`
        command, with that directory relocated when it can be (_relocated); and the names of the environment
        variables those code files read (nixlib.envreads). Step `name` (at `where`, with `inputs`) reading another
        step's result through its output link without depending on it is refused (_linked)."""
        words = codefiles.command_paths(command, _root())
        # (`python -m pkg.train`: an editable install's package is the project's code, though the command names no path)
        if not (words or codefiles.command_modules(command)) or not self.code_roots:
            return {}, {}, keyed, frozenset()
        if self.code_files is None:
            self.code_files = codefiles.CodeFiles(StatMemo.for_store(default_root()), evaluation=True)
        # A step runs in $out, so a command that names a project file by a relative path (`cd {HERE} && python
        # train.py`, `cd {HERE}; python -m src.fit`, `PYTHONPATH={HERE} python -m src.fit`) first changes into the
        # project or puts it on Python's path: those files are keyed as if named by absolute path.
        cds = codefiles.changed_directories(command, self.code_roots)
        imports = tuple(pyimports.import_dirs(command, self.code_roots, cds))  # (where its Pythons import from)
        code = self._code(command, words, cds, imports)
        plain, stored, links = self._data(command, cds, set(code), imports)
        data = {**plain, **self._linked(name, where, inputs, stored, links, command, set(code), imports)}
        read = self._read_variables(sorted(code), imports)
        return self._relative(code), self._relative(data), self._relocated(keyed), read

    def _read_variables(self, code: list[str], imports: tuple[str, ...]) -> frozenset[str]:
        """The names of the environment variables the project's code files a command runs (absolute paths) read
        (nixlib.envreads), with the scripts they run and the modules they import: once per evaluation for a sweep's
        steps running the same scripts."""
        assert self.code_files is not None
        key = (tuple(code), imports, tuple(getattr(d, "packages", ()) for d in imports))
        known = self.read_names.get(key)
        if known is None:
            known = self.read_names[key] = envreads.scripts_variables(self.code_files, code, imports)
        return known

    def _relocated(self, keyed: str) -> str:
        """The keyed command with the experiment's directory written `@{experiment}`, so a checkout elsewhere (another
        user's clone, another host) keys the step alike and is served its result, as the Snakemake executor relocates
        its working directory: the project's files the command names are keyed by content, relative to it."""
        store = _root()  # (a store inside the project: its references keep their path, they are replaced by keys)
        parts = keyed.split(store)
        for root in sorted(self.code_roots, key=len, reverse=True):
            parts = [re.sub(re.escape(root) + r"(?![^/\s;|&<>()'\"`=,:])", "@{experiment}", p) for p in parts]
        return store.join(parts)

    def _relative(self, found: dict[str, str]) -> dict[str, str]:
        bases = [r + os.sep for r in self.code_roots]
        return dict(sorted({next(("./" + p[len(b):] for b in bases if p.startswith(b)), p): h
                            for p, h in found.items()}.items()))

    def _data(self, command: str, cds: list[str], code: set[str], imports: tuple[str, ...] = ()
              ) -> tuple[dict[str, str], dict[str, str], dict[str, tuple[str, str]]]:
        """{absolute path: content hash} of the data files of the project the command names (by absolute path, or
        by a relative one after changing into the project) without static(): a reference, a lookup table, a
        config file. Never a code file (keyed as code), nor a file in the store (an output link's file is an
        upstream result: interpolate the step to depend on it). A file the command also writes is keyed by its
        content before the run: one more run, never a stale result. So is a data file a project script the command
        runs names by a literal path (`pd.read_csv("data/train.csv")` in train.py; codefiles.script_data_words),
        relative to a directory the command changes into or to the script's own, and one a project module it imports
        names (`open(HERE / "vocab.txt")` in mypkg/data.py, also relative to the module's directory). With
        {path: hash} of the existing ones whose real path is in the store, and {path: (name, output link)} of those
        under an output-link directory (`nix-workflow-output/train/model.txt`), for _linked to judge per step."""
        assert self.code_files is not None
        candidates = codefiles.command_data_paths(command, _root(), cds)
        # Hydra's config directory (`--config-path {HERE}/conf`; `@hydra.main(config_path="conf")` in a script, found
        # by chain_reads with what the scripts it runs read, and those they run in turn: `bash run.sh` running
        # `python3 scripts/prep.py`, a Makefile's recipes)
        configs = [os.path.normpath(os.path.join(b, d)) for d in configfiles.command_dirs(command)
                   for b in ([""] if os.path.isabs(d) else [*cds, *map(os.path.dirname, code)])]
        # (the scripts' part once per evaluation: a sweep's steps run the same scripts, whose modules may be many)
        # (a MappedDir compares as its path: its mapping is part of what its modules are)
        key = (tuple(sorted(code)), tuple(cds), tuple(configs), imports,
               tuple(getattr(d, "packages", ()) for d in imports))
        chained = self.chain_data.get(key)
        if chained is None:
            reads = self.code_files.chain_reads(sorted(code), cds, configs, self.code_roots, self._config_files,
                                                imports)
            chained = self.chain_data[key] = (*self._project_data(reads, code), _link_paths(reads))
        if not candidates:
            return chained
        plain, stored = self._project_data(candidates, code)
        return {**plain, **chained[0]}, {**stored, **chained[1]}, {**_link_paths(candidates), **chained[2]}

    def _project_data(self, candidates: list[str], code: set[str]) -> tuple[dict[str, str], dict[str, str]]:
        """The project's data files among the candidates (codefiles.CodeFiles.project_data) with, at any depth, the
        configs a YAML config among them includes (`defaults: [base]`, `_base_: ../b.yaml`); and apart, those whose
        real path is in the store (a file an output link leads to), which _linked keys or not."""
        assert self.code_files is not None
        if not candidates:
            return {}, {}
        store = os.path.realpath(_root()) + os.sep
        keep = lambda p: not os.path.realpath(p).startswith(store)  # noqa: E731
        data = self.code_files.project_data(candidates, self.code_roots, code)
        stored = {p: h for p, h in data.items() if not keep(p)}
        plain = {p: h for p, h in data.items() if p not in stored}
        return self.code_files.with_includes(plain, self.code_roots, code, keep=keep), stored

    def _linked(self, name: str, where: str, inputs: Sequence[Input], stored: dict[str, str],
                links: dict[str, tuple[str, str]], command: str, code: set[str], imports: tuple[str, ...]
                ) -> dict[str, str]:
        """{path: content hash} of the files in the store that step `name` reads and may key: those reached through
        the output link of a step it depends on (interpolates, at any depth: nw run links a step as it finishes,
        before its dependants start, but only in the run's --out-link directory and when the name can be linked, so
        the link read may still show an older result; keyed, the step runs again once it shows the new one, never
        stale), or of a name that is no step of this workflow (another experiment's result sharing the directory:
        keyed by content as any data file). Not its own output link's (its previous result; not keyed, as before),
        nor a store path named directly. A file under the output link of another step of this workflow it does not
        depend on is refused, naming the file and that step: it would run before that step, and stay cached
        whatever that step produces."""
        if not stored and not links:
            return {}
        reads = dict(links)
        for p in stored:
            link = self._store_link(p)
            if link is not None:
                reads.setdefault(p, link)
        steps = set(self.names.values())
        above: set[str] | None = None
        for path, (other, link) in reads.items():
            other = self.workflow.same_as.get(other, other)
            if other == name or other not in steps:
                continue
            if above is None:
                above = _above(inputs)
            if other not in above:
                raise NixWorkflowError(self._link_problem(name, where, path, other, link, command, code, imports))
        return {p: h for p, h in stored.items() if p in reads and self.workflow.same_as.get(reads[p][0], reads[p][0])
                != name}

    def _words(self, path: str) -> tuple[str, ...]:
        assert self.code_files is not None
        try:
            return self.code_files.script_data(path)
        except OSError:  # (unreadable)
            return ()

    def _store_link(self, path: str) -> tuple[str, str] | None:
        """(name, link) of the output link a file in the store is reached through (the outermost symlink into the store
        on its path, inside the experiment's directory: `out/train` of `out/train/model.txt`, whatever --out-link
        named the directory); None for a path that names the store itself."""
        if path not in self.store_links:
            store = os.path.realpath(_root()) + os.sep
            inside = tuple(r + os.sep for r in self.code_roots)
            found, at = None, os.path.abspath(path)
            while at.startswith(inside):
                if os.path.islink(at) and os.path.realpath(at).startswith(store):
                    found = (os.path.basename(at), at)
                at = os.path.dirname(at)
            self.store_links[path] = found
        return self.store_links[path]

    def _link_problem(self, name: str, where: str, path: str, other: str, link: str, command: str, code: set[str],
                      imports: tuple[str, ...]) -> str:
        """The error for step `name` reading `path`, under step `other`'s output `link`, without depending on it."""
        assert self.code_files is not None
        shown = self._relative({path: ""}).popitem()[0].removeprefix("./")
        links = os.path.basename(os.path.dirname(link))  # (the link's name, else its directory: a glob `res/*/m.txt`)
        named_in = "a script it runs"
        files = [*sorted(code), *(s for c in sorted(code) for s in self.code_files.scripts_run(c)),
                 *(m for c in sorted(code) for m in self.code_files.imported_files(c, imports))]
        for needle in (f"{links}/{os.path.basename(link)}", f"{links}/"):
            if needle in command:
                named_in = "its command"
                break
            found = next((f for f in files if needle in " ".join(self._words(f))), None)
            if found is not None:
                named_in = self._relative({found: ""}).popitem()[0].removeprefix("./")
                break
        file = where.rsplit(":", 1)[0]
        rest = "/" + os.path.relpath(path, link) if path != link else ""
        var = other if other.isidentifier() else f"<the step {other}>"  # (a sweep's `sweep.1`: `{sweep[1]}`)
        py, nix = f"`{{{var}}}{rest}` in experiment.py", f"`${{{var}}}{rest}` in experiment.nix"
        form = nix if file.endswith(".nix") else py if file.endswith(".py") else f"{py}, {nix}"
        return (f"step '{name}' ({where}) reads {shown} (named in {named_in}), under the output link of step "
                f"'{other}', without depending on '{other}': it may run before '{other}' (a link is updated as its "
                f"step finishes) and read its previous result or none, and would then stay cached whatever '{other}' "
                f"produces. Interpolate that step so that it becomes the dependency, and read the file through it "
                f"({form}{'' if named_in == 'its command' else ', passed to the script as an argument'}) instead of "
                "through its output link; nothing was run.")

    def _config_files(self, directory: str) -> list[str]:
        """The config files of a config directory inside the experiment's (configfiles.files_in), listed once per
        evaluation."""
        if not any((directory + os.sep).startswith(r + os.sep) for r in self.code_roots):
            return []
        known = self.config_dirs.get(directory)
        if known is None:
            known = self.config_dirs[directory] = configfiles.files_in(directory) if os.path.isdir(directory) \
                else []
        return known

    def _code(self, command: str, words: list[str], cds: list[str], imports: tuple[str, ...]) -> dict[str, str]:
        """{absolute path: digest} of the project's code files (a script, a `#!` tool; nixlib.codefiles) the
        command names by absolute path inside the experiment's directory, or runs after changing into it, and the
        project modules it runs (`python -m pkg.train`) or its scripts import, from the directories its Pythons
        import from (PYTHONPATH, an editable install of the project; nixlib.pyimports)."""
        assert self.code_files is not None
        found = self.code_files.named(words, self.code_roots, set(), imports=imports)
        inside = tuple(r + os.sep for r in self.code_roots)
        if cds:
            relative = [w for w in codefiles.words(command) if not os.path.isabs(w)]
            for d in cds:
                found.update(self.code_files.named(relative, self.code_roots, set(found), cwd=d, imports=imports))
        modules = codefiles.command_modules(command)
        # `make -C {HERE} all`, `cd {HERE} && make`: the makefile (with the scripts its recipes run) is code
        run_by_make = [p for p in makefiles.of_command(command, cds) if p.startswith(inside) and p not in found]
        for p in [*run_by_make, *(codefiles.inline_modules(command, imports) if imports else ())]:
            if p.startswith(inside) and p not in found:
                try:
                    found[p] = self.code_files.code_digest(p, self.code_roots, imports)
                except codefiles.UNREADABLE:  # unreadable: the step cannot read it either
                    continue
        for d in imports if modules else ():
            for p in codefiles.module_paths(modules, d):
                if p.startswith(inside) and p not in found:
                    try:
                        found[p] = self.code_files.code_digest(p, self.code_roots, imports)
                    except codefiles.UNREADABLE:  # unreadable: the step cannot import it either
                        continue
        return found

    def _resources(self, name: str, step: Step) -> None:
        """Check the step's `resources` (by nixworkflow.yaml's rules) and keep them beside its recipe, by name:
        they decide where the step runs, not what it computes, so they stay out of the recipe and its key."""
        try:
            options = slurm.resources_options(step.resources)
        except slurm.ResourceProblem as e:
            raise NixWorkflowError(f"step '{name}' ({step.where}): {e}; nothing was run") from None
        if options != slurm.SlurmOptions():
            self.workflow.resources[name] = options

    def _scan(self, name: str, step: Step, command: str) -> list[context.Ref[Step]]:
        try:
            return self.scanner.scan(command)
        except context.UnknownPlaceholder as e:
            raise NixWorkflowError(
                f"step '{name}' ({step.where}) references {e.token}, which is no step of this experiment "
                "(a placeholder from another run or store?). Interpolate the step object itself, or use "
                "static() for a file."
            ) from None

    def _input(self, name: str, ref: context.Ref[Step], path: list[str]) -> Input:
        if ref.target is not None:
            return Input(ref.token, step=self.recipe(ref.target, path))
        static = _STATICS.get(str(ref.obj))
        if static is not None:
            self.workflow.statics[static.hash] = static
        elif not (default_root() / "store" / str(ref.obj)).exists():
            raise NixWorkflowError(f"step '{name}' references store object {ref.obj}, which is not in the store "
                                   f"at {_root()}. Use static(path) for local files.")
        return Input(ref.token, obj=ref.obj)

    def _env(self, name: str, step: Step) -> envmod.ResolvedEnv:
        key = repr((step.env, envmod.context_of(step.command)))  # interpolated tools join the env
        if key not in self.envs:
            try:
                self.envs[key] = envmod.resolve_for(step.env, step.command)
            except NixWorkflowError as e:
                raise NixWorkflowError(f"step '{name}' ({step.where}): {e}") from None
        env = self.envs[key]
        if env.is_host:
            self.workflow.host_steps.append(name)
        return env

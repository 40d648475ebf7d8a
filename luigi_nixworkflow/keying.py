"""What of a task, besides its inputs, enters its key: significant parameters, class code, Config values.

Luigi's own task_id covers only the parameters (as strings), which is why it is never the cache key.
Code digests and Config values cannot change within one process (a class is defined once; luigi.cfg
is read once, as Luigi does), so both are memoised per class.
"""

from __future__ import annotations

import ast
import datetime
import decimal
import enum
import functools
import inspect
import linecache
import logging
import math
import os
import re
import sys
import textwrap
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePath
from typing import Any

import luigi
import luigi.configuration
from luigi.parameter import ParameterVisibility
from luigi.task_register import Register

from luigi_nixworkflow import class_templates, present, settings, shape, stepio, templates, unfollowed
from nixlib import codefiles, configfiles, envreads, hostenv, makefiles, pycode, pydata, pyimports
from nixlib.errors import NixWorkflowError
from nixlib.recipe import RunOptions, digest
from nixlib.runner import SEARCH_PATHS

_CONFIG_VALUES: dict[type, dict[str, Any]] = {}  # per process: luigi.cfg is read once, as Luigi does
_MODULE_TREES: dict[str, tuple[str, ast.Module]] = {}  # source file -> (its text, parsed): see _class_source
logger = logging.getLogger("luigi-interface")
_SKIP_MODULES = frozenset({"luigi", "luigi_nixworkflow"})
_STEP_VARIABLES = frozenset({*SEARCH_PATHS, "TMPDIR", "out", "state"})  # what the runner sets for each step
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What Luigi's Task (luigi/task.py) reads only to schedule a task: its priority, resources, timeouts, retry and
# disable policy, batch size, owner's e-mail, scheduler messages. None changes what run() writes (_unscheduled).
SCHEDULING = frozenset({"priority", "disabled", "resources", "worker_timeout", "max_batch_size", "retry_count",
                        "disable_hard_timeout", "disable_window", "disable_window_seconds", "owner_email",
                        "accepts_messages"})
_LUIGI_SECTIONS = frozenset({"core", "worker", "scheduler", "nixworkflow", "retcode", "execution_summary", "email",
                             "smtp", "batch_email", "hadoop", "hdfs", "spark", "resources", "DEFAULT"})


def reset() -> None:
    _CONFIG_VALUES.clear()
    _MODULE_TREES.clear()


class _NotCanonical(Exception):  # noqa: N818 - internal signal, turned into a NixWorkflowError
    pass


def params(task: luigi.Task) -> dict[str, Any]:
    """Significant parameters as canonical JSON values; a value without one is an error naming it. A private one
    (`visibility=ParameterVisibility.PRIVATE`, a password Luigi keeps out of task ids and the scheduler) by a
    digest of that value: keyed all the same, but never written into the store's records."""
    out: dict[str, Any] = {}
    for name, param in type(task).get_params():  # (NixTask caches get_params per class)
        if not param.significant:
            continue
        out[name] = _value(task, name, param, task.param_kwargs[name])
        if param.visibility == ParameterVisibility.PRIVATE:
            out[name] = {"private": digest(out[name])}
    return out


def _value(task: luigi.Task, name: str, param: luigi.Parameter, value: Any) -> Any:
    """One parameter's value as canonical JSON (or its typed serialisation)."""
    try:
        return _canonical(value)
    except _NotCanonical:
        pass
    return _typed(task, name, param, value)  # (outside the except: its error chains nothing internal)


def param_files(task: luigi.Task, root: str, declared: Callable[[], set[str]]) -> dict[str, str]:
    """{"param:<name>:<path as given>": content hash} of the files the task's significant parameters name
    (`input_path = luigi.Parameter()` set to "words.txt", a PathParameter, a list of paths, or a path-like word of
    a parameter's string, `extra="--ref data/ref.fa"`; nixlib.codefiles):
    what the task reads is then keyed by content, as a plain upstream task's LocalTarget is, and editing the
    file re-runs it. Never a directory, one of the task's own outputs (`declared()`) or a store path."""
    store = root + os.sep
    texts = [(name, t) for name, param in type(task).get_params() if param.significant
             for text in codefiles.strings_in(task.param_kwargs[name])
             for t in dict.fromkeys([text, *codefiles.data_words(text)]) if not t.startswith(store)]
    if not texts:  # (most parameters are numbers, dates or names: no stat, no declared paths)
        return {}
    files, paths = _code_files(root), declared()
    out: dict[str, str] = {}
    for name, t in texts:
        out.update((f"param:{name}:{t}", h) for t, h in files.files_named([t], paths).items())
    return out


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):  # JSON has no NaN or infinity
            raise _NotCanonical
        return value
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, datetime.date | datetime.time | datetime.timedelta | decimal.Decimal | PurePath):
        return {"type": type(value).__name__, "value": str(value)}
    if isinstance(value, enum.Enum):
        return {"type": type(value).__name__, "value": value.name}
    raise _NotCanonical


def _typed(task: luigi.Task, name: str, param: luigi.Parameter, value: Any) -> Any:
    """A typed Luigi parameter serialises its values canonically; the untyped one only strings."""
    if type(param) is not luigi.Parameter:
        try:
            text = param.serialize(value)
        except Exception:
            text = None
        if isinstance(text, str) and " at 0x" not in text:
            return {"serialized": text}
    raise NixWorkflowError(
        f"task {task.task_family}: parameter '{name}' has a value of type {type(value).__name__} ({value!r:.80}) "
        "that cannot be serialised canonically, so it cannot enter the cache key. Pass a JSON-like value "
        "(str, number, bool, list, dict with str keys) or use a typed luigi Parameter for it."
    )


@functools.cache
def code_digest(cls: type) -> str:
    """A digest of the task class's code (and of its own base classes), comments and layout ignored, and
    of the module-level helpers its methods use (nixlib.pycode: functions, classes, plain values).

    `version` on the class replaces it: for code inspect cannot see (a REPL, exec), or to keep
    results across edits the author knows change nothing.
    """
    version = settings.of_class(cls, "version")
    if version is not None:
        return "version:" + str(version)
    read = _uses(cls)[4] | _uses(cls)[2]  # (`self.priority`, `getattr(self, "priority")`)
    parts: list[Any] = [ast.dump(_unscheduled(tree, read)) for tree in _sources(cls)]
    uses = _uses(cls)[0]
    if uses:  # (a class that uses no module-level helper keeps the digest it had before helpers were keyed)
        parts.append({"uses": uses})
    data, modules, _, full, _, _ = _reads(cls)
    if data:  # (likewise: only a class that reads such data gets the extra part)
        parts.append({"data": data})
    if modules:
        parts.append({"imports": _imported_files(cls, modules)})
    packaged = _package_files(cls, full)
    if packaged:  # (only a class of a package that imports its modules inside its code)
        parts.append({"package": packaged})
    computed = _computed_attributes(cls)
    if computed:  # (only a class whose body sets an attribute from a call or an expression)
        parts.append({"attributes": computed})
    return digest(parts)


def _computed_attributes(cls: type) -> dict[str, str]:
    """{class.attribute: value digest} of the plain values the class bodies set from a call or an expression
    (`lookup = static("lookup.csv")`, `cutoff = compute_cutoff()`): the source holds only the expression, and the
    code it calls may live outside the user's code (a library, nixworkflow's own static()), so the value it gave
    is keyed. A literal (`allow_empty = True`) is in the source already; a parameter, method or class is not a
    plain value. Paths inside the module's directory key alike in every checkout (pycode.value_digest)."""
    out: dict[str, str] = {}
    for c, tree in zip(_own_classes(cls), _sources(cls), strict=True):
        node = tree.body[0] if tree.body else None
        if not isinstance(node, ast.ClassDef):
            continue
        module = sys.modules.get(c.__module__)
        home = pycode.home(vars(module)) if module is not None else None  # (as a module-level value's)
        for statement in node.body:
            target = statement.targets[0] if isinstance(statement, ast.Assign) and len(statement.targets) == 1 \
                else statement.target if isinstance(statement, ast.AnnAssign) and statement.value else None
            if not isinstance(target, ast.Name) or target.id not in c.__dict__ or _literal(statement.value):
                continue
            value = c.__dict__[target.id]
            if callable(value) or isinstance(value, luigi.Parameter | type | property | classmethod | staticmethod):
                continue
            h = pycode.value_digest(value, home)
            if h is not None:
                out[f"{pycode.qualified(c)}.{target.id}"] = h
    return out


def _literal(node: ast.expr | None) -> bool:
    try:
        ast.literal_eval(node)  # type: ignore[arg-type]
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


@functools.cache
def _reads(cls: type) -> tuple[dict[str, Any], frozenset[str], tuple[str, ...], frozenset[str], frozenset[str],
                               tuple[type, ...]]:
    """What the class's code reads beyond the code pycode keys (nixlib.pydata): module-level data (a pandas
    table loaded at import, a dict too large to count as code, an instance of a project class), the modules it
    imports inside its methods (`def run(self): import helpers`), and the module-level strings it reads that may
    name a script it runs (`SCRIPT = "scripts/clean.py"` run as `subprocess.run(["python", SCRIPT])`), and the
    full names of the modules it imports inside its methods, relative imports resolved (`from . import helpers`);
    then every module-level string it reads (`LOOKUP = "data/lookup.csv"`: data_words); last, the task and Config
    classes it imports by name inside its methods (`def requires(self): from pipeline import Raw`), whose modules
    are then not keyed whole for them (pydata.data_values `held`): they are keyed as the classes the code names at
    module level are (_task_names, config_classes)."""
    strings: set[str] = set()
    imports: set[str] = set()
    full: set[str] = set()
    data: dict[str, Any] = {}
    held: set[type] = set()
    for f in _own_functions(cls):
        data.update(pydata.data_values(f, pydata.render, strings, imports, stop=_is_task, modules=full, held=held))
    words = tuple(sorted(w for w in strings if codefiles.looks_like_code(w) and "\n" not in w))
    return (dict(sorted(data.items())), frozenset(imports), words, frozenset(full), frozenset(strings),
            tuple(sorted(held, key=pycode.qualified)))


def _imported_files(cls: type, names: frozenset[str]) -> dict[str, str]:
    """{file relative to its directory: content digest} of the local modules the class's methods import inside
    them, found beside the task's module (on the import path Luigi's --module needs), followed through theirs."""
    files = _code_files(settings.store_root())
    out: dict[str, str] = {}
    for directory in module_dirs(cls):
        out.update(codefiles.local_modules(set(names), directory, files.python_file))
    return out


def _package_files(cls: type, names: frozenset[str]) -> dict[str, str]:
    """{file relative to the package's root: content digest} of the project modules a class of a package imports
    inside its methods, relative imports included (`def run(self): from . import helpers`, `from proj.helpers
    import f`, `import proj.helpers`), followed through theirs (nixlib.codefiles.package_modules). A module of no
    package is covered by _imported_files (its modules lie beside it)."""
    module = sys.modules.get(cls.__module__)
    package, file = getattr(module, "__package__", None), getattr(module, "__file__", None)
    if not names or not package or not file:
        return {}
    root = os.path.dirname(os.path.abspath(file))
    for _ in package.split("."):
        root = os.path.dirname(root)
    files = _code_files(settings.store_root())
    return codefiles.package_modules(set(names), root, lambda path: files.python_file(path)[0])


@functools.cache
def script_words(cls: type) -> tuple[str, ...]:
    """String constants of the class's code (and its helpers') that may name a script it runs
    (`subprocess.run(["Rscript", "plot.R"])`): paths and names with a code suffix (nixlib.codefiles)."""
    own = {w for w in _uses(cls)[2] if codefiles.looks_like_code(w) and "\n" not in w}
    # (and module-level strings it reads: `SCRIPT = "x.py"`), not one it writes (pycode.written_strings: the notebook
    # `papermill.execute_notebook("nb.ipynb", "out/ran.ipynb")` writes, whose first key would be its absence)
    return tuple(sorted((own | set(_reads(cls)[2])) - _uses(cls)[5]))


@functools.cache
def data_words(cls: type) -> tuple[str, ...]:
    """String constants of the class's code (its methods, class bodies and the helpers they use) and module-level
    strings it reads that may name a data file it opens (`open("data/lookup.csv")`, `pd.read_csv(LOOKUP)`,
    `["tool", "--ref=data/ref.fa"]`): the texts themselves and their path-like words (nixlib.codefiles.data_words),
    not code files (keyed as code: script_words), not a `{}` pattern, a directory (`out/`), a path static()
    is given in a class body (its value, the store's copy, is keyed: _computed_attributes), a path the code
    writes (`open("runs.log", "a")`, `df.to_csv(...)`: pycode.written_strings) or a `.log` file (content that
    changes with every run would make the task never hit). Pure and memoised per class; which of them name a
    file is looked at per key (named_data)."""
    texts = sorted({*_uses(cls)[2], *_reads(cls)[4]})
    return codefiles.data_candidates(texts, _static_arguments(cls) | _uses(cls)[5]) if texts else ()


def _static_arguments(cls: type) -> frozenset[str]:
    """The literal paths the class bodies pass to static() (`lookup = static("lookup.csv")`)."""
    try:
        trees = _sources(cls)
    except NixWorkflowError:
        return frozenset()
    return frozenset(a.value for tree in trees for node in ast.walk(tree) if isinstance(node, ast.Call)
                     and getattr(node.func, "id", getattr(node.func, "attr", None)) == "static"
                     for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str))


def named_data(cls: type, declared: Callable[[], set[str]], produced: Callable[[], set[str]]) -> dict[str, str]:
    """{"reads:<name>": content hash} of the data files the class's code names by a literal path (data_words)
    without declaring them: each that is an existing regular file (a symlink by its data) inside the directory
    Luigi runs in or the task module's (resolved against each, as named_code does), none of the task's declared
    outputs or plain inputs (`declared()`), nothing a task it requires declares as its output (`produced()`: on
    disk or not when the key is computed, it must not change the key), no store path and no program (keyed as
    code). Editing one re-runs the task, as a static() file would. Only a class whose code names such a word
    stats anything (most: none, one memo lookup)."""
    words = data_words(cls)
    return _project_data(cls, words, declared, produced, "reads") if words else {}


@functools.cache
def param_templates(cls: type) -> tuple[templates.Template, ...]:
    """Paths the class's methods (not output(), requires() or complete()) build from string constants, the task's
    own parameters and luigi.cfg values, and do not write (`open(p, "w")`, `df.to_csv(p)`):
    `f"data/{self.date:%Y-%m-%d}.csv"`, `"data/" + self.name + ".csv"`, `"data/%s.csv" % self.name`,
    `"data/{}.csv".format(self.date)`, `os.path.join`, `Path("data") / self.name`, through locals and project
    helpers (luigi_nixworkflow.class_templates). Pure and memoised per class; which of them name a file is looked at per
    task (template_data), as data_words' literal paths are."""
    try:
        trees = _sources(cls)
    except NixWorkflowError:
        return ()
    _warn_unfollowed(cls, trees)  # (here: asked of every legacy task, once per class)
    return class_templates.of_class(cls, trees, _own_classes(cls))


def template_data(task: luigi.Task, declared: Callable[[], set[str]],
                  produced: Callable[[], set[str]]) -> dict[str, str]:
    """{"reads:<name>": content hash} of the data files the task's code names by a path built from its parameters
    (param_templates, formatted with this task's values: `f"data/{self.date:%Y-%m-%d}.csv"` is data/2024-01-02.csv
    for that day; in a loop over `self.names`, one path per name), as named_data keys a literal path: editing that
    day's file re-runs that day's task."""
    words = [path for pieces in param_templates(type(task)) for path in templates.paths(task, pieces)]
    return _project_data(type(task), words, declared, produced, "reads") if words else {}


def _warn_unfollowed(cls: type, trees: tuple[ast.Module, ...]) -> None:
    """Warns once per class of each read of a path built from the task's parameters that the key cannot follow
    (unfollowed.unfollowed): editing that file would not re-run the task, so the user must declare it."""
    if settings.of_class(cls, "version") is not None:  # (the user keys what the walk cannot see)
        return
    try:
        found = unfollowed.unfollowed(cls, trees, _own_classes(cls))
    except RecursionError:
        return
    if found:
        logger.warning("nixworkflow: %s reads a file by a path the key cannot follow (%s): editing that file will "
                       "not re-run it. Declare the file (a plain task's LocalTarget it requires, or static() from "
                       "luigi_nixworkflow), build the path with an f-string, os.path.join or a project helper of the "
                       "task's values, or set `version` on the class and change it with the data.",
                       cls.__name__, "; ".join(found))


def command_data(cls: type, command: str, declared: Callable[[], set[str]],
                 produced: Callable[[], set[str]]) -> dict[str, str]:
    """{"command:<name>": content hash} of the data files a command() names by absolute path without declaring them
    (`sort {HERE}/data/ref.tsv`; nixlib.codefiles.command_data_paths: not one it writes or only tests for), as
    named_data keys those a run() names, and as nw run keys them: editing one re-runs the task."""
    words = codefiles.command_data_paths(command, settings.store_root(), command_dirs(cls, command))
    return _project_data(cls, words, declared, produced, "command") if words else {}


def command_dirs(cls: type, command: str) -> list[str]:
    """The project directories a command() changes into (`cd /proj && tool data/ref.fa`: nixlib.codefiles.
    changed_directories) inside the directory Luigi runs in or the task module's: its relative paths name files
    there, as nw run resolves them."""
    if "cd" not in command and "pushd" not in command:  # (the common case)
        return []
    try:
        bases = [os.getcwd(), *module_dirs(cls)]
    except OSError:
        bases = module_dirs(cls)
    return codefiles.changed_directories(command, bases)


def _project_data(cls: type, words: Iterable[str], declared: Callable[[], set[str]], produced: Callable[[], set[str]],
                  tag: str) -> dict[str, str]:
    """named_data's and command_data's walk from candidate words to the project's data files, keyed as `tag:name`."""
    more = module_dirs(cls)
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = more[0] if more else "/"
    bases = list(dict.fromkeys([cwd, *more]))
    inside = tuple(b + os.sep for b in bases if b != "/")
    candidates = dict.fromkeys(os.path.normpath(os.path.join(b, w)) for w in words
                               for b in ([cwd] if os.path.isabs(w) else bases))
    candidates = {p: None for p in codefiles.expand_globs(candidates) if p.startswith(inside) and os.path.isfile(p)}
    if not candidates:
        return {}
    root = settings.store_root()
    skip = {os.path.abspath(p) for p in (*declared(), *produced())}
    files, outside = _code_files(root), tuple(p + os.sep for p in skip)
    keep = lambda p: not os.path.realpath(p).startswith(root + os.sep)  # noqa: E731
    # (with the configs a YAML config among them includes: `defaults: [base, {optim: adam}]`)
    found = files.with_includes(files.project_data(candidates, bases, skip, outside, keep), bases, skip, outside, keep)
    return {f"{tag}:{_written(p, cwd, more)}": h for p, h in sorted(found.items())}


@functools.cache
def run_modules(cls: type) -> tuple[str, ...]:
    """The modules the class's code runs with `python -m` (`subprocess.run([sys.executable, "-m", "pkg.train"])`):
    a project module run so is code like a script, and is keyed with it (`module_files`)."""
    return tuple(codefiles.run_modules(pycode.ordered_strings(_own_functions(cls))))


def module_files(cls: type) -> list[str]:
    """The files of the project modules the class's code runs with `python -m`, as Python finds them: in the
    directory Luigi runs in (a subprocess's first import path) or the task module's (on PYTHONPATH)."""
    modules = run_modules(cls)
    if not modules:
        return []
    try:
        places = [os.getcwd(), *module_dirs(cls)]
    except OSError:
        places = module_dirs(cls)
    places += import_dirs(cls, None)  # (the project's package installed in development mode: nixlib.pyimports)
    return [p for d in dict.fromkeys(places) for p in codefiles.module_paths(modules, d)]


@functools.cache
def _ordered_strings(cls: type) -> tuple[str, ...]:
    return tuple(pycode.ordered_strings(_own_functions(cls), joined=False))


def make_files(cls: type) -> list[str]:
    """The makefiles the class's code runs make with (`subprocess.run(["make", "-C", "sub"])`, from where Luigi runs
    or the task module's directory: nixlib.makefiles.of_code), keyed as code with the scripts their recipes
    run (and, through script_data, the data those read)."""
    strings = _ordered_strings(cls)
    if not any("make" in s for s in strings):  # (the common case)
        return []
    try:
        places = [os.getcwd(), *module_dirs(cls)]
    except OSError:
        places = module_dirs(cls)
    return makefiles.of_code(strings, list(dict.fromkeys(places)))


def import_dirs(cls: type, command: str | None, cds: Iterable[str] = ()) -> tuple[str, ...]:
    """The project directories (inside the directory Luigi runs in or the task module's) that the Pythons a task
    runs import its modules from besides a script's own directory (nixlib.pyimports): those of a command()'s
    Pythons (`command`; the directories it changes into, `cds`, and PYTHONPATH= too), or, for the code of run()
    and produce() (`command` None), those of the worker's own interpreter (`subprocess.run([sys.executable,
    "scripts/fit.py"])`) and of PATH's python: an editable install of the project (a .pth line, setuptools'
    finder) puts its package there."""
    try:
        bases = [os.getcwd(), *module_dirs(cls)]
    except OSError:
        bases = module_dirs(cls)
    if command is not None:
        return tuple(pyimports.import_dirs(command, bases, cds))
    key = (cls, tuple(bases), os.environ.get("PATH"))  # (the same for every task of a class: once per build)
    known = _RUN_IMPORTS.get(key)
    if known is None or known[0] != present.GENERATION[0]:
        known = _RUN_IMPORTS[key] = (present.GENERATION[0], tuple(pyimports.import_dirs(
            "python", bases, pythons=(sys.executable,))))
    return known[1]


_RUN_IMPORTS: dict[tuple[type, tuple[str, ...], str | None], tuple[int, tuple[str, ...]]] = {}


def named_code(words: list[str], more_roots: list[str], declared: set[str], command: bool = False,
               paths: list[str] | None = None, imports: tuple[str, ...] = ()) -> dict[str, str]:
    """{name as written: digest} of the project's code files among `words` (nixlib.codefiles) that are not
    `declared` (the task's outputs, its plain inputs): inside the directory Luigi runs in or one of
    `more_roots` (a task module's), resolved against the former (or, failing that, the first of the latter).
    A `command` runs in its output directory, where only an absolute path names a project file: its words are
    codefiles.command_paths (the store's own paths are keyed as references, not here). `paths`, if given,
    receives the absolute path of each (for script_data). A Python script is keyed with the project modules it
    imports from the `imports` directories too (import_dirs: an editable install's, PYTHONPATH's)."""
    try:
        cwd = os.getcwd()
    except OSError:  # (the directory Luigi runs in was removed: only the module's directory is left)
        cwd = more_roots[0] if more_roots else "/"
    roots = [cwd, *more_roots]
    files = _code_files(settings.store_root())
    found = files.named(words, roots, declared, cwd, imports=imports)
    if more_roots and not command:
        found.update(files.named([w for w in words if not os.path.isabs(w)], roots, declared | set(found),
                                 more_roots[0], imports=imports))
    if paths is not None:
        paths += sorted(found)
    return {_written(path, cwd, more_roots): h for path, h in sorted(found.items())}


def script_data(cls: type, scripts: list[str], declared: Callable[[], set[str]],
                produced: Callable[[], set[str]], command: str | None = None) -> dict[str, str]:
    """{"reads:<name>": content hash} of the data files the project scripts a task runs (named_code's `paths`) name by
    a literal path (nixlib.codefiles.script_data_words: `pd.read_csv("data/train.csv")` in scripts/train.py, not a
    path it writes), relative to where Luigi runs, the task module's directory or the script's own, and so those the
    scripts they run in turn do (`bash run.sh` running prep.py, a Makefile's recipes), and the configs of the Hydra
    config directories they name (`config_path="conf"`) or a `command()` does (`--config-path {HERE}/conf`;
    nixlib.codefiles.CodeFiles.chain_reads), and those the project modules they import open, also from an editable
    install or PYTHONPATH directory (import_dirs): as named_data keys those the task's own code names, and nw run those
    of the scripts a command runs."""
    files = _code_files(settings.store_root())
    try:
        bases = list(dict.fromkeys([os.getcwd(), *module_dirs(cls)]))
    except OSError:
        bases = module_dirs(cls)
    configs = configfiles.command_dirs(command) if command is not None else []
    cds = command_dirs(cls, command) if command is not None else bases
    config_dirs = [os.path.normpath(os.path.join(b, d)) for d in configs
                   for b in ([""] if os.path.isabs(d) else [*cds, *map(os.path.dirname, scripts)])]
    imports = import_dirs(cls, command, cds if command is not None else ())  # (a module of an editable install)
    words = files.chain_reads(scripts, list(dict.fromkeys([*bases, *cds])), config_dirs, bases, imports=imports)
    return _project_data(cls, words, declared, produced, "reads") if words else {}


def _written(path: str, cwd: str, more_roots: list[str]) -> str:
    """A code file's name in the key: relative to the directory it was found in, so a clone keys the same."""
    for base, tag in ((cwd, "."), *((r, "@module") for r in more_roots)):
        if path.startswith(base + os.sep):
            return f"{tag}/{os.path.relpath(path, base)}"
    return path


@functools.lru_cache(maxsize=8)
def _code_files(root: str) -> codefiles.CodeFiles:
    return codefiles.CodeFiles(settings.engine(root).store.memo)


@functools.cache
def module_dirs(cls: type) -> list[str]:
    """The directory of the module defining the class (where its project's scripts usually are), if any."""
    module = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return [os.path.dirname(os.path.abspath(module))] if module else []


def _main_name() -> str:
    """The module name the script Python runs as `__main__` has when imported: `python -m pkg.mod` says it
    (its spec), `python pipeline.py` is `pipeline` (found on the path as its own directory, sys.path[0]).
    `python pipeline.py Task` (luigi.run() under `if __name__ == "__main__"`) defines the tasks and helpers in
    `__main__`, `luigi --module pipeline Task` in `pipeline`: keys name them alike (pycode.MODULE_NAMES)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name)
    file = getattr(main, "__file__", None)
    return os.path.splitext(os.path.basename(file))[0] if file else "__main__"


pycode.MODULE_NAMES.setdefault("__main__", _main_name())


@functools.cache
def _sources(cls: type) -> tuple[ast.Module, ...]:
    """The parsed source of the class and of its own base classes (not Luigi's, not ours)."""
    trees = []
    for c in _own_classes(cls):
        try:
            source = _class_source(c)
        except (OSError, TypeError):
            raise NixWorkflowError(
                f"cannot read the source code of task class {c.__qualname__} (module {c.__module__}), which the "
                "cache key must cover. Set `version = \"1\"` on the class and change it whenever the code changes."
            ) from None
        trees.append(ast.parse(textwrap.dedent(source)))
    return tuple(trees)


def _class_source(c: type) -> str:
    """inspect.getsource(c), each module parsed once per process rather than once per class: Python 3.11 and
    3.12 find a class by parsing its whole module (~10 ms for a few hundred lines) every time. The same lines,
    the same class finder and the same block rule as inspect's, so the text (and every code digest) is the
    same; anything unusual (no file, 3.13's __firstlineno__, a class not found) is left to inspect itself."""
    finder, found = getattr(inspect, "_ClassFinder", None), getattr(inspect, "ClassFoundException", None)
    target = inspect.unwrap(c)
    if finder is None or found is None or target is not c or hasattr(c, "__firstlineno__"):
        return inspect.getsource(c)
    file = inspect.getsourcefile(c)
    if not file:
        return inspect.getsource(c)
    linecache.checkcache(file)
    module = inspect.getmodule(c, file)
    lines = linecache.getlines(file, module.__dict__) if module else linecache.getlines(file)
    source = "".join(lines)
    known = _MODULE_TREES.get(file)
    if known is None or known[0] != source:  # (a file edited and reloaded meanwhile is parsed again)
        try:
            known = _MODULE_TREES[file] = (source, ast.parse(source))
        except (SyntaxError, ValueError):
            return inspect.getsource(c)
    try:
        finder(c.__qualname__).visit(known[1])
    except found as e:
        return "".join(inspect.getblock(lines[e.args[0]:]))
    return inspect.getsource(c)


@functools.cache
def _identifiers(cls: type) -> frozenset[str]:
    """Every name and attribute name the class's code mentions (None when its source cannot be read)."""
    try:
        trees = _sources(cls)
    except NixWorkflowError:
        return frozenset()
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
    return frozenset(names)


def config_classes(cls: type) -> list[type[luigi.Config]]:
    """The luigi.Config classes whose values the task reads: those its code names (`MyConfig().value`),
    plus those it declares in `configs = (MyConfig,)` (for values read by helpers outside the class)."""
    declared = list(getattr(cls, "configs", None) or ())
    for c in declared:
        if not (isinstance(c, type) and issubclass(c, luigi.Config)):
            raise NixWorkflowError(f"task {cls.__qualname__}: `configs` lists {c!r}, which is not a luigi.Config class")
    names = _identifiers(cls)
    # By name first, and by the MRO rather than issubclass: Luigi's metaclass is an ABCMeta, whose subclass check
    # walks every registered class's subclasses (tens of ms per process for a large registry).
    found = [c for c in Register._reg if isinstance(c, type) and c.__name__ in names and luigi.Config in c.__mro__
             and c.__module__.split(".")[0] not in _SKIP_MODULES]
    # (also those only its helpers read, and those its methods import: `from settings import Paths as P`)
    reached = [c for c in (*_uses(cls)[1], *_reads(cls)[5]) if luigi.Config in c.__mro__]
    return list(dict.fromkeys([*declared, *found, *reached]))


@functools.cache
def _uses(cls: type) -> tuple[dict[str, str], tuple[type, ...], frozenset[str], frozenset[str], frozenset[str],
                              frozenset[str]]:
    """The module-level code the class's methods (and its own base classes') use, the Luigi task and Config
    classes they name (a task named there, an upstream one, is keyed by its result, not its code), the
    string constants of all that code, those of the code that reads environment variables, and the global and
    attribute names all that code uses, and the paths it writes (pycode.written_strings). Code held where `uses`
    cannot follow it keys the text of its file (pycode.unfollowed_texts)."""
    strings: set[str] = set()
    environ: set[str] = set()
    attributes: set[str] = set()
    written: set[str] = set()
    codes: list[Any] = []
    found, stopped = pycode.uses(_own_functions(cls), stop=_is_task, strings=strings, environ=environ,
                                 attributes=attributes, written=written, codes=codes)
    found.update(pycode.unfollowed_texts(codes, _holds_no_code))  # (code it cannot walk: its file's whole text)
    return found, stopped, frozenset(strings), frozenset(environ), frozenset(attributes), frozenset(written)


def _holds_no_code(value: Any) -> bool:
    """Values whose code a task's key need not follow (pycode.unfollowed_texts): task and Config classes and
    instances (keyed by their results or values: `TASKS = [Clean, Plot]` iterated in requires()), and Luigi's own
    objects."""
    if isinstance(value, type):
        return _is_task(value)
    return isinstance(value, luigi.task.Task) or (type(value).__module__ or "").split(".")[0] in ("luigi", "logging")


def _own_classes(cls: type) -> list[type]:
    """The class and its own base classes: not Luigi's, not ours, not object, nor the copy `luigi.task.externalize`
    makes of a class (shape.externalized: it has the source of the class it copies, which would be keyed twice, so
    the copy of a store-native task had a key of its own and never found the result its original stored)."""
    return [c for c in cls.__mro__ if c is not object and c.__module__.split(".")[0] not in _SKIP_MODULES
            and not shape.externalized(c)]


@functools.cache
def _own_functions(cls: type) -> tuple[Any, ...]:
    """The functions (methods, properties' accessors) of the class and its own base classes, and their class
    bodies (_bodies)."""
    return (*(f for c in _own_classes(cls) for f in pycode.functions_in(c)), *_bodies(cls))


def _bodies(cls: type) -> list[types.FunctionType]:
    """The class bodies of the class and its own base classes, each as a function over its module's globals, so
    that what a class attribute is set from is walked as a method's code is: `columns = COLUMNS`, `sep =
    helpers.SEP`, `fmt = staticmethod(helpers.fmt)`. The source keys only those names, not the values behind
    them, so editing `COLUMNS` served the old result. None for a class whose source cannot be read (its
    `version` keys it)."""
    try:
        trees = _sources(cls)
    except NixWorkflowError:
        return []
    found = []
    for c, tree in zip(_own_classes(cls), trees, strict=True):
        module = sys.modules.get(c.__module__)
        tree = _unscheduled(tree)  # (a literal names nothing to walk; left in, its own name would count as read)
        node = tree.body[0] if tree.body else None
        if module is None or not isinstance(node, ast.ClassDef):
            continue
        filename = getattr(module, "__file__", None) or "<unknown>"
        try:
            code = compile(ast.Module(body=node.body, type_ignores=[]), filename, "exec")
        except (SyntaxError, ValueError):
            continue
        found.append(types.FunctionType(code, vars(module), f"{c.__qualname__}.<body>"))
    return found


def _unscheduled(tree: ast.Module, keep: frozenset[str] = frozenset()) -> ast.Module:
    """The class's parsed source without the Luigi scheduling attributes (SCHEDULING) it sets to a plain value
    (`priority = 10`, `resources = {"db": 1}`, `retry_count: int = 3`): they steer when, where and how often
    Luigi runs the task, never what run() writes, so editing one no longer re-runs it (as plain Luigi would
    not). Not one its code reads itself (`keep`: `self.priority` in run(), a helper it calls, a getattr
    string), and never a method or property of that name, or a value computed from other names: those stay."""
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.ClassDef):
        return tree
    body = [s for s in node.body if not _scheduling(s, keep)]
    if len(body) == len(node.body):
        return tree
    return ast.Module(body=[ast.ClassDef(**{**vars(node), "body": body})], type_ignores=tree.type_ignores)


def _scheduling(statement: ast.stmt, keep: frozenset[str]) -> bool:
    """`statement` sets one scheduling attribute, not in `keep`, to a literal value."""
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target, value = statement.targets[0], statement.value
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        target, value = statement.target, statement.value
    else:
        return False
    if not isinstance(target, ast.Name) or target.id not in SCHEDULING or target.id in keep:
        return False
    try:
        ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _is_task(c: type) -> bool:
    """A Luigi task (or Config) class: keyed by its result (or values), never walked into."""
    return luigi.task.Task in c.__mro__


def config_values(cls: type) -> dict[str, Any]:
    """The current values of the Config classes the task reads (luigi.cfg, environment), by family: they
    enter the key, so changing `[MyConfig] threshold` re-runs the tasks that read it."""
    known = _CONFIG_VALUES.get(cls)
    if known is None:
        known = {c.get_task_family(): params(c()) for c in config_classes(cls)}
        known.update(config_sections(cls))
        _CONFIG_VALUES[cls] = known
    return known


def environment(cls: type) -> dict[str, str]:
    """{"$NAME": digest of its value} of the environment variables the task's code (or its helpers') reads by
    name: `os.environ["SCALE"]`, `os.getenv("DATA_VERSION")` in run(). Luigi passes the environment to run()
    unchanged, so such a value changes what it writes as a parameter does; without this, a result computed with
    SCALE=3 was served after `SCALE=4 luigi ...`. Keyed by a digest, never the value (a token stays out of the
    records); the variables each step gets from its env (PATH, TMPDIR, …) and nixworkflow's own are left out.
    Read at every recipe, not once per process: a notebook sets os.environ between two builds."""
    names = _uses(cls)[3]
    if not names:
        return {}
    out: dict[str, str] = {}
    variables = stepio.outside()
    for name in sorted(names):
        value = variables.get(name)
        if value is not None and name not in _STEP_VARIABLES and not name.startswith("NIX_WORKFLOW_") \
                and _VARIABLE.fullmatch(name):
            out["$" + name] = digest(value)
    return out


def scripts_environment(cls: type, scripts: list[str], command: str | None, options: RunOptions) -> dict[str, str]:
    """{name: digest of its value, or "unset"} of the host variables the project `scripts` a task runs (absolute
    paths: translate's `_scripts`) read by name, with the scripts those run and the project modules they import
    (nixlib.envreads: `$SCALE` in the run.sh a command() runs, `Sys.getenv("SCALE")` in the fit.R run() runs with
    subprocess): the scripts see the worker's environment, so SCALE=3 computes otherwise than SCALE=2 while their
    text, keyed by `runs`, is the same. Keyed as nw run and the Snakemake executor key them (nixlib.hostenv.named:
    none of a pure task's), with the worker's own environment (stepio.outside), as `environment` keys run()'s."""
    if not scripts:
        return {}
    imports = import_dirs(cls, command, command_dirs(cls, command) if command is not None else ())
    key = (tuple(map(_stat_signature, scripts)), imports, tuple(getattr(d, "packages", ()) for d in imports))
    known = _SCRIPT_NAMES.get(key)
    if known is None or known[0] != present.GENERATION[0]:
        if len(_SCRIPT_NAMES) >= 1024:  # (a long-lived interpreter whose scripts were edited many times)
            _SCRIPT_NAMES.clear()
        known = _SCRIPT_NAMES[key] = (present.GENERATION[0], envreads.scripts_variables(
            _code_files(settings.store_root()), scripts, imports))
    return hostenv.named(known[1], options, stepio.outside()) if known[1] else {}


# (scripts, import directories) -> (build generation, the variables they read): the tasks of a build running the same
# scripts are scanned once (the modules they import looked for once), and again at the next build (one added or edited)
# or once a script is edited
_SCRIPT_NAMES: dict[tuple, tuple[int, frozenset[str]]] = {}


def _stat_signature(path: str) -> tuple[str, int, int, int]:
    """A file's path with its size, mtime and inode (an edit changes one); a missing one's path alone."""
    try:
        st = os.stat(path)
    except OSError:
        return path, -1, -1, -1
    return path, st.st_size, st.st_mtime_ns, st.st_ino


def config_sections(cls: type) -> dict[str, dict[str, str]]:
    """{"[section]": its values} for each section of the Luigi configuration whose name is a string constant of
    the task's code (or its helpers'): code that reads luigi.cfg directly, as many pipelines do
    (`luigi.configuration.get_config().getint("counting", "scale")`), rather than through a luigi.Config
    class. Without this, changing `[counting] scale` served the result computed with the old value. Luigi's own
    sections are left out (they say how Luigi runs, not what a task computes)."""
    cfg = luigi.configuration.get_config()
    out: dict[str, dict[str, str]] = {}
    for name in sorted(_uses(cls)[2] - _LUIGI_SECTIONS):
        values = _section(cfg, name)
        if values is not None:
            out[f"[{name}]"] = values
    return out


def _section(cfg: Any, name: str) -> dict[str, str] | None:
    """The values of one section as text (None if the configuration has no such section)."""
    data = getattr(cfg, "data", None)
    if isinstance(data, Mapping):  # luigi's toml parser
        section = data.get(name)
        return {str(k): str(v) for k, v in section.items()} if isinstance(section, Mapping) else None
    if not cfg.has_section(name):
        return None
    try:
        return dict(cfg.items(name))
    except Exception:  # an interpolation that fails: the text as written
        return dict(cfg.items(name, raw=True))


def named_tasks(task: luigi.Task, covered: set[type]) -> dict[str, str]:
    """{class: code digest} of the user's task classes the task's code names (`Powers(n).f(3)` in run(),
    `subtasks()` of `luigi.util.delegates`) or a TaskParameter of it holds, that its key does not already cover by
    result: not the classes of the tasks it requires, directly or through plain tasks (`covered`). Such a class's
    methods run inside this task, so editing them must re-run it; a class it requires is keyed by its result
    instead (early cutoff). A TaskParameter's class is keyed even where the task only passes it on upstream: its
    code may run here too, and over-keying only re-runs the task. The classes those name in turn are followed."""
    named, task_params = _task_names(type(task))
    todo = [c for c in named if c not in covered or _calls_into(type(task), c)]
    for name in task_params:
        value = task.param_kwargs.get(name)
        if isinstance(value, type) and _named_task(value):
            todo.append(value)
    if not todo:  # (the common case: a class names only the tasks it requires)
        return {}
    found: dict[str, str] = {}
    seen: set[type] = {type(task)}
    while todo:
        c = todo.pop()
        if c in seen:
            continue
        seen.add(c)
        found[pycode.qualified(c)] = code_digest(c)
        todo += [n for n in _task_names(c)[0] if n not in covered or _calls_into(c, n)]
    return dict(sorted(found.items()))


@functools.cache
def _calls_into(cls: type, named: type) -> bool:
    """Whether the code of `cls` may use code of task class `named` beyond Luigi's task API: a method, property or
    class attribute its own classes define (`self.requires().f(3)`), not a Parameter, not `output()`. Such code runs
    inside `cls`'s task, so even a class it requires is then keyed by its code too: editing `f` re-runs the class it
    belongs to, whose unchanged output would otherwise serve the old result downstream (early cutoff)."""
    used = _uses(cls)[4] | _uses(cls)[2]  # (attribute names, and strings: `getattr(up, "f")`)
    api = {name for k in named.__mro__ if k.__module__.split(".")[0] in _SKIP_MODULES for name in vars(k)}
    return any(name in used and name not in api and not name.startswith("__")
               and not isinstance(value, luigi.Parameter)
               for k in _own_classes(named) for name, value in vars(k).items())


@functools.cache
def _task_names(cls: type) -> tuple[tuple[type, ...], tuple[str, ...]]:
    """The user's task classes the code of `cls` names, and its significant TaskParameters (fixed per class)."""
    params = tuple(name for name, p in cls.get_params() if p.significant and isinstance(p, luigi.TaskParameter)) \
        if _is_task(cls) else ()
    return tuple(dict.fromkeys(c for c in (*_uses(cls)[1], *_reads(cls)[5]) if _named_task(c))), params


def _named_task(c: type) -> bool:
    return _is_task(c) and luigi.Config not in c.__mro__ and pycode.user_class(c)

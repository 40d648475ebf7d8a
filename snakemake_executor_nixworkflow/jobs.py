"""A Snakemake job as a nixlib Recipe: what enters its key, and where its outputs live.

What is keyed (so a job is re-used exactly when re-running it would do the same thing):
the rule's code (the formatted, normalised shell command and the project's code files it names; a
script's, notebook's or template's content (a local script's with the project's code files it names); a
wrapper's identifier and code, as `--wrapper-prefix` resolves it; a `run:` block's source and the helpers,
data, scripts and local modules it uses),
params, wildcards, the content hash of every input file (memoised by stat signature, so unchanged large inputs are not
re-read), files of the project the params name, the env identity, the output, log and benchmark paths,
and for code that can read the workflow config at run time (script, notebook, wrapper, run:) a digest of
that config (a module rule's: the module's). Absolute working and
Snakefile directories are replaced by placeholders, so a clone elsewhere keys the same.

Threads and resources: a shell command keys on them through its text (`{threads}` is formatted
into it); a `run:` block or a local script keys its threads when its code names them, and the resources it
reads by name (`resources.mem_mb`), all of them when it uses the object otherwise (RecipeBuilder.job_values_read);
a wrapper or template rule keys both (except `tmpdir`, a host path, and the executor's own resources).
A Python `script:` is keyed with every local module it imports (a file or package next to it,
transitively), since Snakemake puts the script's directory on its import path (nixlib.codefiles).

What is deliberately not keyed: threads and resources no code of the job reads (a shell rule's but through
its text), the rule name (renaming a rule does not change what it computes), timestamps and host names.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import re
import shlex
import sys
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from nixlib import base32, codefiles, configfiles, envreads, hostenv, makefiles, pycode, pydata, pyimports
from nixlib.command import CommandSyntaxError, expanded_variables, normalise
from nixlib.config import switch_word
from nixlib.env import ResolvedEnv
from nixlib.errors import NixWorkflowError
from nixlib.recipe import Recipe, RunOptions, digest
from nixlib.statmemo import StatMemo
from snakemake_executor_nixworkflow import internals
from snakemake_executor_nixworkflow.runtime import SNAKEMAKE_VARS, deployed_software

# Output flags whose files are not plain products of the job: a pipe or service is never a file
# at rest, and an `update` output's old content is an input the key cannot see.
UNCACHEABLE_FLAGS = ("pipe", "service", "update")
LOG_PREFIX = "log:"
BENCHMARK_PREFIX = "benchmark:"


def jsonable(value: Any) -> Any:
    """A JSON-able rendering of params and wildcards: Namedlists keep their names; the rest as nixlib.pydata.render
    renders it (paths as text, a NaN tagged, a pandas table or numpy array by all its values)."""
    if hasattr(value, "_allitems"):  # snakemake Namedlist: names and order both matter
        return [[name, jsonable(v)] for name, v in value._allitems()]
    return pydata.render(value, jsonable)


def declared_paths(job: Any) -> set[str]:
    """Absolute paths of the job's inputs, outputs, logs and benchmark file: what it declares, never keyed as named
    files."""
    declared = {os.path.abspath(str(f)) for files in (job.input, job.output, job.log) for f in files}
    if job.benchmark:
        declared.add(os.path.abspath(str(job.benchmark)))
    return declared


def param_texts(value: Any) -> list[str]:
    """The texts of a param value that may name a file: each path-like text (nixlib.codefiles.strings_in) and the
    path-like words inside it (`extra="-a file:config/adapters.fa --min 3"`, `"--ref=data/ref.fa"`)."""
    texts = codefiles.strings_in(value)
    return list(dict.fromkeys([*texts, *(w for t in texts for w in codefiles.data_words(t))])) if texts else []


def run_digest(rule: Any, relocate: Any = None) -> tuple[str, tuple[str, ...], frozenset[str], tuple[str, ...]]:
    """A `run:` block's key: its source, and the module-level code it uses (nixlib.pycode: the Snakefile's
    helper functions and classes, plain values, local modules), so editing a helper re-runs the rule; with the
    path-like words of the string constants of that code (`shell("python scripts/clean.py {input}")`), among
    which the job's code files are looked for (their content changes without the code changing). `relocate`
    (Relocator.values) replaces the checkout's absolute paths in the values and data the code reads (nixlib.pycode,
    nixlib.pydata): `TABLE = workflow.source_path("t.tsv")`, a copy in a new temporary directory every run, keys
    as its original's path (its content is keyed as the code files named are, below). Last,
    the top-level names of the modules that code imports inside functions (`import helpers` in the block),
    whose local files are keyed by content per job (`RecipeBuilder.imported_modules`), and the modules its
    commands run with `python -m` (`shell("python -m pkg.train {output}")`, `[sys.executable, "-m", "pkg.train"]`),
    whose files are found per job (`RecipeBuilder.code`)."""
    own = sha((rule.run_func_src or "").encode())
    strings: set[str] = set()
    imports: set[str] = set()
    codes: list[tuple[types.CodeType, dict[str, Any], dict[str, Any]]] = []
    uses = pycode.uses([rule.run_func], strings=strings, relocate=relocate, codes=codes)[0] \
        if rule.run_func is not None else {}
    data = pydata.data_values(rule.run_func, jsonable, strings, imports) if rule.run_func is not None else {}
    for held in (uses, data):
        held.pop(_config_name(rule), None)
    uses.update(pycode.unfollowed_texts(codes, _snakemakes))
    data = relocate(data) if relocate is not None and data else data
    code = digest([own, uses, data]) if data else digest([own, uses]) if uses else own
    found = (w for text in sorted(strings) for w in codefiles.words(text) if codefiles.looks_like_code(w))
    modules = [m for text in sorted(strings) for m in codefiles.command_modules(text)]
    modules += codefiles.run_modules(pycode.ordered_strings([rule.run_func])) if rule.run_func is not None else []
    return code, tuple(dict.fromkeys(found)), frozenset(imports), tuple(dict.fromkeys(modules))


def _config_name(rule: Any) -> str | None:
    """The name under which nixlib.pycode and nixlib.pydata key a `run:` block's `config` (`snakefile.config`): left
    out of its code digest when the job is keyed on the config its code reads (run_config_read: only the keys it
    reads, when known), so a key it never reads does not re-run it that way either."""
    globs = getattr(rule.run_func, "__globals__", None) or {}
    config = rule_config(rule)
    if config is None or globs.get("config") is not config or run_config_read(rule) == frozenset():
        return None
    return f"{pycode.module_name(globs.get('__name__', '?'))}.config"


def local_script(job: Any, path: str) -> str | None:
    """The local file a rule's `script:` (notebook, cwl) names, or None for a remote one (a URL, a wrapper's)."""
    source = job._path_to_source_file(path)
    local = source.get_path_or_uri(secret_free=True) if hasattr(source, "get_path_or_uri") else None
    return local if isinstance(local, str) and os.path.isfile(local) else None


def rule_config(rule: Any) -> Mapping[str, Any] | None:
    """The `config` of the namespace the rule was defined in (a module's own config for a module rule)."""
    config = (getattr(rule, "module_globals", None) or {}).get("config")
    return config if isinstance(config, Mapping) else None


def config_paths(config: Mapping[str, Any], roots: list[str]) -> list[tuple[tuple[str, ...], str]]:
    """(the keys leading to it, text) of each path-like text in the config (nixlib.codefiles.strings_in) that names
    something inside one of `roots` (the working and Snakefile directories): the project files code reading the
    config may open. Whether each is a file is checked per job."""
    inside = tuple(os.path.abspath(r) + os.sep for r in roots if os.path.abspath(r) != "/")
    found: list[tuple[tuple[str, ...], str]] = []
    todo: list[tuple[tuple[str, ...], Any]] = [((), config)]
    while todo:
        keys, value = todo.pop()
        if isinstance(value, Mapping):
            todo += [((*keys, str(k)), v) for k, v in value.items()]
        else:
            found += [(keys, t) for t in codefiles.strings_in(value) if os.path.abspath(t).startswith(inside)]
    return found


def run_strings(rule: Any) -> list[str]:
    """The string constants of a `run:` block and of the module-level code it uses (nixlib.pycode)."""
    strings: set[str] = set()
    pycode.uses([rule.run_func], strings=strings)
    return sorted(strings)


def run_commands(rule: Any) -> tuple[str, ...]:
    """The string constants of a `run:` block and the module-level code it uses that may be commands its `shell()`
    calls run (a space in them, or `make`): searched as a `shell:` command is for the code it runs and what that
    reads (`shell("make -C sub")`, `shell("bash scripts/run.sh {input}")` running prep.py, `python3 -c 'import
    helpers'`, `cd tools && python3 prep.py`)."""
    if rule.run_func is None:
        return ()
    return tuple(t for t in run_strings(rule) if "make" in t or any(c.isspace() for c in t.strip()))


def run_command(job: Any, command: str) -> str | None:
    """A `run:` block's `shell()` template formatted as Snakemake's shell() formats it for this job (its input,
    output, params, wildcards, log, threads, resources, config), or None where it names anything else (a local
    variable of the block) or is no template at all."""
    if "{" not in command:
        return command
    from snakemake.utils import format as snakemake_format

    values = {"input": job.input, "output": job.output, "params": job.params, "wildcards": job.wildcards,
              "log": job.log, "threads": job.threads, "resources": job.resources, "rule": job.rule.name,
              "config": rule_config(job.rule) or {}}
    try:
        return snakemake_format(command, **values)
    except Exception:  # (a name only the block's frame holds, a literal brace: nothing more is found)
        return None


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def run_variables(rule: Any) -> frozenset[str]:
    """The names of the environment variables a `run:` block, or the module-level code it uses, may read by name
    (`os.environ["SCALE"]`, `os.getenv("SCALE", "1")`, `os.environ.get(VAR)` with `VAR = "SCALE"`): the string
    constants of the code that reads the environment (nixlib.pycode, as Luigi keys a task's run())."""
    if rule.run_func is None:
        return frozenset()
    environ: set[str] = set()
    pycode.uses([rule.run_func], environ=environ)
    return frozenset(n for n in environ if _NAME.fullmatch(n))


# Names through which code of the Snakefile reaches the workflow config: `config`, `workflow.config`, or a lookup
# by computed name (`globals()["config"]`, `getattr(workflow, name)`, `sys.modules`).
_CONFIG_NAMES = frozenset({"config", "workflow", "globals", "locals", "vars", "eval", "exec", "getattr", "__dict__",
                           "__globals__", "modules"})


def run_config_read(rule: Any) -> frozenset[str] | None:
    """The top-level config keys a `run:` block, with the module-level code it uses (nixlib.pycode), may read: an
    empty set when it never names `config`, the keys when it reads it only by constant ones (run_config_keys), None
    (all of it) when it names `workflow` or a computed lookup, or reads a module-level value that is the config
    under another name (`CFG = config`, _binds) or an object no key holds by value (nixlib.pydata.opaque_values:
    `settings = Settings(config)` holding an object built from it). A value the block reads from a module-level name
    computed from the config (`SEEDS = config["seeds"]`, an instance of plain attributes) is keyed by value by
    run_digest. So adding a sample re-runs no block that reads only `config["threshold"]`."""
    function = rule.run_func
    if function is None:
        return None
    strings: set[str] = set()
    names: set[str] = set()
    codes: list[tuple[types.CodeType, dict[str, Any], dict[str, Any]]] = []
    pycode.uses([function], strings=strings, attributes=names, codes=codes)
    globs = function.__globals__
    config = globs.get("config")
    if not (_CONFIG_NAMES - {"config"}).isdisjoint(names) or isinstance(config, Mapping) and any(
            _binds(globs[n], parts) for parts in [_parts(config)] for n in names - {"config"} if n in globs):
        return None
    # A module-level object no key holds whole (`settings = Settings(config)` keeping an object built from it,
    # `OmegaConf.create(config)`) may hold what it was built from: Snakemake's own objects (`rules`, `logger`) not.
    if pydata.opaque_values(function, _snakemakes):
        return None
    # Snakefile code held where nixlib.pycode cannot walk it (a library object: `REG = ChainMap({"n": n})`) may
    # read any of the config without the block naming it.
    if pycode.unfollowed_code(codes, _snakemakes):
        return None
    if "config" not in names and not any("config" in s for s in strings):
        return frozenset()
    return run_config_keys(rule, codes)


def run_config_keys(rule: Any, codes: list[tuple[types.CodeType, dict[str, Any], dict[str, Any]]]
                    ) -> frozenset[str] | None:
    """The top-level config keys the code of a `run:` block (`codes`: it and the code it uses, walked by
    nixlib.pycode.uses) reads, when each use of the config is certain: `config["k"]`, `config.get("k", ...)` or
    `"k" in config` (pycode.global_keys) of the config the rule's job is keyed on, and each string mentioning it is
    a template reading one key by a constant name (`shell("tool {config[ref]}")`: shell() formats with the caller's
    names). None (all of it) at any doubt: another mention, a `config` of another module, a template the code does
    not hold (`shell(open("cmd.txt").read())`, an f-string), a module-level string or a config value holding a
    template of the config (`shell(config["cmd"])` with `cmd: "tool {config[ref]}"`)."""
    config = rule_config(rule)
    if config is None or rule.run_func.__globals__.get("config") is not config \
            or pycode.unfollowed_code(codes, _snakemakes):  # (`STEPS["n"]()`: code whose reads are not seen here)
        return None
    keys: set[str] = set()
    for code, globs, _ in codes:
        read = pycode.global_keys(code, "config")
        texts = pycode.ordered_strings([types.SimpleNamespace(__code__=code)], joined=False)  # (nested code's too)
        held = _template_keys(texts, "config")
        if read is None or held is None:
            return None
        if (read or held) and globs.get("config") is not config:
            return None
        keys |= read | held
    if any(pycode.code_unseen_templates(code, globs, _formats_locals) for code, globs, _ in codes):
        return None
    module: set[str] = set()
    pydata.data_values(rule.run_func, lambda value: None, module)  # (only the strings: nothing rendered)
    held = _template_keys(module, "{config")
    if held is None or _template_keys(_texts(config), "{config") != frozenset():
        return None
    return frozenset(keys | held)


# A format field of a template reading one config key by a constant name: `{config[ref]}`, `{config[ref]:>4}`,
# `{config[db][host]}` (a digit index, `{config[0]}`, is an int key: see _template_keys).
_CONFIG_FIELD = re.compile(r"\{config\[([^\][{}]+)\]")


def _template_keys(texts: Iterable[str], mention: str) -> frozenset[str] | None:
    """The config keys the `texts` read as templates (`{config[k]}`), or None when one of them mentions the config
    (`mention`: "config", or only as a template field, "{config") other than as such a field, or by a number."""
    keys: set[str] = set()
    for text in texts:
        found = _CONFIG_FIELD.findall(text)
        if text.count(mention) != len(found) or any(k.isdigit() for k in found):
            return None
        keys.update(found)
    return frozenset(keys)


def _texts(value: Any) -> Iterator[str]:
    """The strings in a config (its keys and values, at any depth)."""
    todo = [value]
    while todo:
        value = todo.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):
            todo += [*value.keys(), *value.values()]
        elif isinstance(value, list | tuple | set):
            todo += list(value)


def run_reads_job(rule: Any) -> tuple[bool, frozenset[str] | None]:
    """(whether a `run:` block may read its `threads`, the names of the `resources` it may read: None for any).
    The block gets both as arguments; it reads them by name (`resources.mem_mb`, nixlib.pycode.parameter_reads),
    in a `shell("sort -S {resources.mem_mb}M ...")` string, which shell() formats with the block's names, also a
    module-level one it reads (`CMD = "bwa mem -t {threads}"`), or through its frame (`locals()`, a helper's
    `sys._getframe(1)`): then all of them."""
    function = rule.run_func
    if function is None:
        return True, None
    strings: set[str] = set()
    names: set[str] = set()
    pycode.uses([function], strings=strings, attributes=names)
    pydata.data_values(function, lambda value: None, strings)  # (only the strings: nothing rendered)
    if not pycode.FRAME_READERS.isdisjoint(names) or pycode.unseen_templates(function, _formats_locals):
        return True, None  # (`shell(open("cmd.txt").read())`: a template no string of the code holds)
    threads = pycode.parameter_reads(function, "threads") != frozenset() or any(
        "threads" in s or THREAD_VARIABLES.search(s) for s in strings)
    own, named = pycode.parameter_reads(function, "resources"), codefiles.fields_read(strings, "resources")
    return threads, None if own is None or named is None else own | named


# The variables Snakemake's shell() sets to the job's threads for the command it runs (also a script's: a `script:`
# job runs by shell()): a command or code naming one reads the threads.
THREAD_VARIABLES = re.compile(r"(?:OMP|GOTO|OPENBLAS|MKL|NUMEXPR)_NUM_THREADS|VECLIB_MAXIMUM_THREADS")


def run_reads_cores(rule: Any) -> bool:
    """Whether a `run:` block may read the workflow's core count (`workflow.cores`, `-c`/`--cores`): by attribute, or
    in a shell() template (`"make -j{workflow.cores}"`). A `shell:` command formats it into its text, which is
    keyed; a script has no `workflow`."""
    function = rule.run_func
    if function is None:
        return False
    strings: set[str] = set()
    names: set[str] = set()
    pycode.uses([function], strings=strings, attributes=names)
    return "cores" in names or any("cores" in s for s in strings)


def _formats_locals(name: str, value: Any) -> bool:
    """Whether a name the code calls is Snakemake's shell() or format(), which format a template with the caller's
    names (a `run:` block's `resources` and `threads`)."""
    from snakemake import utils
    from snakemake.shell import shell

    return name == "shell" or value is shell or value is utils.format


# A Python script's call of shell() or format() (not a method's `.format(`), and a template that is string literals
# of its text (a script's shell() formats with its globals: `{snakemake.resources.mem_mb}`).
_FORMAT_CALL = re.compile(r"(?<![\w.])(?:shell|format)\s*\(|\b(?:snakemake\.shell|utils\.format)\s*\(")
_PY_LITERAL = r"""[rRuU]?(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')"""
_LITERAL_TEMPLATE = re.compile(rf"\s*(?:{_PY_LITERAL}\s*)+[,)]")


def unseen_template(text: str) -> bool:
    """Whether a Python script calls shell() or format() with a template that is not literal text of it
    (`shell(open("cmd.txt").read())`, `shell(cmd)`): which part of `snakemake` it reads is then unknown."""
    return any(not _LITERAL_TEMPLATE.match(text, m.end()) for m in _FORMAT_CALL.finditer(text))


def _snakemakes(value: Any) -> bool:
    """Whether a value is one of Snakemake's own objects a Snakefile's code uses (`rules`, `checkpoints`, a logger),
    which reach the config only through a name run_config_read looks for (`rules.x.rule.workflow.config`)."""
    return (type(value).__module__ or "").split(".")[0] in ("snakemake", "logging")


def _parts(config: Mapping[str, Any]) -> set[int]:
    """The ids of the config and of every dict and list inside it."""
    ids: set[int] = set()
    todo: list[Any] = [config]
    while todo:
        value = todo.pop()
        if isinstance(value, Mapping | list) and id(value) not in ids:
            ids.add(id(value))
            todo += list(value.values()) if isinstance(value, Mapping) else value
    return ids


def _binds(value: Any, parts: set[int]) -> bool:
    """Whether a module-level value the code uses is the config (or a part of it) under another name (`CFG =
    config`), or a function, partial or object holding it (`def lr(cfg=config)`, `partial(get, config)`, an
    instance whose attribute it is): code reading it reads the config without naming it."""
    if id(value) in parts:
        return True
    if isinstance(value, functools.partial):
        return any(_binds(v, parts) for v in (value.func, *value.args, *value.keywords.values()))
    try:
        function = getattr(value, "__func__", value)
        state = getattr(value, "__dict__", None)
    except Exception:  # noqa: BLE001 - a proxy raising for any attribute (Snakemake's `rules`, `checkpoints`)
        return False
    if isinstance(function, types.FunctionType):
        cells = []
        for cell in function.__closure__ or ():
            try:
                cells.append(cell.cell_contents)
            except ValueError:  # an empty cell
                continue
        bound = [*(function.__defaults__ or ()), *(function.__kwdefaults__ or {}).values(), *cells]
        return any(id(v) in parts for v in bound)
    if isinstance(state, dict) and not isinstance(value, type | types.ModuleType):
        return any(id(v) in parts for v in state.values())
    return False


def run_data_words(rule: Any) -> tuple[str, ...]:
    """codefiles.data_candidates of a `run:` block and the module-level code it uses (its shell() commands' words
    too), and of the module-level strings that code reads (`TABLE = "config/table.tsv"` opened as `open(TABLE)`,
    the usual Snakefile spelling: nixlib.pydata), but the config's (keyed by config_files, for the keys the code
    names)."""
    strings: set[str] = set()
    written: set[str] = set()
    read: set[str] = set()
    pycode.uses([rule.run_func], strings=strings, written=written)
    pydata.data_values(rule.run_func, lambda value: None, read)  # (only the strings: nothing rendered)
    config = rule.run_func.__globals__.get("config")
    if isinstance(config, Mapping):
        read.difference_update(codefiles.strings_in(config))
    return codefiles.data_candidates(sorted(strings | read), written)


def script_words(path: str) -> tuple[str, ...]:
    """The words of a script that may name a code file of the project it runs: in a Python script those of
    its string constants, in any other its path-like words (nixlib.codefiles.looks_like_code)."""
    with open(path, "rb") as f:
        data = f.read()
    texts: list[str] = []
    if path.endswith(".py"):
        try:
            tree = ast.parse(data)
        except (SyntaxError, ValueError):  # Snakemake will report it when it runs the script
            tree = None
        texts = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)] \
            if tree is not None else []
    else:
        texts = [data.decode("utf-8", "replace")]
    found = (w for text in texts for w in codefiles.words(text) if codefiles.looks_like_code(w))
    return tuple(dict.fromkeys(found))


# What a script's `snakemake` object offers (Python, Julia, Rust `snakemake.x`, R `snakemake@x`, bash `snakemake_x`
# and `${snakemake[x]}`; which part of the config it reads: config_keys_read), and the modules of Snakemake a script
# imports from.
_SNAKEMAKE_PARTS = ("input|output|params|wildcards|threads|resources|log|rule|scriptdir|bench_iteration|log_fmt_shell"
                    "|report_href|source|shell|utils|io|script|exceptions|logging|config")
_SNAKEMAKE_WORD = re.compile(r"(?<!\w)snakemake(?!\w(?<!_))")
_SNAKEMAKE_PART = re.compile(rf"(?:\s*[.@]\s*|_)(?:{_SNAKEMAKE_PARTS})(?!\w)|\[")
_SNAKEMAKE_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+snakemake(?:\.\w+)*[ \t]+import[ \t]+snakemake"
                               r"|import[ \t]+snakemake)[ \t]*(?:#.*)?$", re.MULTILINE)


# A script's read of one top-level config key by a constant name: Python's or Julia's `snakemake.config["k"]` and
# `snakemake.config.get("k"`, R's `snakemake@config[["k"]]`. Not R's `$k` (it matches a key by prefix) nor bash's
# `${snakemake_config[k]}`: those, like every other mention of `config`, key the whole config.
_QUOTED_KEY = r"""(?P<{0}>["'])(?P<{1}>[^"'\\\n]*)(?P={0})"""
_CONFIG_KEY = re.compile(
    r"(?<![\w.@])snakemake\s*\.\s*config\s*(?:\[\s*" + _QUOTED_KEY.format("q1", "k1") + r"\s*\]"
    r"|\.\s*get\s*\(\s*" + _QUOTED_KEY.format("q2", "k2") + r"\s*[,)])"
    r"|(?<![\w.@])snakemake\s*@\s*config\s*\[\[\s*" + _QUOTED_KEY.format("q3", "k3") + r"\s*\]\]")


def config_keys_read(texts: Iterable[str]) -> frozenset[str] | None:
    """The top-level config keys a script (with the local code it imports or names) reads, when each of its
    mentions of `config` is a read of one key by a constant name (`_CONFIG_KEY`); None when one is anything else
    (`cfg = snakemake.config`, `for k in snakemake.config`, a comment, R's `$`): then it may read all of it. So
    adding a sample to `samples:` re-runs no script that reads only `snakemake.config["threshold"]`."""
    keys: set[str] = set()
    for text in texts:
        found = list(_CONFIG_KEY.finditer(text))
        if len(found) != text.count("config"):  # (each match names `config` exactly once)
            return None
        keys.update(next(v for n, v in m.groupdict().items() if n.startswith("k") and v is not None) for m in found)
    return frozenset(keys)


def reads_config(text: str) -> bool:
    """Whether a script's code (with the local code it imports or sources) may read the workflow config: it names
    `config` anywhere (`snakemake.config[...]`, `snakemake@config`, `${snakemake_config[x]}`, a comment) or uses
    its `snakemake` object other than by one of its other parts (`helpers.run(snakemake)`, `vars(snakemake)`)."""
    return "config" in text or hands_on_snakemake(text)


def hands_on_snakemake(text: str) -> bool:
    """Whether a script uses its `snakemake` object other than by one of its parts (`helpers.run(snakemake)`,
    `vars(snakemake)`): whatever the object holds may be read."""
    text = _SNAKEMAKE_IMPORT.sub("", text)
    return any(not _SNAKEMAKE_PART.match(text, m.end()) for m in _SNAKEMAKE_WORD.finditer(text))


def gist(message: str) -> str:
    """The telling line of an error of Snakemake's source cache: git's `fatal: ...` rather than its exit code."""
    lines = [line.strip().strip("'") for line in message.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (fatal or lines or [""])[0]


def sha(data: bytes) -> str:
    return base32.encode(hashlib.sha256(data).digest())


def shell_name(executable: Any) -> str | None:
    """The name of the shell a `shell:` command runs with (`sh` for `/bin/sh`), None for bash, Snakemake's default
    (its path differs between machines; only the name says what runs: the env provides the shell itself)."""
    name = os.path.basename(str(executable)).lower() if executable else ""
    return None if name in ("", "bash") else name


def scratch_dir(job: Any) -> Callable[[Any], Any]:
    """A function replacing, in keyed text (the command, params), the job's scratch directory (`resources.tmpdir`:
    `$TMPDIR`, the system's temporary directory or `--default-resources tmpdir=...`, as in `sort -T
    {resources.tmpdir}`) by a placeholder: it differs between machines, sessions and cluster jobs, and what a job
    leaves there is no output. Applied after `Relocator`, so a working directory inside it keys as before."""
    tmpdir = job.resources.get("tmpdir")
    if not isinstance(tmpdir, str) or not os.path.isabs(tmpdir) or tmpdir.rstrip("/") == "":
        return lambda value: value
    found = re.compile(r"(?<![\w.-])" + re.escape(tmpdir.rstrip("/")) + r"(?![\w.-])")

    def sub(value: Any) -> Any:
        if isinstance(value, str):
            return found.sub("@{tmpdir}", value)
        if isinstance(value, list):
            return [sub(v) for v in value]
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        return value

    return sub


def is_flagged(f: Any, flag: str) -> bool:
    flags = getattr(f, "flags", None)
    return bool(flags) and flag in flags


def cacheable(job: Any) -> bool:
    """Jobs whose outputs are plain files and directories at rest; others run as with the local executor."""
    if job.is_norun or not job.output:
        return False
    if any(is_flagged(f, flag) for f in job.output for flag in UNCACHEABLE_FLAGS):
        return False
    if any(job.is_pipe_or_service_input(f) for f in job.input):
        return False
    if unretrieved_inputs(job):  # (its input's bytes are never here to key: the executor warns, once per rule)
        return False
    return switch(job.rule.name, "nix_cache", job.resources.get("nix_cache"), default=True)


def switch(rule: str, resource: str, value: Any, default: bool) -> bool:
    """A rule's on/off resource (`nix_cache`, `nix_resumable`), read as nixlib.config.switch_word reads every on/off
    setting, `default` when unset; any other word is refused (`nix_cache="maybe"` was taken as on)."""
    if value is None or value == "":
        return default
    found = switch_word(value)
    if found is None:
        raise NixWorkflowError(f"rule {rule}: resource {resource}={value!r} is not a switch: use 1 or 0 (also "
                               "true/false, yes/no, on/off)")
    return found


def unretrieved_inputs(job: Any) -> list[str]:
    """The job's storage inputs Snakemake does not retrieve (`storage.x(..., retrieve=False)`), by their query."""
    return [f.storage_object.print_query for f in job.input
            if getattr(f, "is_storage", False) and f.should_not_be_retrieved_from_storage]


class Relocator:
    """Replaces the absolute working and Snakefile directories with placeholders in keyed text.

    `cache`: Snakemake's runtime source cache of this process (a new temporary directory per run), where
    `workflow.source_path("../scripts/x.py")` returns a copy of a local file, at `<cache>/file/<its absolute
    path>`: such a path keys as the file's own path, so a job naming it keys the same in every run and clone."""

    def __init__(self, workdir: str, basedir: str, cache: str | None = None) -> None:
        self.workdir = os.path.abspath(workdir)
        self.cache = os.path.join(os.path.abspath(cache), "file") if cache else None
        base = os.path.abspath(basedir)
        pairs = {base: "@{basedir}", self.workdir: "@{workdir}"}  # one directory: workdir
        if os.path.isabs(basedir) and basedir.rstrip(os.sep) != base:
            # Snakemake keeps `..` and `.` of `-s ../wf/Snakefile` in `workflow.basedir`, which commands and
            # params format as such: it stands for the same directory as its normal form.
            pairs[basedir.rstrip(os.sep)] = pairs[base]
        # Longest first, so a Snakefile directory inside the working directory is matched as itself.
        self.pairs = sorted(((path, token) for path, token in pairs.items() if path != "/"),
                            key=lambda p: (-len(p[0]), p[1]))

    def text(self, value: str) -> str:
        if self.cache is not None and self.cache in value:
            value = value.replace(self.cache + os.sep, os.sep)
        for path, token in self.pairs:
            value = value.replace(path, token)
        return value

    def values(self, value: Any) -> Any:
        """`text` applied to every string of a `jsonable` value (params, config): an absolute path of the
        checkout a param or config value holds keys as it does in the command, so a clone keys the same."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.values(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k): self.values(v) for k, v in value.items()}
        return value

    def roots(self) -> list[str]:
        """The working directory and the Snakefile directory: where the project's own files are."""
        return [base for base, _ in self.pairs if base == os.path.normpath(base)]

    def sources(self) -> list[str]:
        """Where the runtime source cache holds copies of the project's files (the roots' mirrors in it): every
        file a job names there is a source file of the project, keyed by content (`RecipeBuilder.sourced`)."""
        return [self.cache + root for root in self.roots()] if self.cache is not None else []

    def path(self, path: str) -> str:
        """A file's logical name: the path as the Snakefile names it (relative paths stay relative, so
        `../tools/x` keys the same in every clone); an absolute path inside the working directory
        becomes relative, one under the Snakefile directory gets a placeholder."""
        if not os.path.isabs(path):
            return os.path.normpath(path)
        absolute = os.path.normpath(path)
        if absolute.startswith(self.workdir + os.sep):
            return os.path.relpath(absolute, self.workdir)
        return self.text(absolute)


class RecipeBuilder:
    """Builds the Recipe of a job; one per workflow run. What jobs of one rule share is computed once per
    process: the config digest, a `run:` block's digest, the shell prefix's, and a code file's digest (by path
    and stat signature, so a script edited while the run goes on is read again)."""

    def __init__(self, workflow: Any, memo: StatMemo, workdir: str | None = None) -> None:
        self.workflow = workflow
        self.memo = memo
        self.code_files = codefiles.CodeFiles(memo)
        cache = getattr(getattr(workflow, "sourcecache", None), "runtime_cache_path", None)
        cache = os.fspath(cache) if isinstance(cache, str | os.PathLike) else None
        self.where = Relocator(workdir or os.getcwd(), str(workflow.basedir), cache)
        self._configs: dict[tuple[int, Any], tuple[Any, str]] = {}  # (id(config), keys) -> (config, digest): the
        # object kept alive
        self._digests: dict[Any, Any] = {}
        self.last_shellcmd: tuple[Any, str | None] = (None, None)  # (job, its formatted shell command)
        self.last_code_files: tuple[Any, tuple[str, ...]] = (None, ())  # (job, the code files its command runs)

    def config_digest(self, rule: Any = None, keys: frozenset[str] | None = None) -> str:
        """Digest of the config the rule's code sees (of only its top-level `keys`, present or not, when given): a
        rule of a `module` (or `use rule ... from`) reads the module's own config (its `config:` dict), not the
        workflow's, so a module config edit must re-run it."""
        config = rule_config(rule) if rule is not None else None
        if config is None:
            config = self.workflow.config
        if (id(config), keys) not in self._configs:
            value = dict(config) if keys is None else [[k, config[k]] if k in config else [k] for k in sorted(keys)]
            self._configs[(id(config), keys)] = (config, digest(self.where.values(jsonable(value))))
        return self._configs[(id(config), keys)][1]

    def recipe(self, job: Any, env: ResolvedEnv, options: RunOptions,
               produced: Mapping[str, Path] | None = None) -> Recipe:
        """The job's recipe; `produced`: its `products`, when the caller has them already."""
        kind, command, code = self.code(job)
        scratch = scratch_dir(job)
        meta: dict[str, Any] = {
            "kind": kind,
            "params": scratch(self.where.values(jsonable(job.params))),
            "wildcards": jsonable(job.wildcards),
            "input": self.named_paths(job.input),
        }
        if code is not None:
            meta["code"] = code
        if kind == "shell" and THREAD_VARIABLES.search(command):  # (`echo $OMP_NUM_THREADS`: Snakemake sets it)
            meta["threads"] = job.threads
        if kind != "shell":
            read = self.config_read(job, kind, code)
            if read is None or read:
                meta["config"] = self.config_digest(job.rule, read)
            threads, read = self.job_values_read(job, kind, code)
            if threads:
                meta["threads"] = job.threads
            resources = internals.keyed_resources(job)
            if read is None or not read <= set(job.resources.keys()):  # (`resources.get`: a name no resource has)
                meta["resources"] = jsonable(resources)
            elif not read.isdisjoint(resources):
                meta["resources"] = jsonable({k: v for k, v in resources.items() if k in read})
        if kind == "run" and self.once(("run-cores", job.rule), lambda: run_reads_cores(job.rule)):
            meta["cores"] = getattr(self.workflow, "cores", None)  # (`shell("make -j{workflow.cores}")`: -c's value)
        repeats = getattr(job, "benchmark_repeats", None) if job.benchmark else None
        if isinstance(repeats, int) and repeats != 1:  # `repeat("bench/{s}.tsv", 3)`: one row per run in the file
            meta["benchmark_repeats"] = repeats
        software = self.software(job)
        if software:
            meta["software"] = software
        variables = self.declared_variables(job, kind)
        if variables:
            meta["envvars"] = variables
        variables = self.host_variables(job, kind, options, code)
        if variables:
            meta["variables"] = variables
        return Recipe(
            name=job.rule.name,
            command=scratch(self.where.text(command)),
            env=env.identity,
            env_paths=env.paths,
            outputs=tuple(products(job, self.where) if produced is None else produced),
            files={**dict(self.input_hashes(job)), **self.param_files(job), **self.config_files(job, kind),
                   **self.command_files(job, kind), **self.code_data(job, kind)},
            extra={"snakemake": meta},
            # Snakemake defines what a job must produce: an empty file (touch(), an empty log) is a valid
            # output there, and a missing one is its own MissingOutputException; only exit status counts.
            options=replace(options, allow_empty=True),
        )

    def declared_variables(self, job: Any, kind: str) -> dict[str, str]:
        """{name: digest of its value} of the Snakefile's `envvars:` the job's code names (`$REF_VERSION` in its
        command, `os.environ["REF_VERSION"]` in its script or `run:` block; every one for a wrapper, whose code
        is not read here): what they hold changes what the job computes, and Snakemake passes them to it. A
        digest, never the value (`envvars:` often carry credentials); a variable no code of the job names (a
        storage plugin's token) is left out, so rotating it re-runs nothing."""
        names = sorted(getattr(self.workflow, "envvars", None) or ())
        if not names:
            return {}
        text = self.code_text(job, kind)
        return {n: sha(f"{n}={os.environ.get(n, '')}".encode()) for n in names if text is None or n in text}

    def host_variables(self, job: Any, kind: str, options: RunOptions, code: str | None = None) -> dict[str, str]:
        """{name: digest of its value, or "unset"} of the host variables the job's shell commands expand (`$SCALE`,
        `${GENOME_BUILD:-hg19}` in a `shell:` command or in a `run:` block's `shell()` string; nixlib.hostenv, as nw
        run and Luigi key them): Snakemake hands its environment to the job, so `SCALE=3 snakemake` computes
        something else than `SCALE=2 snakemake`. Not the Snakefile's `envvars:` (declared_variables), nor what
        Snakemake sets for each job (its threads' variables, TMPDIR), nor where or as whom it runs (HOME, PATH, …),
        nor any of a pure job's (it sees none of them).

        So are those its code reads by name (nixlib.envreads): a `run:` block's Python (`os.environ["SCALE"]`,
        `os.getenv("SCALE")`, in the block or a helper it uses: `run_variables`), a local script's (Python, R's
        `Sys.getenv("SCALE")`, a bash script's `$SCALE`) with the local code it imports or names, and the project
        scripts a shell command runs (`python3 scripts/prep.py` reading `os.environ["SCALE"]`)."""
        if options.pure:
            return {}
        names: set[str] = set()
        rule = job.rule
        if kind == "shell":
            known, text = self.last_shellcmd
            text = text if known is job else job.shellcmd
            known, files = self.last_code_files
            files = files if known is job else self.shell_code_files(job, text or "")
            names.update(self.chain_variables(files, text or ""))
        elif kind == "run" and rule.run_func is not None:
            # (`$SCALE` in any string of the block: an f-string's piece `" $SCALE"` is no command of its own)
            text = "\n".join(s for s in self.once(("run-strings", rule), lambda: run_strings(rule)) if "$" in s)
            names.update(self.once(("run-variables", rule), lambda: run_variables(rule)))
            commands = self.run_shell_commands(job)
            for command in commands:
                files = {*self.shell_code_files(job, command), *self.declared_scripts(job, command)}
                names.update(self.chain_variables(files, command))
            names.update(self.chain_variables(self.input_scripts(job), "\n".join(commands)))
        elif kind in ("script", "notebook"):
            text = None
            local = local_script(job, getattr(rule, kind))
            if local is not None and code is not None:
                names.update(self.once(("script-variables", local, code),
                                       lambda: self.files_variables(self.script_files(job, local))))
                # (and those of the scripts it runs, named or among its inputs, with what they run and import:
                # `subprocess.run(["bash", "tools/prep.sh"])` running inner.py, whose module reads $SCALE)
                runs = [*self.once(("script-runs", local, code), lambda: self.script_files(job, local)[1:]),
                        *self.input_scripts(job)]
                names.update(self.script_chain_variables(runs))
        else:
            return {}
        if text and ("$" in text or "((" in text):
            names.update(expanded_variables(text))
        declared = set(getattr(self.workflow, "envvars", None) or ())
        return {n: h for n, h in hostenv.named(names, options).items() if n not in declared and n not in SNAKEMAKE_VARS}

    def chain_variables(self, files: Iterable[str], command: str) -> frozenset[str]:
        """The variables the code files a shell command runs read by name, with those of the scripts they run and of
        the project modules their Python imports (nixlib.envreads.scripts_variables: `python3 scripts/prep.py`
        importing helpers.py, which reads FACTOR), but Snakemake's own."""
        if not files:
            return frozenset()
        imports = tuple(pyimports.import_dirs(command, self.where.roots(), cwd=self.where.workdir))
        return frozenset(n for n in envreads.scripts_variables(self.code_files, files, imports)
                         if not n.startswith("snakemake"))

    def script_chain_variables(self, files: Iterable[str]) -> frozenset[str]:
        """chain_variables for the code files a local script runs (by Snakemake's Python, or a `python3` whose
        imports the project's editable install or PYTHONPATH may extend): what each reads, with the scripts it runs
        and the project modules it imports, memoised per file by nixlib.envreads."""
        files = list(dict.fromkeys(files))
        if not files:
            return frozenset()
        imports = tuple(pyimports.import_dirs("python", self.where.roots(), pythons=(sys.executable,)))
        return frozenset(n for n in envreads.scripts_variables(self.code_files, files, imports)
                         if not n.startswith("snakemake"))

    @staticmethod
    def files_variables(files: Iterable[str]) -> frozenset[str]:
        """The variables code files read by name (nixlib.envreads, memoised by each file's stat signature), but
        Snakemake's own (a bash script's `${snakemake_input[0]}`)."""
        return frozenset(n for n in envreads.files_variables(files) if not n.startswith("snakemake"))

    def code_text(self, job: Any, kind: str) -> str | None:
        """The text of the job's own code (None where it cannot be read here: a wrapper, a remote script)."""
        rule = job.rule
        if kind == "shell":
            return job.shellcmd or ""
        if kind == "run":
            return rule.run_func_src or ""
        path = getattr(rule, kind, None) if kind in ("script", "notebook", "cwl") else None
        if path is None:
            return None
        local = local_script(job, path)
        if local is None:
            return None
        return self.once(("text", local, os.stat(local).st_mtime_ns), lambda: Path(local).read_text(errors="replace"))

    def named_paths(self, files: Any) -> list[list[Any]]:
        """[name, path or [paths]] in order: scripts see `snakemake.input` by name and position."""
        out: list[list[Any]] = []
        for name, f in files._allitems():
            value = [self.where.path(str(x)) for x in f] if isinstance(f, list) else self.where.path(str(f))
            out.append([name, value])
        return out

    def param_files(self, job: Any) -> dict[str, str]:
        """{"param:<name>:<path>": content hash} of the files of the project the job's params name (`params:
        ref="data/ref.fa"`, a list of paths, or a word of a param's string: `extra="-a file:config/adapters.fa
        --min 3"`; nixlib.codefiles) without declaring them as inputs: editing one re-runs the job. Only files
        inside the working or Snakefile directory, none of the job's inputs, outputs, logs or benchmark, and none
        a rule produces (on disk or not depending on when the key is computed)."""
        out: dict[str, str] = {}
        declared = declared_paths(job)
        for name, value in job.params._allitems():
            found = self.code_files.files_named(param_texts(value), declared,
                                                [*self.where.roots(), *self.where.sources()])
            out.update((f"param:{name}:{self.where.path(t)}", h) for t, h in found.items()
                       if not self.produced_by_a_rule(job, t))
        return out

    def command_files(self, job: Any, kind: str) -> dict[str, str]:
        """{"command:<path>": content hash} of the data files of the project a shell command names without
        declaring them (`cutadapt -a file:config/adapters.fa {input}`, `--ref=data/ref.fa`, or a config value
        formatted into it, `{config[ref]}`): among its path-like words (nixlib.codefiles.data_words), each existing
        regular file (a symlink by the data it points to) inside the working or Snakefile directory that is none
        of the job's declared files, no file a param names (keyed as the param's), not under `.snakemake/`, not a
        code file the command runs (keyed with the code: `named_code`) and none a rule produces (on disk or not
        depending on when the key is computed). Only what is stat'ed is a candidate word; hashes are memoised by
        stat signature, so a large reference is read once."""
        if kind != "shell":
            return {}
        known, command = self.last_shellcmd
        command = command if known is job else job.shellcmd
        words = [w for w in codefiles.data_words(command or "")
                 if os.path.splitext(w)[1].lower() not in codefiles.CODE_SUFFIXES]
        cds = self.shell_dirs(command or "")[1:]  # (`cd sub && tool in.txt`: sub/in.txt)
        words += [os.path.join(d, w) for d in cds for w in words if not os.path.isabs(w)]
        words += self.chain_words(job, command or "")
        if not words:
            return {}
        return {f"command:{self.where.path(t)}": h for t, h in self.undeclared_data(job)(words).items()
                if not self.produced_by_a_rule(job, t)}

    def chain_words(self, job: Any, command: str, scripts: Iterable[str] = ()) -> list[str]:
        """The absolute paths that may name a data file of the project a shell command reads through the project
        scripts it runs (nixlib.codefiles.CodeFiles.chain_reads, as nw run and Luigi key them): what `python
        scripts/prep.py` reads, and the scripts it runs in turn (`bash scripts/run.sh` running prep.py, a Makefile's
        recipes), and the configs of the Hydra config directories the command (`--config-path conf`) or its Python
        scripts (`config_path="conf"`) name; no code file (keyed as code). `scripts`: more scripts it runs (a `run:`
        block's or a script's input_scripts)."""
        scripts = sorted({*self.shell_code_files(job, command), *self.declared_scripts(job, command), *scripts})
        named = configfiles.command_dirs(command)
        if not scripts and not named:
            return []
        cds = self.shell_dirs(command)
        configs = [os.path.normpath(os.path.join(b, d)) for d in named
                   for b in ([""] if os.path.isabs(d) else [*cds, *map(os.path.dirname, scripts)])]
        # (a module found through PYTHONPATH= or an editable install)
        imports = tuple(pyimports.import_dirs(command, self.where.roots(), cwd=self.where.workdir))
        found = self.code_files.chain_reads(scripts, cds, configs, self.where.roots(), imports=imports)
        return [w for w in found if os.path.splitext(w)[1].lower() not in codefiles.CODE_SUFFIXES]

    def code_data(self, job: Any, kind: str) -> dict[str, str]:
        """{"reads:<path>": content hash} of the data files of the project a `run:` block (or the code it uses) or a
        local `script:` names by a literal path without declaring them (`shell("cutadapt -a file:config/adapters.fa
        ...")`, `open("config/x.tsv")`; a script's `pd.read_csv("config/thresholds.tsv")`): among the candidate
        words of that code (codefiles.data_candidates: pure, once per rule or script content), each existing
        regular file (a symlink by its data) inside the working or Snakefile directory (a script's relative word
        also beside the script: `@{scriptdir}/table.tsv`), none of the job's declared files or files its params
        name, not under `.snakemake/`, no program, and none a rule produces (on disk or not depending on when the
        key is computed). Hashes are memoised by stat signature."""
        if kind == "run" and job.rule.run_func is not None:
            words = self.once(("run-data", job.rule), lambda: run_data_words(job.rule))
            # (what the scripts its shell() commands run read: `shell("python3 scripts/prep.py ...")` opening a table)
            commands = self.run_shell_commands(job)
            chained = [w for c in commands for w in self.chain_words(job, c)]
            chained += self.chain_words(job, "\n".join(commands), self.input_scripts(job))
            words = (*words, *(w for w in dict.fromkeys(chained) if w not in words)) if chained else words
            here = None
        elif kind in ("script", "notebook"):
            local = local_script(job, getattr(job.rule, kind))
            if local is None:
                return {}
            st = os.stat(local)
            words = self.once(("script-data", local, st.st_size, st.st_mtime_ns, st.st_ino),
                              lambda: codefiles.script_data_words(local))
            here = os.path.dirname(os.path.abspath(local))
        else:
            return {}
        if not words and here is None:
            return {}
        walk = self.undeclared_data(job)
        found = {self.where.path(t): (t, h) for t, h in walk(words).items()} if words else {}
        if here is not None:  # (a word that names a file where the job runs is that file's, not one beside the script)
            named = {os.path.abspath(w) for w in words}
            beside = [os.path.relpath(p) for w in words if not os.path.isabs(w)
                      for p in (os.path.join(here, w),) if os.path.abspath(p) not in named]
            for t, h in walk(beside).items():
                found.setdefault("@{scriptdir}/" + os.path.relpath(t, here), (t, h))
            # what the scripts it runs read (`subprocess.run(["bash", "scripts/run.sh"])` running prep.py, a
            # Makefile's recipes) and the configs of its Hydra config directories (`config_path="conf"`)
            known = {os.path.abspath(t) for t, _ in found.values()}
            for t, h in walk(self.script_chain_words(job, local)).items():
                if os.path.abspath(t) not in known:
                    found.setdefault(self.where.path(t), (t, h))
        # (A file two words spell differently is asked about by the last spelling: produced_by_a_rule matches text.)
        return {f"reads:{name}": h for name, (t, h) in sorted(found.items()) if not self.produced_by_a_rule(job, t)}

    def script_chain_words(self, job: Any, local: str) -> list[str]:
        """chain_words for a local script or notebook: the absolute paths that may name a data file the project
        scripts it runs read (those it names, the makefiles it runs make with) or its configs (a Hydra config
        directory it or they name), nixlib.codefiles.CodeFiles.chain_reads; no code file (keyed as code)."""
        roots = self.where.roots()
        words = script_words(local) + tuple(makefiles.of_script(local, [self.where.workdir]))
        declared = declared_paths(job) | {os.path.abspath(local)}
        imports = tuple(pyimports.import_dirs("", roots, pythons=(sys.executable,)))  # (run by Snakemake's Python)
        # (with the scripts among its inputs and params it may run: `subprocess.run([sys.executable, input.tool])`)
        scripts = [os.path.abspath(local), *sorted({*self.code_files.named(words, roots, declared),
                                                    *self.input_scripts(job)})]
        found = self.code_files.chain_reads(scripts, [self.where.workdir], (), roots, imports=imports)
        return [w for w in found if os.path.splitext(w)[1].lower() not in codefiles.CODE_SUFFIXES]

    def undeclared_data(self, job: Any) -> Callable[[Iterable[str]], dict[str, str]]:
        """The walk from a job's words to the data files of the project they name without declaring them
        (nixlib.codefiles.CodeFiles.project_data, {word: content hash}) inside the working or Snakefile directory,
        with what command_files and code_data both leave out, built once here: the job's declared files, the files
        its params name (keyed as the param's) and `.snakemake/` (Snakemake's own). Each caller then leaves out
        the files a rule produces (on disk or not depending on when the key is computed), by the spelling it
        names a file by (Snakemake matches output patterns against the text)."""
        skip = declared_paths(job)
        skip.update(os.path.abspath(t) for _, value in job.params._allitems() for t in param_texts(value))
        # (`.snakemake/` is Snakemake's own; a file inside a declared directory is keyed as that directory already)
        outside = (os.path.join(self.where.workdir, ".snakemake") + os.sep, *(p + os.sep for p in sorted(skip)))
        roots = self.where.roots()

        def walk(words: Iterable[str]) -> dict[str, str]:
            # (with the configs a YAML config among them includes, at any depth: `defaults: [base, {optim: adam}]`)
            found = self.code_files.project_data(words, roots, skip, outside)
            return self.code_files.with_includes(found, roots, skip, outside) if found else found
        return walk

    def config_files(self, job: Any, kind: str) -> dict[str, str]:
        """{"config:<path>": content hash} of the files of the project the config names (`thresholds: {table:
        config/thresholds.tsv}`, a sample sheet, a reference) for a job whose code can read the config (script,
        notebook, wrapper, `run:`): such code opens them by their path in the config, so, as for a param naming
        one, editing the file re-runs the job. Only the files under a key (or a key above it) its code names,
        in a script's text, in a `run:` block or the code it uses (every one for a wrapper, whose code is not
        read here): adding a row to a sample sheet re-runs no job whose code never names `samples`. As for
        params: files inside the working or Snakefile directory, none of the job's inputs, outputs or logs,
        none a rule produces."""
        if kind == "shell":
            return {}
        config = rule_config(job.rule)
        config = self.workflow.config if config is None else config
        named = self.once(("config-paths", id(config)), lambda: (config, config_paths(config, self.where.roots())))[1]
        if not named:
            return {}
        text = self.code_strings(job, kind)
        wanted = [path for keys, path in named if text is None or any(k in text for k in keys)]
        found = self.code_files.files_named(wanted, declared_paths(job), self.where.roots())
        return {f"config:{self.where.path(t)}": h for t, h in found.items() if not self.produced_by_a_rule(job, t)}

    def code_strings(self, job: Any, kind: str) -> str | None:
        """The text in which a job's code names the config keys it reads: a script's text, a `run:` block's
        source with the string constants of the code it uses (a helper's `config["ref"]`); None for a wrapper."""
        text = self.code_text(job, kind)
        if kind == "run" and job.rule.run_func is not None:
            text = "\n".join([text or "", *self.once(("run-strings", job.rule), lambda: run_strings(job.rule))])
        return text

    def produced_by_a_rule(self, job: Any, path: str) -> bool:
        """True if some rule's output pattern matches `path` (Snakemake's own index of producers)."""
        try:
            return bool(job.dag.output_index.match_producers(path))
        except Exception:  # noqa: BLE001 - an internal Snakemake changed: key the file (the safe side)
            return False

    def input_hashes(self, job: Any) -> Iterator[tuple[str, str]]:
        """Content hash of every input. A symlinked input is hashed by what it points to (its content is
        what the job reads; the link's own text would not change when the data behind it does)."""
        for f in dict.fromkeys(str(f) for f in job.input):
            yield self.where.path(f), self.memo.hash(os.path.realpath(f))

    def code(self, job: Any) -> tuple[str, str, str | None]:
        """(kind, command text, code digest) of the job."""
        rule = job.rule
        if rule.shellcmd is not None:
            cmd = job.shellcmd
            self.last_shellcmd = (job, cmd)  # Snakemake's metadata record of a restored job reuses it
            try:
                cmd = normalise(cmd)
            except CommandSyntaxError:
                cmd = cmd.strip()  # the shell will report it; the key still follows the text
            prefix = self.shell_of(job)
            named = self.named_code(job, job.shellcmd or "")
            return "shell", cmd, digest([prefix, named]) if named else prefix
        for kind in ("script", "notebook", "cwl"):
            path = getattr(rule, kind)
            if path is not None:
                return kind, f"{kind}: {path}", self.source_digest(job, path)
        if rule.wrapper is not None:
            name = job.format_wildcards(rule.wrapper)
            return "wrapper", f"wrapper: {name}", self.wrapper_digest(job, name)
        if rule.template_engine is not None:
            return "template", f"template_engine: {rule.template_engine}", None
        code, words, imports, modules = self.once(("run", rule.run_func_src, rule.run_func),
                                                  lambda: run_digest(rule, self.where.values))
        # (its shell() commands' Pythons, and Snakemake's own: the project's package installed in development mode)
        where = tuple(pyimports.import_dirs("python", self.where.roots(), pythons=(sys.executable,))) \
            if words or modules else ()
        words += tuple(p for d in dict.fromkeys([self.where.workdir, *where])
                       for p in codefiles.module_paths(modules, d))
        named = self.code_files.named(words, self.where.roots(), declared_paths(job), imports=where) if words else {}
        for command in self.once(("run-commands", rule), lambda: run_commands(rule)):
            named.update(self.shell_code_files(job, command))  # (`shell("make -C sub")`, `cd tools && python3 x.py`)
            named.update(self.formatted_code_files(job, command, named))
        # (`shell(f"python3 {input.script} ...")`, a `.format()`ed command: any script among its inputs or params)
        named.update((p, h) for p, h in self.input_scripts(job).items() if p not in named and h != self.plain_digest(p))
        named.update(self.sourced(list(words), declared_paths(job)))
        named.update(self.imported_modules(rule, imports))
        if named:
            code = digest([code, {self.where.path(p): h for p, h in sorted(named.items())}])
        shell_code = self.shell_of(job)  # the block's `shell()` calls run with the Snakefile's prefix and shell
        return "run", "run:", digest([code, shell_code]) if shell_code else code

    def shell_of(self, job: Any) -> str | None:
        """`shell_digest` of the shell a job's `shell:` command or a `run:` block's `shell()` calls run with."""
        from snakemake.shell import shell

        prefix, name = shell._process_prefix, shell_name(job.resources.get("shell_exec") or shell.get_executable())
        if prefix is None:  # Snakemake's default: its strict mode under bash (the key it always had), none elsewhere
            prefix = ""
        elif prefix == "" and name is None:  # `shell.prefix("")` switches bash's strict mode off: not the default
            name = "bash without set -euo pipefail"
        return self.shell_digest(prefix, shell._process_suffix, name)

    def imported_modules(self, rule: Any, names: frozenset[str]) -> dict[str, str]:
        """{absolute path: content hash} of the local modules (files or packages, followed through what they
        import) named `names` next to the rule's Snakefile, the main Snakefile or in the working directory, all
        of which are on the import path of a `run:` block: `import helpers` inside the block runs helpers.py."""
        if not names:
            return {}
        where = [os.path.dirname(os.path.abspath(str(rule.snakefile))), *self.where.roots()]
        out: dict[str, str] = {}
        for directory in dict.fromkeys(where):
            found = codefiles.local_modules(set(names), directory, self.code_files.python_file)
            out.update((os.path.join(directory, rel), h) for rel, h in found.items())
        return out

    def named_code(self, job: Any, command: str) -> dict[str, str]:
        """{logical path: digest} of the project's code files a shell command names without declaring them
        (`python scripts/clean.py {input}`, `./bin/tool`; nixlib.codefiles): editing one changes what the job
        computes, as editing the command does. So is a project module it runs with `python -m pkg.tool` (found
        in the working directory, first on such a Python's import path): every .py file of its package. The
        project's own package installed in development mode in the command's Python (an editable install's .pth or
        finder; PYTHONPATH=: nixlib.pyimports) is looked for there too, for `-m` and for what its scripts import."""
        found = self.shell_code_files(job, command)
        declared = self.declared_scripts(job, command)
        self.last_code_files = (job, (*found, *declared))  # (the variables they read: host_variables)
        found.update(self.sourced(codefiles.words(command), declared_paths(job)))
        # (a script declared as an input is keyed by its content there; what it imports or runs beside it is not)
        found.update((p, h) for p, h in declared.items() if h != self.plain_digest(p))
        return {self.where.path(path): h for path, h in sorted(found.items())}

    def formatted_code_files(self, job: Any, command: str, known: Mapping[str, str]) -> dict[str, str]:
        """{absolute path: digest} of the code files a `run:` block's `shell()` command runs through its job's
        values (`shell("python3 {input.script} ...")`, `{params.script}`), which its template does not name: a
        script among its inputs or a file a param names is keyed by its content there, so it counts here only for
        what its digest holds beyond (the local modules it imports, the scripts it runs beside it); any other
        (`{config[tool]}`) by its digest. Nothing when the template cannot be formatted with the job's values."""
        formatted = run_command(job, command)
        if formatted is None or formatted == command:
            return {}
        keyed = {os.path.abspath(str(f)) for f in job.input}
        keyed.update(os.path.abspath(t) for _, value in job.params._allitems() for t in param_texts(value))
        found = {**self.shell_code_files(job, formatted), **self.declared_scripts(job, formatted)}
        return {p: h for p, h in found.items()
                if p not in known and (p not in keyed or h != self.plain_digest(p))}

    def run_shell_commands(self, job: Any) -> list[str]:
        """The commands a `run:` block's `shell()` calls may run (run_commands), each also as formatted with the job's
        values where its template names them (`shell("python3 {input.script} {output}")`: run_command), so the
        scripts they run are found by their paths."""
        out: list[str] = []
        for command in self.once(("run-commands", job.rule), lambda: run_commands(job.rule)):
            formatted = run_command(job, command)
            out += [command] if formatted is None or formatted == command else [command, formatted]
        return list(dict.fromkeys(out))

    def input_scripts(self, job: Any) -> dict[str, str]:
        """{absolute path: digest (CodeFiles.digest)} of the code files among a `run:` block's or a local script's
        job's inputs and the files its params name (`input: script="tools/a.py"`): the block may run any of them
        through a command it builds with an f-string or `.format()` (`shell(f"python3 {input.script} {output}")`),
        which no template of its code names, and a script through subprocess (`subprocess.run([sys.executable,
        snakemake.input.tool])`, R's `system2("python3", snakemake@input[["tool"]])`), so each is taken as run (the
        safe side) and keyed with what it imports, runs, and reads (data files by a literal path, environment
        variables), as a script a template or a script's text names is."""
        candidates = [str(f) for f in job.input]
        candidates += [t for _, value in job.params._allitems() for t in param_texts(value)]
        # (a code suffix, or none: a program; a data file, `.csv`, `.bam`, is not opened to find out)
        candidates = [os.path.abspath(c) for c in candidates
                      if os.path.splitext(c)[1].lower() in codefiles.CODE_SUFFIXES or not os.path.splitext(c)[1]]
        if not candidates:
            return {}
        roots = self.where.roots()
        imports = tuple(pyimports.import_dirs("python", roots, pythons=(sys.executable,)))
        return self.code_files.named(candidates, roots, declared_paths(job) - set(candidates), imports=imports)

    def plain_digest(self, path: str) -> str:
        """What CodeFiles.digest gives a code file that imports, sources and runs nothing beside it: its content's."""
        if path.endswith(".py"):
            return self.code_files.python_file(path)[0]
        return self.memo.hash(os.path.realpath(path))

    def declared_scripts(self, job: Any, command: str) -> dict[str, str]:
        """{absolute path: digest (CodeFiles.digest)} of the code files among the job's inputs a shell command runs
        (`input: script="scripts/run.py"` with `python3 {input.script}`): their content is keyed as an input's, but
        the local modules they import, the scripts they run beside them, the data they read by a literal path and
        the variables they read are theirs as they are any undeclared script's (shell_code_files)."""
        inputs = {os.path.abspath(str(f)) for f in job.input}
        if not inputs:
            return {}
        roots = self.where.roots()
        imports = tuple(pyimports.import_dirs(command, roots, cwd=self.where.workdir))
        found = self.code_files.named(codefiles.words(command), roots, declared_paths(job) - inputs, imports=imports)
        return {p: h for p, h in found.items() if p in inputs}

    def shell_code_files(self, job: Any, command: str) -> dict[str, str]:
        """{absolute path: digest} of the project's code files a shell command runs (named_code, the copies in the
        source cache aside): the scripts it names, the modules it runs with `-m`, the makefiles its `make` reads
        (`make -C sub`, `cd sub && make`: nixlib.makefiles, with the scripts their recipes run) and the project modules
        a `python -c 'import helpers; ...'` imports (codefiles.inline_modules), from the working directory, one it
        changes into, PYTHONPATH or an editable install (nixlib.pyimports)."""
        words = codefiles.words(command)
        modules = codefiles.command_modules(command)
        roots = self.where.roots()
        imports = tuple(pyimports.import_dirs(command, roots, cwd=self.where.workdir))
        for directory in dict.fromkeys([*imports, self.where.workdir]) if modules else ():  # (a MappedDir first)
            words += codefiles.module_paths(modules, directory)
        cds = self.shell_dirs(command)
        words += [*makefiles.of_command(command, cds), *codefiles.inline_modules(command, [*cds, *imports])]
        declared = declared_paths(job)
        found = self.code_files.named(words, roots, declared, imports=imports)
        relative = [w for w in codefiles.words(command) if not os.path.isabs(w)] if len(cds) > 1 else []
        for d in cds[1:] if relative else ():  # (`cd tools && python3 prep.py`: prep.py is tools/prep.py)
            found.update(self.code_files.named(relative, roots, declared | set(found), cwd=d, imports=imports))
        return found

    def shell_dirs(self, command: str) -> list[str]:
        """The directories a shell command's programs run in: the working directory, and those it changes into
        inside the project (`cd sub && make`, relative to the working directory where the command starts;
        codefiles.changed_directories)."""
        roots = self.where.roots()
        if "cd" in command or "pushd" in command:  # (the job's shell starts in the working directory)
            command = f"cd {shlex.quote(self.where.workdir)} && {command}"
        return list(dict.fromkeys([self.where.workdir, *codefiles.changed_directories(command, roots)]))

    def sourced(self, texts: list[str], declared: set[str]) -> dict[str, str]:
        """{path: content hash} of the files among `texts` that are copies in Snakemake's runtime source cache
        (`workflow.source_path(...)` in a param, the command or a `run:` block): each keys as its original's
        path (Relocator), so its content must be keyed, code or data alike (it is the project's source)."""
        sources = self.where.sources()
        if not sources or not any(self.where.cache in t for t in texts):
            return {}
        return self.code_files.files_named([t for t in texts if self.where.cache in t], declared, sources)

    def once(self, key: Any, compute: Any) -> Any:
        """`compute()`, once per key for this process (several storing threads may compute it at once)."""
        if key not in self._digests:
            self._digests[key] = compute()
        return self._digests[key]

    def shell_digest(self, prefix: str, suffix: str | None, executable: str | None = None) -> str | None:
        """Digest of the shell prefix and suffix (`shell.prefix()` in the Snakefile) and of the shell that runs
        the command when it is not bash, Snakemake's default (`shell.executable("sh")`, a `shell_exec`
        resource: `echo -e`, `$BASH_VERSION` and the strict mode differ), None without any of them."""
        parts = [prefix, suffix] + ([executable] if executable else [])
        return self.once(("shell", prefix, suffix, executable),
                         lambda: digest(parts) if prefix or suffix or executable else None)

    def source_digest(self, job: Any, path: str) -> str:
        """The code file's content; for a local Python script, also every local module it imports; for a local
        script, also the project's code files it names (`subprocess.run(["bash", "scripts/inner.sh"])`,
        `source("scripts/utils.R")`), by content, as for a shell command."""
        local = local_script(job, path)
        if local is None or not local.endswith((".py", ".ipynb")):
            with self.workflow.sourcecache.open(job._path_to_source_file(path), "rb") as f:
                base = sha(f.read())
            if local is None:
                return base
        else:  # (run by Snakemake's own interpreter: the project's package installed in development mode in it)
            # (a notebook: by its code cells and the modules they import beside it, nixlib.notebooks; the outputs
            # and markdown change nothing it computes)
            imports = tuple(pyimports.import_dirs("", self.where.roots(), pythons=(sys.executable,)))
            base = self.code_files.digest(local, imports=imports)
            extra = self.path_modules(local, base) if local.endswith(".py") else {}
            base = digest([base, extra]) if extra else base
        words = self.once(("script-words", local, base), lambda: script_words(local))
        declared = declared_paths(job) | {os.path.abspath(local)}
        workdir = [self.where.workdir]
        words += tuple(self.once(("script-make", local, base), lambda: makefiles.of_script(local, workdir)))
        imports = tuple(pyimports.import_dirs("python", self.where.roots(), pythons=(sys.executable,)))
        named = {self.where.path(p): h
                 for p, h in self.code_files.named(words, self.where.roots(), declared, imports=imports).items()}
        named.update(self.beside_script(local, base, words, declared))
        # (an input or param script it may run, `subprocess.run([sys.executable, snakemake.input.tool])`: its content
        # is keyed as an input's; what it imports or runs beside it is keyed here)
        named.update((self.where.path(p), h) for p, h in self.input_scripts(job).items()
                     if p != os.path.abspath(local) and h != self.plain_digest(p))
        return digest([base, dict(sorted(named.items()))]) if named else base

    def job_values_read(self, job: Any, kind: str, code: str | None) -> tuple[bool, frozenset[str] | None]:
        """(whether the job's code may read its threads, the names of the resources it may read: None for any)
        for a `run:` block (`run_reads_job`), a local script or notebook (`script_reads`); a wrapper, template or
        remote script may read both. So a resource its code never reads (`mem_mb=lambda wc, attempt: 1000 *
        attempt` under `--retries`, a `--set-resources` change) does not re-run it, as for a `shell:` command."""
        if kind == "run":
            return self.once(("run-reads", job.rule), lambda: run_reads_job(job.rule))
        path = getattr(job.rule, kind, None) if kind in ("script", "notebook") else None
        local = local_script(job, path) if path is not None else None
        if local is None or code is None:
            return True, None
        return self.once(("script-reads", local, code), lambda: self.script_reads(job, local))[1:]

    def config_read(self, job: Any, kind: str, code: str | None) -> frozenset[str] | None:
        """The top-level config keys the job's code can read (None: any of them, an empty set: none). A wrapper or a
        template may read any; a `run:` block none unless it or the code it uses names the config, and only the
        keys it reads by constant name when it reads it no other way (`run_config_read`); a local script or
        notebook none unless it, or the local code it imports (modules beside it or in the directories it puts on
        `sys.path`) or names (`source("scripts/utils.R")`), names the config or hands on its `snakemake` object
        whole (`reads_config`), and only the keys it reads by constant name when it reads it no other way
        (`config_keys_read`). So changing a config value another rule reads (a model's learning rate, the list of
        samples) re-runs, as with plain Snakemake, no plotting script or `run:` block that never reads it."""
        if kind == "run":
            return self.once(("run-config", job.rule), lambda: run_config_read(job.rule))
        if kind not in ("script", "notebook"):
            return None
        path = getattr(job.rule, kind, None)
        local = local_script(job, path) if path is not None else None
        if local is None or code is None:
            return None
        return self.once(("script-reads", local, code), lambda: self.script_reads(job, local))[0]

    def script_reads(self, job: Any, local: str) -> tuple[frozenset[str] | None, bool, frozenset[str] | None]:
        """(the config keys it may read (`config_read`), whether it may read `snakemake.threads`, the resources it
        may read (None: any; see `job_values_read`)) of a local script's text and of the local code it imports or
        names."""
        files = self.script_files(job, local)
        texts = []
        for f in files:
            try:
                texts.append(Path(f).read_text(errors="replace"))
            except OSError:
                return None, True, None
        python = [t for f, t in zip(files, texts, strict=True) if f.endswith((".py", ".ipynb"))]
        if any(hands_on_snakemake(t) for t in texts) or any(unseen_template(t) for t in python):
            return None, True, None  # `helpers.run(snakemake)`, `shell(open(t).read())`: everything it holds
        config = config_keys_read(texts) if any(reads_config(t) for t in texts) else frozenset()
        return (config, any("threads" in t or THREAD_VARIABLES.search(t) for t in texts),
                codefiles.fields_read(texts, "resources"))

    def script_files(self, job: Any, local: str) -> list[str]:
        """A local script and the local code it imports (modules beside it or in the directories it puts on
        `sys.path`) or names (`source("scripts/utils.R")`, `subprocess.run(["bash", "scripts/inner.sh"])`)."""
        files = [local]
        here = os.path.dirname(os.path.abspath(local))
        if local.endswith(".py"):
            modules = codefiles.local_modules(self.code_files.python_file(local)[1], here, self.code_files.python_file)
            files += [os.path.join(here, rel) for rel in modules]
            for directory, found in codefiles.sys_path_module_dirs(local, self.where.roots()):
                modules = codefiles.local_modules(set(found), directory, self.code_files.python_file)
                files += [os.path.join(directory, rel) for rel in modules]
        words = script_words(local)
        declared = declared_paths(job) | {os.path.abspath(local)}
        files += list(self.code_files.named(words, self.where.roots(), declared))
        tails = [(w.rsplit("}", 1)[-1] if "scriptdir" in w else w).lstrip("/") for w in words]
        files += list(self.code_files.named([t for t in tails if t], [here], declared, cwd=here))
        return list(dict.fromkeys(files))

    def beside_script(self, local: str, base: str, words: tuple[str, ...], declared: set[str]) -> dict[str, str]:
        """{"@{scriptdir}/<name>": digest} of the code files a script names relative to its own directory, as
        scripts find their siblings: `source(file.path(snakemake@scriptdir, "common.R"))`, `snakemake@source(
        "common.R")`, `source "${snakemake[scriptdir]}/lib.sh"`, `snakemake.scriptdir + "/inner.sh"`. Named
        relative to the script, so a clone (or a module's checkout) elsewhere keys the same."""
        here = os.path.dirname(os.path.abspath(local))
        tails = self.once(("script-tails", local, base), lambda: tuple(dict.fromkeys(
            (w.rsplit("}", 1)[-1] if "scriptdir" in w else w).lstrip("/") for w in words)))
        found = self.code_files.named([t for t in tails if t], [here], declared, cwd=here)
        return {"@{scriptdir}/" + os.path.relpath(p, here): h for p, h in found.items()}

    def path_modules(self, script: str, base: str) -> dict[str, str]:
        """{logical path: digest} of the project's modules a Python script imports from a directory it puts on
        `sys.path` itself (`sys.path.insert(0, snakemake.scriptdir + "/..")`, `.../lib`): project code, like a
        module next to the script, so editing one re-runs the script's jobs. Only for a script that names
        `sys.path`; its imports not found next to it are looked for in the directories such a line usually
        names: the script's directory's parents up to the project's root (the working or Snakefile directory;
        else one level up), their subdirectories, and the working directory's. Where they were found is
        computed once per script content; the modules' digests on every call (memoised by stat)."""
        hits = self.once(("path-modules", script, base),
                         lambda: codefiles.sys_path_module_dirs(script, self.where.roots()))
        out: dict[str, str] = {}
        for directory, names in hits:
            found = codefiles.local_modules(set(names), directory, self.code_files.python_file)
            out.update((self.where.path(os.path.join(directory, rel)), h) for rel, h in found.items())
        return dict(sorted(out.items()))

    def wrapper_digest(self, job: Any, name: str) -> str | None:
        """The content of the wrapper's code, fetched as Snakemake fetches it to run the job (from
        `--wrapper-prefix`, else GitHub): its identifier alone does not say what runs (`master/bio/x`, a local
        prefix whose wrapper is edited, another prefix). None for a release tag of Snakemake's wrapper repository
        (`v7.2.0/bio/x`, no prefix), which pins the code as Snakemake's own source cache assumes: such a job is
        served without network access. A wrapper that cannot be read cannot be keyed, nor run: a clear error
        naming it and what to do."""
        from snakemake import wrapper as wrappers

        prefix = self.workflow.workflow_settings.wrapper_prefix
        if prefix is None and not wrappers.is_url(name) and wrappers.ver_regex.match(name.split("/", 1)[0]):
            return None
        cache = self.workflow.sourcecache
        try:
            source = self.once(("wrapper", name, prefix), lambda: wrappers.get_script(name, cache, prefix))
            if isinstance(source, dict):  # every wrapper.<ext> failed: {file name: error}
                if all("No such file" in str(v) for v in source.values()):
                    where = wrappers.get_path(name, prefix).get_path_or_uri(secret_free=True)
                    raise OSError(f"none of {', '.join(source)} is in {where}")
                raise OSError(" ".join(dict.fromkeys(gist(str(v)) for v in source.values())))
            local = source.get_path_or_uri(secret_free=True) if hasattr(source, "get_path_or_uri") else None
            stamp = os.stat(local).st_mtime_ns if isinstance(local, str) and os.path.isfile(local) else None

            def read() -> str:
                with cache.open(source, "rb") as f:
                    return sha(f.read())

            return self.once(("wrapper-code", name, prefix, stamp), read)
        except Exception as e:  # noqa: BLE001 - network, git or file errors of Snakemake's source cache
            where = f"from {prefix}" if prefix else "from GitHub, the default prefix"
            raise NixWorkflowError(
                f"rule {job.rule.name}: the code of wrapper '{name}' cannot be read ({where}): "
                f"{gist(str(e)) or type(e).__name__}. A wrapper is "
                "keyed by its code, which Snakemake fetches to run it: allow network access, or clone "
                "snakemake-wrappers and pass --wrapper-prefix file:///path/to/snakemake-wrappers/") from None

    def software(self, job: Any) -> dict[str, str]:
        """Conda, container and environment-module deployments of the job, when Snakemake deploys them: what
        they put in front of the job's PATH is part of what it computes. A conda env is its file's content and,
        when there are, its pin file (`envs/x.linux-64.pin.txt`: Snakemake installs exactly those packages
        instead) and post-deploy script, as Snakemake's own env hash has them; modules by their names."""
        from snakemake.settings.types import DeploymentMethod

        methods = self.workflow.deployment_settings.deployment_method
        out: dict[str, Any] = {}
        if DeploymentMethod.CONDA in methods and job.conda_env:
            env = job.conda_env
            out["conda"] = sha(env.content)
            if getattr(env, "file", None) is not None:  # a named or directory env is keyed by its export
                for part, content in (("conda_pin", env.content_pin), ("conda_post_deploy", env.content_deploy)):
                    if content:
                        out[part] = sha(content)
        if DeploymentMethod.APPTAINER in methods and job.container_img_url:
            out["container"] = str(job.container_img_url)
        if DeploymentMethod.ENV_MODULES in methods and job.env_modules:
            out["envmodules"] = list(job.env_modules.names)
        return out


def provenance(job: Any, where: Relocator) -> dict[str, Any]:
    """Snakemake's view of a realisation, recorded beside the engine's own provenance."""
    return {
        "front_door": "snakemake",
        "rule": job.rule.name,
        "wildcards": dict(job.wildcards_dict),
        "jobid": job.jobid,
        "snakefile": where.path(str(job.rule.snakefile)),
        "workdir": where.workdir,
        "log": [str(f) for f in job.log],
        "benchmark": str(job.benchmark) if job.benchmark else None,
        "threads": job.threads,
        "shellcmd": job.shellcmd if job.rule.shellcmd is not None else None,
        **deployed(job),
    }


def deployed(job: Any) -> dict[str, list[str]]:
    """{"deployed": ["conda: envs/x.yaml", ...]}: what Snakemake's software deployment (--sdm) put before the
    job's env, which Nix does not pin (`nw show` says so); {} without any."""
    software = deployed_software(job.rule, job.dag.workflow.deployment_settings.deployment_method)
    return {"deployed": software} if software else {}


def mistyped(job: Any) -> list[str]:
    """Outputs that are a directory where a file is declared or a file where `directory()` is: Snakemake fails
    such a job once it ended (ImproperOutputException), so its products must not be stored before that."""
    return [str(f) for f in job.output if bool(f.is_directory) != os.path.isdir(f)]


def products(job: Any, where: Relocator) -> dict[str, Path]:
    """Recipe output name -> working-directory path, for every file the job leaves behind. Outputs are
    named by their path; logs and the benchmark file are prefixed, so no path can collide with them."""
    out = {where.path(str(f)): Path(f) for f in job.output}
    for f in job.log:
        out[LOG_PREFIX + where.path(str(f))] = Path(f)
    if job.benchmark:
        out[BENCHMARK_PREFIX + where.path(str(job.benchmark))] = Path(job.benchmark)
    return out

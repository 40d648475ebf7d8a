"""The environment variables a step's code files read by name, so that their values join its key.

A step that is not pure hands the host's environment to the scripts it runs. A script reading
`os.environ["SCALE"]` (R's `Sys.getenv("SCALE")`, a bash script's `$SCALE`, a Makefile's `$(SCALE)`) computes
something else under `SCALE=3` than under `SCALE=2`, while its text, which nixlib.codefiles keys, stays the same: a
result made under SCALE=2 was served under SCALE=3. Every front door (nw run, Luigi, the Snakemake executor) finds
here the names the code files a step runs read, and keys their values with nixlib.hostenv.named (a digest per
name, an unset variable apart from an empty one; none for a pure step, which sees none of them). A step whose code
reads no variable keeps the key it had.

A conservative scan: a name too many only keys it (one more run, never a stale result). Python is read for the names
its lookups spell, the same way in a script file (its syntax tree: _environ_reads) and in live code that is only at
hand as objects (a Luigi task's methods, a Snakemake `run:` block, with the helpers they use: code_variables over
their bytecode, called by nixlib.pycode.uses); where a use cannot be followed, every string constant of the code
counts. A name computed at run time (`os.environ[f"X_{i}"]`, `Sys.getenv(var)`) with no constant for it cannot be seen.
"""

from __future__ import annotations

import ast
import functools
import itertools
import ntpath
import os
import pathlib
import posixpath
import re
import types
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from nixlib import notebooks
from nixlib.command import expanded_variables

if TYPE_CHECKING:  # (codefiles imports nixlib.pycode, which imports this module: only the type here)
    from nixlib.codefiles import CodeFiles

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# How scripts in other languages read a variable by name: R's `Sys.getenv("SCALE")` (`Sys.getenv(c("A", "B"))`),
# Julia's `ENV["SCALE"]` and `get(ENV, "SCALE", "1")`, Rust's `env::var("SCALE")`.
_R_GETENV = re.compile(r"\bSys\.getenv\s*\(((?:[^()]|\([^()]*\))*)\)")
_QUOTED_NAME = re.compile(r"""["']([A-Za-z_][A-Za-z0-9_]*)["']""")
_OTHER_GETENV = re.compile(r"""(?:\bENV\s*(?:\[|,)|\benv::var(?:_os)?\s*\()\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")
_SHELL_SUFFIXES = ("", ".sh", ".bash", ".zsh", ".ksh")
_DOLLAR_NAME = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_MAKE_NAME = re.compile(r"\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]")  # (make reads the environment's variables too)
_MAKEFILES = ("Makefile", "makefile", "GNUmakefile")


def read_variables(path: str, data: bytes) -> frozenset[str]:
    """The names of the environment variables a code file (at `path`, holding `data`) may read by name: a Python
    script's (or notebook's) lookups (_environ_names: `os.environ["SCALE"]`, `os.getenv("SCALE", "1")` (not "1"),
    `os.environ.get(VAR)` with `VAR = "SCALE"`) and the variables the commands among its
    strings expand (`subprocess.run("tool --scale $SCALE", shell=True)`); R's, Julia's and Rust's by their getenv
    forms; a makefile's `$(SCALE)`; a shell script's expansions (`$SCALE`, `${SCALE:-1}`:
    nixlib.command.expanded_variables, and every `$NAME`, even in single quotes or a comment: only keyed). Python
    that iterates the environment (`os.environ.items()`) reads every variable set now (_present)."""
    return _present(_scan(path, data)[0])


# Among a scan's names: the script iterates the environment (`{k: v for k, v in os.environ.items() if
# k.startswith("APP_")}`), so every variable may change its result. Replaced by the variables set when the step is
# keyed (_present), not when the file was scanned: the scan is memoised, the environment may change after it.
_WHOLE = "*"
_ITERATIONS = frozenset({"items", "keys", "values"})


def _present(names: Iterable[str]) -> frozenset[str]:
    """`names`, with _WHOLE replaced by the names of the variables the environment has now: a new one (APP_NEW)
    joins the key, a removed one leaves it, so the key changes as what the iteration sees does."""
    names = set(names)
    if _WHOLE in names:
        names.discard(_WHOLE)
        names.update(n for n in os.environ if _NAME.fullmatch(n))
    return frozenset(names)


# What a file's scan found: (the names it reads, whether its Python hands the environment on or looks a name up
# that cannot be told (_environ_reads: None), the name-like string constants of its Python code).
_Scan = tuple[frozenset[str], bool, frozenset[str]]


def _scan(path: str, data: bytes) -> _Scan:
    """read_variables, with what files_variables needs to spread a Python file's unfollowed use to the other Python
    files of the same step."""
    text = data.decode("utf-8", "replace")
    names = {n for m in _R_GETENV.finditer(text) for n in _QUOTED_NAME.findall(m.group(1))}
    names.update(_OTHER_GETENV.findall(text))
    suffix = os.path.splitext(path)[1].lower() or _language(data)
    if suffix in (".py", ".ipynb"):
        found, unfollowed, constants = _python_variables(path, data, text, suffix)
        return frozenset(names | found), unfollowed, constants
    if os.path.basename(path).endswith(_MAKEFILES) or suffix == ".mk":  # (also a store copy: <hash>-Makefile)
        names.update(_MAKE_NAME.findall(text))
    elif suffix in _SHELL_SUFFIXES:
        names.update(expanded_variables(text), _DOLLAR_NAME.findall(text))
    return frozenset(names), False, frozenset()


def _language(data: bytes) -> str:
    """The suffix a program without one would have, by its `#!` line: ".py" for `#!/usr/bin/env python3` (the
    showcase's `tools/train`, read as shell it had no `$SCALE` and SCALE=3 was served SCALE=2's result), "" (shell)
    for a shell's or a text without one, ".bin" for a binary (no names: its bytes are not code to scan) and ".other"
    for another interpreter's (R's, Julia's and Rust's forms are looked for in every file)."""
    if data.startswith(b"#!"):
        words = data[2:data.find(b"\n") if b"\n" in data else None].split()
        words = [w for w in words[1:] if not w.startswith(b"-")] if words[:1] and words[0].endswith(b"/env") \
            else words
        program = os.path.basename(words[0]) if words else b""
        if program.startswith(b"python"):
            return ".py"
        return "" if program in (b"sh", b"bash", b"dash", b"zsh", b"ksh") else ".other"
    return ".bin" if b"\0" in data[:4096] else ""


def _python_variables(path: str, data: bytes, text: str, suffix: str) -> tuple[set[str], bool, frozenset[str]]:
    """_scan of a Python script or notebook. One that does not compile (its run reports it) names every quoted name
    as read when it mentions the environment at all: more keyed, never less."""
    source = notebooks.code(data) if suffix == ".ipynb" else data
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        quoted = frozenset(_QUOTED_NAME.findall(text))
        return (set(quoted), True, quoted) if "environ" in text or "getenv" in text else (set(), False, quoted)
    strings = [k for c in nested_code(code) for t in c.co_consts for k in (t if isinstance(t, tuple) else (t,))
               if isinstance(k, str)]  # (also a constant argument list's: `["sh", "-c", "tool $SCALE"]`)
    tree = ast.parse(source, path)
    constants = frozenset(n for n in _constants(tree) if _NAME.fullmatch(n))
    reads = _environ_reads(tree)
    names = set(constants) if reads is None else {n for n in reads if _NAME.fullmatch(n)}
    names.update(expanded_names(strings), ["HOME"] if _reads_home(tree) else [], [_WHOLE] if _iterates(tree) else [])
    return names, reads is None, constants


def _iterates(tree: ast.AST) -> bool:
    """Whether a parsed file iterates the environment: `os.environ.items()` (keys, values), `for name in
    os.environ`, a comprehension over it. (Other whole uses, `dict(os.environ)` handed to a subprocess, key every
    string constant instead: the scripts the subprocess runs are scanned themselves.)"""
    parents = {id(c): n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
    environs = _environ_aliases(tree)[0]
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Name) and node.id in environs
                or isinstance(node, ast.Attribute) and node.attr in _ENVIRONS):
            continue
        parent = parents.get(id(node))
        if isinstance(parent, ast.Attribute) and parent.attr in _ITERATIONS or \
                isinstance(parent, (ast.For, ast.AsyncFor, ast.comprehension)) and parent.iter is node:
            return True
    return False


def _reads_home(tree: ast.AST) -> bool:
    """Whether a parsed file expands `~` or asks for the home directory: `os.path.expanduser("~/data")` (also
    imported under another name: `from os.path import expanduser as eu`), `Path("~/x").expanduser()`,
    `Path.home()`. On POSIX these read HOME (the passwd entry only when HOME is unset: its absence is keyed)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(a.name == "expanduser" for a in node.names):
            return True
        if isinstance(node, ast.Attribute) and node.attr == "expanduser":
            return True
        if isinstance(node, ast.Attribute) and node.attr == "home":
            owner = node.value
            if (owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")).endswith("Path"):
                return True
    return False


def _constants(tree: ast.AST) -> set[str]:
    """The string constants of a parsed file."""
    return {c.value for c in ast.walk(tree) if isinstance(c, ast.Constant) and isinstance(c.value, str)}


_ENVIRONS = frozenset({"environ", "environb"})
_GETENVS = frozenset({"getenv", "getenvb"})
_LOOKUPS = frozenset({"get", "setdefault", "pop", "__getitem__", "__contains__"})  # environ's methods taking a name
_WRITES = frozenset({"update", "__setitem__", "__delitem__"})  # (set values the host's do not decide)


def _environ_names(tree: ast.AST) -> set[str]:
    """_environ_reads, or every string constant of the file where it cannot tell."""
    reads = _environ_reads(tree)
    return _constants(tree) if reads is None else reads


def _environ_reads(tree: ast.AST) -> set[str] | None:
    """The variables a parsed Python file reads by name: the literal names its lookups spell (`os.environ["SCALE"]`,
    `os.environ.get("SCALE", "unset")` (not "unset"), `os.getenv("SCALE")`, `os.environ.setdefault("SCALE", "1")`,
    `"SCALE" in os.environ`), or that a name the lookup uses is only ever bound to (`VAR = "SCALE"`,
    `for v in ("A", "B")`, `for v in VARS` with `VARS = ("A", "B")`). Where a lookup's name is computed in a way this
    cannot follow (`os.getenv(f"X_{i}")`, a parameter, an imported constant), or the environment is used whole
    (`dict(os.environ)`, `env = os.environ.copy()`, `f(os.environ)`, `map(os.getenv, names)`), every name-like
    string constant of the file is taken as read instead (None here): more keyed, never less."""
    parents = {id(c): n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
    bound = _literal_bindings(tree)
    environs, getenvs = _environ_aliases(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        used = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
        if used is None or not isinstance(getattr(node, "ctx", None), ast.Load):
            continue
        if used in environs if isinstance(node, ast.Name) else used in _ENVIRONS:
            values = _environ_use(node, parents, bound)
        elif used in getenvs if isinstance(node, ast.Name) else used in _GETENVS:
            call = parents.get(id(node))
            values = _values(_argument(call), bound) if isinstance(call, ast.Call) and call.func is node else None
        else:
            continue
        if values is None:  # (computed, or the environment used whole: the conservative scan)
            return None
        names.update(values)
    return names


def _environ_aliases(tree: ast.AST) -> tuple[set[str], set[str]]:
    """The names a parsed file calls the environment and getenv by: their own, and those it imports them as (`from
    os import environ as env`, `from os import getenv`)."""
    environs, getenvs = set(_ENVIRONS), set(_GETENVS)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            environs.update(a.asname or a.name for a in node.names if a.name in _ENVIRONS)
            getenvs.update(a.asname or a.name for a in node.names if a.name in _GETENVS)
    return environs, getenvs


def _environ_use(node: ast.expr, parents: dict[int, ast.AST], bound: dict[str, set[str] | None]) -> set[str] | None:
    """The names the use of the environment object `node` looks up (_values of the expression naming the variable),
    none for a use reading none (a plain assignment or `del` of `os.environ["X"]`, `os.environ.update(...)`), None
    for a use that may read any (passed whole, copied, iterated) or whose name cannot be told."""
    parent = parents.get(id(node))
    if isinstance(parent, ast.Subscript) and parent.value is node:
        if isinstance(parent.ctx, (ast.Store, ast.Del)) and not isinstance(parents.get(id(parent)), ast.AugAssign):
            return set()
        return _values(parent.slice, bound)
    if isinstance(parent, ast.Compare) and node in parent.comparators:
        at = parent.comparators.index(node)
        if isinstance(parent.ops[at], (ast.In, ast.NotIn)):
            return _values(parent.left if at == 0 else parent.comparators[at - 1], bound)
        return None
    if isinstance(parent, ast.Attribute) and parent.value is node:
        call = parents.get(id(parent))
        if isinstance(call, ast.Call) and call.func is parent:
            if parent.attr in _WRITES:
                return set()
            if parent.attr in _LOOKUPS:
                return _values(_argument(call), bound)
    return None


def _argument(call: ast.Call) -> ast.expr | None:
    """A lookup call's first argument (the variable's name), or its `key=`."""
    if call.args and not isinstance(call.args[0], ast.Starred):
        return call.args[0]
    return next((k.value for k in call.keywords if k.arg == "key"), None)


def _values(expr: ast.expr | None, bound: dict[str, set[str] | None]) -> set[str] | None:
    """The names `expr` may be: a string constant's, those a name is only ever bound to (_literal_bindings); None
    when it cannot be told."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, (str, bytes)):
        return {expr.value if isinstance(expr.value, str) else expr.value.decode("utf-8", "replace")}
    if isinstance(expr, ast.Name):
        return bound.get(expr.id)
    return None


def _literal_bindings(tree: ast.AST) -> dict[str, set[str] | None]:
    """{identifier: every string it is bound to anywhere in the file}, None for one bound otherwise even once (a
    parameter, an import, a computed value, an unpacking): by name, whatever the scope (a name bound to "A" in one
    function and "B" in another may be either: both keyed). A loop's name over literal strings (`for v in ("A",
    "B")`, `for v in VARS` with `VARS = ["A", "B"]` its only binding) is bound to each."""
    binds: dict[str, list[tuple[str, object]]] = {}

    def other(target: ast.AST) -> None:
        for t in ast.walk(target):
            if isinstance(t, ast.Name):
                binds.setdefault(t.id, []).append(("other", None))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
            value = None if isinstance(node, ast.AugAssign) else node.value
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if not isinstance(t, ast.Name):
                    other(t)
                elif isinstance(value, ast.Constant) and isinstance(value.value, str):
                    binds.setdefault(t.id, []).append(("str", {value.value}))
                elif _literal_strings(value) is not None:
                    binds.setdefault(t.id, []).append(("seq", _literal_strings(value)))
                else:
                    binds.setdefault(t.id, []).append(("other", None))
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            if isinstance(node.target, ast.Name):
                binds.setdefault(node.target.id, []).append(("for", node.iter))
            else:
                other(node.target)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                binds.setdefault((alias.asname or alias.name).split(".")[0], []).append(("other", None))
        elif isinstance(node, ast.arg):
            binds.setdefault(node.arg, []).append(("other", None))
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    other(item.optional_vars)
        elif isinstance(node, ast.ExceptHandler) and node.name or \
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.MatchAs, ast.MatchStar)) \
                and node.name:
            binds.setdefault(node.name, []).append(("other", None))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Del):
            binds.setdefault(node.id, []).append(("other", None))

    def sequence(name: str) -> set[str] | None:
        kinds = binds.get(name, [("other", None)])
        if any(k != "seq" for k, _ in kinds):
            return None
        return {v for _, values in kinds for v in values}  # type: ignore[attr-defined]

    out: dict[str, set[str] | None] = {}
    for name, kinds in binds.items():
        values: set[str] | None = set()
        for kind, what in kinds:
            items = what if kind == "str" else (_literal_strings(what) if not isinstance(what, ast.Name)
                                                else sequence(what.id)) if kind == "for" else None
            if items is None or values is None:
                values = None
                break
            values |= items  # type: ignore[operator]
        out[name] = values
    return out


def _literal_strings(expr: object) -> set[str] | None:
    """The strings of a tuple, list or set literal holding only string constants; None for anything else."""
    if isinstance(expr, (ast.Tuple, ast.List, ast.Set)) and \
            all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in expr.elts):
        return {e.value for e in expr.elts}  # type: ignore[attr-defined]
    return None


# {(absolute path, size, mtime, ctime, inode): names}: a file is scanned once per content in a process (a sweep's
# steps run the same script; a Snakemake run asks for each job), and again once it is edited (its signature changes).
_MEMO: dict[tuple[str, int, int, int, int], _Scan] = {}
_MEMO_LIMIT = 4096


def file_variables(path: str) -> frozenset[str]:
    """read_variables of the file at `path`, memoised by its stat signature; none for a missing or unreadable file
    (the step cannot run it either)."""
    return _present(_file_scan(path)[0])


def _file_scan(path: str) -> _Scan:
    """_scan of the file at `path`, memoised by its stat signature (file_variables)."""
    nothing: _Scan = (frozenset(), False, frozenset())
    try:
        st = os.stat(path)
    except OSError:
        return nothing
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    known = _MEMO.get(key)
    if known is None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return nothing
        if len(_MEMO) >= _MEMO_LIMIT:  # (a long-lived process that saw many files: bounded memory)
            _MEMO.clear()
        known = _MEMO[key] = _scan(path, data)
    return known


def files_variables(paths: Iterable[str]) -> frozenset[str]:
    """The names the code files at `paths` read (file_variables), together. When one Python file among them uses
    the environment in a way its scan cannot follow, the name-like string constants of all of them are taken as
    read: the use may be fed from another (`ENV = os.environ` in config.py read as `ENV.get("SCALE")` in train.py
    importing it, `def env(name): return os.environ[name]` called as `env("SCALE")`, `helpers.run(os.environ)`)."""
    scans = [_file_scan(p) for p in paths]
    names = {n for found, _, _ in scans for n in found}
    if any(unfollowed for _, unfollowed, _ in scans):
        names.update(n for _, _, constants in scans for n in constants)
    return _present(names)


def scripts_variables(code_files: CodeFiles, scripts: Iterable[str], imports: tuple[str, ...] = ()
                      ) -> frozenset[str]:
    """The names the project `scripts` a step runs (absolute paths) read, with those of the code files their
    keys follow: the scripts they run in turn (CodeFiles.scripts_run: `bash run.sh` running `python3 prep.py`, a
    Makefile's recipes) and the project modules the Python ones import (CodeFiles.imported_files, beside them or
    from the `imports` directories: nixlib.pyimports). A variable read in a helper module changes the result as
    one read in the script does."""
    files: list[str] = []
    for script in scripts:
        files += [script, *code_files.scripts_run(script)]
    files += [m for f in list(files) for m in code_files.imported_files(f, imports)]
    return files_variables(dict.fromkeys(files))


# The bytecode form of the scan above, for code that is only at hand as live objects (a Luigi task's methods and
# the helpers they use, a Snakemake `run:` block: nixlib.pycode.uses walks them): the same lookups, read off the
# instructions. Instructions that only move the stack or mark a place are skipped.
_SKIPPED = frozenset({"CACHE", "EXTENDED_ARG", "PRECALL", "NOP", "PUSH_NULL", "KW_NAMES", "RESUME", "NOT_TAKEN"})
_CALLS = frozenset({"CALL", "CALL_FUNCTION", "CALL_METHOD"})
_SUBSCRIPTS = frozenset({"BINARY_SUBSCR"})
_NOT_SIMPLE = frozenset({"LOAD_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR", "LOAD_BUILD_CLASS", "LOAD_ASSERTION_ERROR"})


def nested_code(code: types.CodeType) -> list[types.CodeType]:
    """A code object and the code nested in it (functions, lambdas, comprehensions, classes), outer first: the one
    walk of live code (nixlib.pycode follows the names it uses, this module the environment reads in it)."""
    found: list[types.CodeType] = []
    stack = [code]
    while stack:
        c = stack.pop()
        found.append(c)
        stack += [k for k in c.co_consts if isinstance(k, types.CodeType)]
    return found


def expanded_names(strings: Iterable[str]) -> set[str]:
    """The variables the commands or templates among code's strings expand (`subprocess.run("tool $SCALE",
    shell=True)`, `os.path.expandvars("$DATA/x")`): read when they run, whatever else the code does."""
    return {n for t in strings if "$" in t for n in expanded_variables(t)}


def code_names(code: types.CodeType) -> list[str]:
    """The global and attribute names a code object and the code nested in it use."""
    return [n for c in nested_code(code) for n in c.co_names]


# The modules whose namespace holds the environment (`posix.environ` is os.environ's bytes-keyed source): code that
# reaches into one by a string (`getattr(os, name)`, `vars(os)`, `os.__dict__`) may read it.
_OS_MODULES = frozenset({"os", "posix", "nt"})
_NAMESPACES = frozenset({"__dict__", "__getattribute__", "__getattr__"})
_ENVIRON_NAMES = _ENVIRONS | _GETENVS


def code_variables(code: types.CodeType, globs: dict, cells: dict[str, Any] | None = None
                   ) -> tuple[set[str] | None, set[str]]:
    """(The variables a live code object (and the code nested in it) reads by name, the globals whose current
    values gave some of them), as _environ_names reads a parsed file: a literal name a lookup spells
    (`os.environ["SCALE"]`, `os.environ.get("SCALE", "1")` (not "1"), `os.getenv("SCALE")`, `"SCALE" in
    os.environ`, `getattr(os, "environ")["SCALE"]`), or a module-level string it names (`os.environ.get(VAR)` with
    `VAR = "SCALE"`). The environment is found by its attribute name (`os.environ`, `os.getenv`) or by value: a
    global, or a value the function closes over (`cells`: {free variable: value}, a factory's `make(os.environ)`),
    that is os.environ, os.getenv or one of os.environ's methods, also one imported from another module (`from
    config import ENV`, `config.ENV.get("X")`). None for the names when a use cannot be followed (a name computed or
    passed in, the environment copied, iterated or handed on, a local alias, the os module handed on or reached by
    a string: `getattr(os, name)`, `vars(os)`): the caller then takes every string constant as read, as before."""
    environs, getenvs, modules, bound, hidden = _aliases(code, globs, cells or {})
    names: set[str] = set()
    relied: set[str] = set()
    for c in nested_code(code):
        names.update(expanded_names(k for k in c.co_consts if isinstance(k, str)))
        used = (*c.co_names, *c.co_varnames, *c.co_freevars, *c.co_cellvars)
        if not hidden.isdisjoint(used):  # (`CFG["env"]["X"]` with `CFG = {"env": os.environ}`: not followed)
            return None, relied
        if (environs | getenvs | modules | bound.keys()).isdisjoint(used) and _ENVIRON_NAMES.isdisjoint(c.co_consts):
            continue
        import dis

        ops = [i for i in dis.get_instructions(c) if i.opname not in _SKIPPED]
        modules.update(_module_stores(ops))
        for at, op in enumerate(ops):
            if op.opname == "IMPORT_FROM" and op.argval in _ENVIRON_NAMES:  # (`from os import environ as e`
                return None, relied  # in a function: a local alias, not followed)
            if op.opname.startswith("LOAD_") and op.opname != "LOAD_CONST" and op.argval in bound:  # (`P()`, with
                names.update(bound[op.argval])  # `P = partial(os.getenv, "X")`: its name whatever the use)
                continue
            if op.opname == "LOAD_CONST":
                if op.argval in _ENVIRON_NAMES and not _getattr_of_module(ops, at - 1, modules):
                    return None, relied  # (the environment named by a string: `vars(os)["environ"]`)
                continue
            if not op.opname.startswith("LOAD_") or op.argval not in environs | getenvs | modules:
                continue
            if op.argval in environs:
                found = _environ_op(ops, at, globs, relied)
            elif op.argval in getenvs:
                found = _call_argument(ops, at, globs, relied)
            else:
                found = _module_op(ops, at, globs, relied)
            if found is None:
                return None, relied
            names.update(found)
    return names, relied


def _aliases(code: types.CodeType, globs: dict, cells: dict[str, Any]
             ) -> tuple[set[str], set[str], set[str], dict[str, set[str]], set[str]]:
    """The names through which code reaches the environment object, getenv and the os module, those bound to a
    lookup of given names (`P = partial(os.getenv, "X")`), and those of containers the environment hides in
    (`CFG = {"env": os.environ}`: _holds): their own, and those of globals (or attributes of modules it names, or
    of the class a method is defined in: `env = os.environ` in its body) and of the values it closes over (`cells`)
    that are them (`ENV = os.environ` in config.py, `from config import ENV`, `ENV = dict(os.environ)`: _copied,
    `GET = os.environ.get`: a lookup, as getenv; `COPY = os.environ.copy`: the environment used whole)."""
    environs, getenvs, modules, bound, hidden = set(_ENVIRONS), set(_GETENVS), set(_OS_MODULES), {}, set()
    every = set(code_names(code))
    holders = [v for n in every if isinstance(v := globs.get(n), types.ModuleType)] + _owners(code, globs)
    values = [(n, v) for n in every for v in (globs.get(n), *(getattr(h, n, None) for h in holders))]
    for name, value in [*values, *cells.items()]:
        kind = _kind(value)
        if isinstance(kind, set):
            bound.setdefault(name, set()).update(kind)
        else:
            (environs if kind == "environ" else getenvs if kind == "getenv" else modules if kind == "module"
             else hidden if kind == "hidden" else set()).add(name)
    return environs, getenvs, modules, bound, hidden


def _owners(code: types.CodeType, globs: dict) -> list[type]:
    """The module-level class a method's code is defined in (by its qualified name, `Task.run`): `self.env` may be
    its class attribute."""
    path = getattr(code, "co_qualname", "").split(".")[:-1]
    owner: Any = globs.get(path[0]) if path and "<locals>" not in path else None
    for part in path[1:]:
        owner = getattr(owner, part, None)
    return [owner] if isinstance(owner, type) else []


def _kind(value: object, depth: int = 3) -> str | set[str] | None:
    """"environ" for os.environ (environb), a copy of it (_copied) or a method of it that is no lookup by name,
    "getenv" for getenv or a lookup method (`os.environ.get`), "module" for the modules that hold them (os, posix),
    the name a partial of a lookup binds ({"X"} for `partial(os.getenv, "X")`), "hidden" for a container or object
    holding one of these (_holds, `depth` levels down), else None. (A partial handing the environment on
    (`partial(f, os.environ)`) is the environment used whole.)"""
    whole = (os.environ, getattr(os, "environb", os.environ))
    if any(value is w for w in whole) or _copied(value):
        return "environ"
    if any(value is r for r in (os.getenv, getattr(os, "getenvb", os.getenv))):
        return "getenv"
    if isinstance(value, types.MethodType) and any(value.__self__ is w for w in whole):
        return "getenv" if value.__name__ in _LOOKUPS else "environ"
    if isinstance(value, types.ModuleType) and value.__name__ in _OS_MODULES:
        return "module"
    if isinstance(value, functools.partial):
        if any(_kind(v) is not None for v in (*value.args, *value.keywords.values())):
            return "environ"
        kind = _kind(value.func)
        if kind == "getenv" and value.args:
            first = value.args[0]
            return {first if isinstance(first, str) else bytes(first).decode("utf-8", "replace")} \
                if isinstance(first, (str, bytes)) else "environ"
        return "environ" if kind is not None else None
    return "hidden" if depth and _holds(value, depth) else None


_HELD = 256  # (the values looked into, in all: a large container is data, not where code keeps the environment)


def _copied(value: object) -> bool:
    """Whether a dict is a copy of the environment made at import (`dict(os.environ)`, `os.environ.copy()`,
    `{**os.environ}`, `dict(os.environ, X="1")`): it holds more than half of the variables the environment now has,
    with their values. Its lookups are the environment's (`ENV["X"]` reads X as it was when the step started);
    another dict that happens to look so only has its constant keys keyed (more keyed, never less)."""
    if not isinstance(value, dict) or not value or len(value) > 2 * len(os.environ) + 64:
        return False
    shared = sum(1 for k, v in value.items() if isinstance(k, str) and os.environ.get(k) == v)
    return 2 * shared > len(os.environ)


def _holds(value: object, depth: int) -> bool:
    """Whether a container (dict, list, tuple, set) or a plain object's attributes (`SimpleNamespace(env=...)`, a
    dataclass, an instance whose `__init__` set `self.env = os.environ`), `depth` levels down, hold the
    environment, getenv or a copy: its reads (`CFG["env"]["X"]`, `NS.env.get("X")`) are not followed, so the code
    using it counts as using the environment in a way that cannot be told. At most _HELD values are looked at."""
    todo, budget = [(value, depth)], _HELD
    while todo and budget > 0:
        current, left = todo.pop()
        for item in itertools.islice(_contents(current), budget):
            budget -= 1
            if _kind(item, 0) is not None:
                return True
            if left > 1:
                todo.append((item, left - 1))
    return False


def _contents(value: object) -> Iterable[object]:
    """The values a container or a plain object holds; none for a module, class, function or string (modules and
    classes are looked into by name elsewhere)."""
    if isinstance(value, dict):
        return value.values()
    if isinstance(value, (list, tuple, set, frozenset)):
        return value
    if isinstance(value, (types.ModuleType, type, str, bytes)) or callable(value):
        return ()
    try:
        return list(vars(value).values())
    except Exception:  # (no __dict__, or one that cannot be read: nothing seen through it)
        return ()


def reads_home(code: types.CodeType, globs: dict, cells: dict[str, Any] | None = None) -> bool:
    """_reads_home of live code (and the code nested in it): it names `expanduser`, or `home` beside a Path class
    (`Path.home()`, `pathlib.Path.home()`), or uses a global or closed-over value that is one of them
    (`eu = os.path.expanduser`, `from pathlib import Path as P` used as `P.home()`)."""
    names = set(code_names(code))
    values = [globs.get(n) for n in names] + list((cells or {}).values())
    if "expanduser" in names or any(_home_reader(v) for v in values):
        return True
    return "home" in names and (any(n.endswith("Path") for n in names) or any(
        isinstance(v, type) and issubclass(v, pathlib.PurePath) for v in values))


def _home_reader(value: object) -> bool:
    """Whether a value is a function that reads HOME: expanduser (os.path's, posixpath's, a Path's) or Path.home."""
    readers = (os.path.expanduser, posixpath.expanduser, ntpath.expanduser, pathlib.Path.expanduser)
    if any(value is r for r in readers):
        return True
    # (only a bound method is looked into: an arbitrary object's getattr may run its code, and Snakemake's `rules`
    # proxy raises for any name it does not know)
    return isinstance(value, types.MethodType) and value.__func__ is pathlib.Path.home.__func__


def _module_stores(ops: list) -> set[str]:
    """The local names code binds the os module to itself (`import os as o` in a function)."""
    return {ops[i + 1].argval for i, o in enumerate(ops[:-1]) if o.opname == "IMPORT_NAME"
            and o.argval.split(".")[0] in _OS_MODULES and ops[i + 1].opname.startswith("STORE_")}


def _getattr_of_module(ops: list, at: int, modules: set[str]) -> bool:
    """Whether `ops[at]` loads the os module as the first argument of `getattr(os, "<constant>")`."""
    return 1 <= at < len(ops) - 2 and ops[at - 1].opname in ("LOAD_GLOBAL", "LOAD_NAME") \
        and ops[at - 1].argval == "getattr" and ops[at].argval in modules and ops[at].opname.startswith("LOAD_") \
        and ops[at + 1].opname == "LOAD_CONST" and isinstance(ops[at + 1].argval, str) \
        and ops[at + 2].opname in _CALLS and ops[at + 2].arg == 2 \
        and not any(o.is_jump_target for o in ops[at:at + 3])


def _module_op(ops: list, at: int, globs: dict, relied: set[str]) -> set[str] | None:
    """The names read through the os module loaded by `ops[at]`: none for an attribute (`os.path`; `os.environ` is
    looked at as the environment's own use), the lookup's for `getattr(os, "environ")` (or "getenv"), None for any
    other use: handed on (`vars(os)`, `getattr(os, name)`, `m = os`) or its namespace (`os.__dict__`)."""
    after = ops[at + 1] if at + 1 < len(ops) else None
    if after is not None and after.opname in ("LOAD_ATTR", "LOAD_METHOD") and not after.is_jump_target:
        return None if after.argval in _NAMESPACES else set()
    if not _getattr_of_module(ops, at, {ops[at].argval}):
        return None
    name, call = ops[at + 1].argval, at + 2
    if name in _ENVIRONS:  # (the call's result is the environment: its use after it, but `"X" in` is not told)
        follows = ops[call + 1] if call + 1 < len(ops) else None
        if follows is not None and follows.opname in ("CONTAINS_OP", "COMPARE_OP"):
            return None
        return _environ_op(ops, call, globs, relied)
    if name in _GETENVS:
        return _call_argument(ops, call, globs, relied)
    return None if name in _NAMESPACES else set()


def _name_value(op: object, globs: dict, relied: set[str]) -> set[str] | None:
    """The name an instruction pushes as a variable's name: a string constant's, a module-level string's (noted
    in `relied`: its value now, checked against the code that rebinds it); None for any other."""
    kind, value = getattr(op, "opname", ""), getattr(op, "argval", None)
    if kind == "LOAD_CONST" and isinstance(value, (str, bytes)):
        return {value if isinstance(value, str) else value.decode("utf-8", "replace")}
    if kind in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(globs.get(value), str):
        relied.add(value)
        return {globs[value]}
    return None


def _environ_op(ops: list, at: int, globs: dict, relied: set[str]) -> set[str] | None:
    """The names the use of the environment object loaded by `ops[at]` reads (a subscript, `in`, a lookup
    method; none for a write), None for any other use."""
    after = ops[at + 1:at + 3]
    if any(o.is_jump_target for o in after):
        return None
    if len(after) == 2 and (key := _name_value(after[0], globs, relied)) is not None:
        following = after[1].opname
        if following in ("STORE_SUBSCR", "DELETE_SUBSCR"):
            return set()
        if following in _SUBSCRIPTS or following in ("COPY", "DUP_TOP_TWO") or \
                following == "BINARY_OP" and after[1].argrepr == "[]":
            return key
        return None
    if after and after[0].opname in ("CONTAINS_OP", "COMPARE_OP") and str(after[0].argval) in ("0", "1", "in",
                                                                                              "not in"):
        plain = ops[at].opname != "LOAD_ATTR"  # (`environ` by its own name, else `os.environ`: `os` loaded before)
        left = ops[at - 1] if plain else ops[at - 2] if at >= 2 and _simple(ops[at - 1]) else None
        if left is None or ops[at].is_jump_target or not plain and ops[at - 1].is_jump_target:
            return None
        return _name_value(left, globs, relied)
    if after and after[0].opname == "GET_ITER" or after and after[0].opname in ("LOAD_ATTR", "LOAD_METHOD") \
            and after[0].argval in _ITERATIONS:  # (`for k in os.environ`, `os.environ.items()`: _present)
        return set(_present([_WHOLE]))
    if after and after[0].opname in ("LOAD_ATTR", "LOAD_METHOD"):
        if after[0].argval in _WRITES:
            return set()
        if after[0].argval in _LOOKUPS:
            return _call_argument(ops, at + 1, globs, relied)
    return None


def _call_argument(ops: list, at: int, globs: dict, relied: set[str]) -> set[str] | None:
    """The name a call of the function loaded by `ops[at]` (getenv, environ.get) looks up: a literal first
    argument, alone or followed by one plain value (`os.getenv("SCALE", "1")`, `.get("SCALE", default)`); None
    for any other call (a computed name, an expression as the default: not told apart here)."""
    after = ops[at + 1:at + 4]
    if not after or any(o.is_jump_target for o in after) or (key := _name_value(after[0], globs, relied)) is None:
        return None
    if len(after) >= 2 and after[1].opname in _CALLS and after[1].arg == 1:
        return key
    if len(after) == 3 and _simple(after[1]) and after[2].opname in _CALLS and after[2].arg == 2:
        return key
    return None


def _simple(op: object) -> bool:
    """Whether an instruction pushes one plain value of its own (a constant, a variable), not a part of an
    expression."""
    kind = getattr(op, "opname", "")
    return kind.startswith("LOAD_") and kind not in _NOT_SIMPLE and not (kind == "LOAD_GLOBAL" and op.arg & 1)


def stored_globals(codes: Iterable[types.CodeType]) -> set[str]:
    """The global names code (and the code nested in it) binds (`global VAR; VAR = "OTHER"`): a module-level
    string code_variables took by its current value may be another when the step runs."""
    import dis

    out: set[str] = set()
    stack = list(codes)
    while stack:
        c = stack.pop()
        stack += [k for k in c.co_consts if isinstance(k, types.CodeType)]
        out.update(i.argval for i in dis.get_instructions(c)
                   if i.opname in ("STORE_GLOBAL", "DELETE_GLOBAL", "STORE_NAME", "DELETE_NAME"))
    return out

"""Where the Pythons a step's command runs import the project's own modules from, besides a script's directory.

A project installed in development mode (`pip install -e .`, `uv pip install -e .`, `poetry install`) is imported
through its interpreter's site-packages: a `.pth` file naming the project's source directory, or setuptools'
`__editable___NAME_finder.py` mapping each package to it. A step running `python scripts/fit.py` (which imports
`mlpkg.util`) or `python -m mlpkg.train` runs that source, so it is project code, keyed by content like a module
next to the script; so is a module in a directory the command puts on PYTHONPATH. Only directories inside the
project count: an installed package is part of the environment.

The interpreters are found without running them: a word of the command that is a path to one (`.venv/bin/python`)
or a `python`/`python3`/`python3.11` on PATH, and `python3` on PATH for a script run by its `#!` line. Their
site-packages are those of their prefix (a venv's, beside its `pyvenv.cfg`) and the user's. Looking at more
interpreters than run only adds project directories to look in: more keyed, never less.
"""

from __future__ import annotations

import ast
import functools
import glob
import json
import os
import re
import shutil
from collections.abc import Iterable

from nixlib import codefiles

_PYTHON_WORD = re.compile(r"(?<![^\s;&|(`'\"=])((?:[^\s;&|()`'\"<>]*/)?python(?:\d+(?:\.\d+)?)?)(?=[\s;&|)`'\"<>]|\Z)")
# (setuptools' finder; hatchling's editables redirector, dev-mode-exact; scikit-build-core's redirect, both names;
# meson-python's loader, `_NAME_editable_loader`)
_FINDER = re.compile(r"\b(__editable___[A-Za-z0-9_]+_finder|_editable_impl_[A-Za-z0-9_]+|_editable_skbc_[A-Za-z0-9_]+|"
                     r"_[A-Za-z0-9_]+_editable(?:_loader)?)\b")
_MESON_PLAN = os.path.join("meson-info", "intro-install_plan.json")  # (in meson-python's build directory)
_MESON_PLAN_BYTES = 16 << 20
_SITE_PATTERNS = ("lib/python3*/site-packages", "lib/python3*/dist-packages", "lib/python3/dist-packages",
                  "local/lib/python3*/dist-packages")
# site directory -> (its mtime, (each .pth and finder file read, its _stat), the directories they add)
_EDITABLE: dict[str, tuple[int, tuple[tuple[str, object], ...], tuple[str, ...]]] = {}


def import_dirs(command: str, roots: Iterable[str], cds: Iterable[str] = (), pythons: Iterable[str] = (),
                cwd: str | None = None) -> list[str]:
    """The directories inside the project (`roots`) that the Pythons `command` runs import project modules from:
    those it changes into (`cds`), puts on PYTHONPATH, and those its interpreters' editable installs add; also
    those of the `pythons` given (absolute paths of interpreters known to run the code without the command naming
    them: Snakemake's own for a `script:`, a Luigi worker's `sys.executable` for the scripts a task starts). `cwd`:
    where the command starts, for a relative PYTHONPATH (Snakemake's working directory; nw run's steps start in
    $out)."""
    inside = tuple(os.path.abspath(r).rstrip(os.sep) + os.sep for r in roots)
    found = [*cds, *codefiles.python_path_directories(command, cwd)]
    pythons = tuple(p for p in pythons if p and os.path.isabs(p))
    if pythons or "python" in command or ".py" in command:
        for python in dict.fromkeys([*pythons, *interpreters(command)]):
            found += [d for site in site_dirs(python) for d in editable_dirs(site)]
    return [d for d in _merged(os.path.abspath(d) if type(d) is str else d for d in found)
            if (d + os.sep).startswith(inside)]


def _merged(directories: Iterable[str]) -> list[str]:
    """The directories, each once, in order: one named twice (a .pth line, finders) with every mapping it has
    (codefiles.MappedDir)."""
    merged: dict[str, str] = {}
    for d in directories:
        packages = [*getattr(merged.get(d), "packages", ()), *getattr(d, "packages", ())]
        merged[d] = codefiles.MappedDir(d, packages) if packages else d
    return list(merged.values())


def interpreters(command: str) -> list[str]:
    """The Python interpreters a command may run: a word naming one by path, a bare `python…` on PATH, and PATH's
    `python3` (a script run by its `#!/usr/bin/env python3` line)."""
    return list(_interpreters(tuple(dict.fromkeys(_PYTHON_WORD.findall(command))), os.environ.get("PATH")))


@functools.lru_cache(maxsize=256)
def _interpreters(words: tuple[str, ...], path: str | None) -> tuple[str, ...]:
    found = []
    for word in [*words, "python3"]:
        if os.sep not in word:
            word = shutil.which(word, path=path) or ""
        if os.path.isabs(word) and os.path.isfile(word):
            found.append(word)
    return tuple(dict.fromkeys(found))


@functools.lru_cache(maxsize=64)
def site_dirs(python: str) -> tuple[str, ...]:
    """The site-packages directories of an interpreter: its prefix's (the venv's when it is one; also its real
    executable's) and the user's (`pip install --user -e`)."""
    prefixes = dict.fromkeys(os.path.dirname(os.path.dirname(p)) for p in (os.path.abspath(python),
                                                                            os.path.realpath(python)))
    patterns = [os.path.join(glob.escape(prefix), pattern) for prefix in prefixes for pattern in _SITE_PATTERNS]
    patterns.append(os.path.join(glob.escape(os.path.expanduser("~")), ".local/lib/python3*/site-packages"))
    return tuple(d for pattern in patterns for d in sorted(glob.glob(pattern)) if os.path.isdir(d))


def editable_dirs(site: str) -> tuple[str, ...]:
    """The directories the `.pth` files in `site` add to the import path: their directory lines, and the parents
    of the packages setuptools' editable finders map (`MAPPING = {'mlpkg': '/p/src/mlpkg'}`; codefiles.MappedDir).
    Memoised by the directory's mtime, so installing or removing a project (pip writes its files anew) is seen at
    once, and by the stat of each .pth and finder file read, so one edited in place is seen too by a long-lived
    process (a Luigi worker, the Snakemake executor)."""
    try:
        mtime = os.stat(site).st_mtime_ns  # (installing or removing a package adds or removes a file there)
        known = _EDITABLE.get(site)
        if known is not None and known[0] == mtime and all(_stat(p) == sig for p, sig in known[1]):
            return known[2]
        names = sorted(n for n in os.listdir(site) if n.endswith(".pth"))
        read: list[tuple[str, object]] = []  # (each file's stat, taken before it is read)
        dirs = tuple(_merged(d for n in names for d in _pth_dirs(site, n, read)))
        _EDITABLE[site] = (mtime, tuple(read), dirs)
    except OSError:
        return ()
    return dirs


def _stat(path: str) -> object:
    """What an edit of a file changes: its size, mtime, ctime and inode (None if it is gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _pth_dirs(site: str, name: str, read: list[tuple[str, object]] | None = None) -> list[str]:
    path = os.path.join(site, name)
    if read is not None:
        read.append((path, _stat(path)))
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read(1 << 20).splitlines()
    except OSError:
        return []
    out = []
    for line in (raw.strip() for raw in lines):
        if not line or line.startswith("#"):
            continue
        if line.startswith(("import ", "import\t")):
            for finder in _FINDER.findall(line):
                finder = os.path.join(site, finder + ".py")
                if read is not None:
                    read.append((finder, _stat(finder)))
                out += _finder_dirs(finder, read)
            continue
        directory = os.path.join(site, line)
        if os.path.isdir(directory):
            out.append(os.path.normpath(directory))
    return out


def _finder_dirs(path: str, read: list[tuple[str, object]] | None = None) -> list[str]:
    """The parents of the package directories a setuptools editable finder's MAPPING names, each a
    codefiles.MappedDir mapping the names to those directories: a package whose directory is named otherwise
    (`{'mlpkg': '/p/lib'}`, package_dir) or a dotted name (`{'ns.pkg': '/p/src/ns/pkg'}`, under a namespace) is
    found by its name. Likewise the modules hatchling's editables redirector maps (dev-mode-exact: `F.map_module(
    'mlpkg', '/p/src/mlpkg/__init__.py')`) and those scikit-build-core's redirect maps (`install({'mlpkg':
    '/p/src/mlpkg/__init__.py', 'mlpkg.util': '/p/src/mlpkg/util.py'}, ...)`: its Python sources), and those
    meson-python's editable loader maps (`install('mlpkg', {'mlpkg'}, '/p/build/cp311', [...], False)`: the sources
    its build directory's install plan installs, _meson_sources; the plan is added to `read`, as a rebuild that
    changes it is seen)."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):  # (no finder setuptools wrote)
        return []
    parents: dict[str, list[tuple[str, str]]] = {}

    def add(name: object, target: object, source: bool = False, dotted: bool = False) -> None:
        if isinstance(name, str) and isinstance(target, str) and os.path.isabs(target):
            target = os.path.normpath(target)
            levels = name.count(".") + 1 if dotted else 1  # (a package directory: the parent above its dotted name)
            if source:  # (a module's source file: a package by its directory, the parent above its dotted name)
                if not target.endswith(".py"):
                    return
                target = os.path.dirname(target) if os.path.basename(target) == "__init__.py" else target
                levels = name.count(".") + 1
            parent = target
            for _ in range(levels):
                parent = os.path.dirname(parent)
            parents.setdefault(parent, []).append((name, target))

    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0] \
            if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        if isinstance(target, ast.Name) and target.id == "MAPPING" and node.value is not None:
            mapping = _literal(node.value)
            if not isinstance(mapping, dict):
                return []
            for name, target in mapping.items():
                add(name, target)
            break
        call = node.value if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) else None
        called = getattr(call.func, "attr", getattr(call.func, "id", None)) if call is not None else None
        if call is not None and called == "map_module" and len(call.args) == 2:  # (editables)
            add(_literal(call.args[0]), _literal(call.args[1]), source=True)
        elif call is not None and called == "install" and call.args:  # (scikit-build-core; meson-python)
            mapping = _literal(call.args[0])
            for name, target in mapping.items() if isinstance(mapping, dict) else ():
                add(name, target, source=True)
            for name, target in _meson_sources(call.args, read) if not isinstance(mapping, dict) else ():
                add(name, target, source=target.endswith(".py"), dotted=True)
    return [codefiles.MappedDir(parent, packages) for parent, packages in parents.items()]


def _meson_sources(args: list[ast.expr], read: list[tuple[str, object]] | None) -> list[tuple[str, str]]:
    """(module name, source) of the Python sources meson-python's editable loader imports: its `install(...)` names
    the build directory (`install(package, names, build_dir, cmd, verbose)`; before 0.16 without `package`), whose
    meson-info/intro-install_plan.json maps each file meson installs to its destination; those installed into
    `{py_purelib}` or `{py_platlib}` as a .py file (`py.install_sources`) or a directory (`install_subdir`) are the
    package's modules, by the dotted name of their destination."""
    build = next((a for a in map(_literal, args[:3]) if isinstance(a, str) and os.path.isabs(a)), None)
    if build is None:
        return []
    plan_path = os.path.join(build, _MESON_PLAN)
    if read is not None:
        read.append((plan_path, _stat(plan_path)))
    try:
        with open(plan_path, "rb") as f:
            plan = json.loads(f.read(_MESON_PLAN_BYTES))
    except (OSError, ValueError, RecursionError):
        return []
    found: list[tuple[str, str]] = []
    for entries in plan.values() if isinstance(plan, dict) else ():
        for source, entry in entries.items() if isinstance(entries, dict) else ():
            destination = entry.get("destination") if isinstance(entry, dict) else None
            parts = destination.replace("\\", "/").split("/") if isinstance(destination, str) else []
            if len(parts) < 2 or parts[0] not in ("{py_purelib}", "{py_platlib}") or not os.path.isabs(source):
                continue
            name = ".".join(parts[1:])
            if source.endswith(".py") and name.endswith(".py"):
                found.append((name[:-3].removesuffix(".__init__"), source))
            elif os.path.isdir(source) and all(p.isidentifier() for p in parts[1:]):
                found.append((name, source))
    return found


def _literal(node: ast.expr) -> object:
    """A literal's value; None for another expression (`{[]: 1}`: unhashable, TypeError)."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return None

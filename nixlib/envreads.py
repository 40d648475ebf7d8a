"""The environment variables a step's code files read by name, so that their values join its key.

A step that is not pure hands the host's environment to the scripts it runs. A script reading
`os.environ["SCALE"]` (R's `Sys.getenv("SCALE")`, a bash script's `$SCALE`, a Makefile's `$(SCALE)`) computes
something else under `SCALE=3` than under `SCALE=2`, while its text, which nixlib.codefiles keys, stays the same: a
result made under SCALE=2 was served under SCALE=3. Every front door (nw run, Luigi, the Snakemake executor) finds
here the names the code files a step runs read, and keys their values with nixlib.hostenv.named (a digest per
name, an unset variable apart from an empty one; none for a pure step, which sees none of them). A step whose code
reads no variable keeps the key it had.

A conservative textual scan: a name too many only keys it (one more run, never a stale result). A name computed
at run time (`os.environ[name]`, `Sys.getenv(var)`) cannot be seen.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Iterable

from nixlib import notebooks, pycode
from nixlib.codefiles import CodeFiles
from nixlib.command import expanded_variables

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
    script's (or notebook's) string constants where it reads the environment (nixlib.pycode: `os.environ["SCALE"]`,
    `os.getenv("SCALE", "1")`, `os.environ.get(VAR)` with `VAR = "SCALE"`) and the variables the commands among its
    strings expand (`subprocess.run("tool --scale $SCALE", shell=True)`); R's, Julia's and Rust's by their getenv
    forms; a makefile's `$(SCALE)`; a shell script's expansions (`$SCALE`, `${SCALE:-1}`:
    nixlib.command.expanded_variables, and every `$NAME`, even in single quotes or a comment: only keyed)."""
    text = data.decode("utf-8", "replace")
    names = {n for m in _R_GETENV.finditer(text) for n in _QUOTED_NAME.findall(m.group(1))}
    names.update(_OTHER_GETENV.findall(text))
    suffix = os.path.splitext(path)[1].lower() or _language(data)
    if suffix in (".py", ".ipynb"):
        names.update(_python_variables(path, data, text, suffix))
    elif os.path.basename(path).endswith(_MAKEFILES) or suffix == ".mk":  # (also a store copy: <hash>-Makefile)
        names.update(_MAKE_NAME.findall(text))
    elif suffix in _SHELL_SUFFIXES:
        names.update(expanded_variables(text), _DOLLAR_NAME.findall(text))
    return frozenset(names)


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


def _python_variables(path: str, data: bytes, text: str, suffix: str) -> set[str]:
    """read_variables of a Python script or notebook. One that does not compile (its run reports it) names every
    quoted name as read when it mentions the environment at all: more keyed, never less."""
    source = notebooks.code(data) if suffix == ".ipynb" else data
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return set(_QUOTED_NAME.findall(text)) if "environ" in text or "getenv" in text else set()
    environ: set[str] = set()
    strings: set[str] = set()
    pycode.uses([types.FunctionType(code, {})], strings=strings, environ=environ)
    names = {n for n in environ if _NAME.fullmatch(n)}
    names.update(n for t in strings if "$" in t for n in expanded_variables(t))
    return names


# {(absolute path, size, mtime, ctime, inode): names}: a file is scanned once per content in a process (a sweep's
# steps run the same script; a Snakemake run asks for each job), and again once it is edited (its signature changes).
_MEMO: dict[tuple[str, int, int, int, int], frozenset[str]] = {}
_MEMO_LIMIT = 4096


def file_variables(path: str) -> frozenset[str]:
    """read_variables of the file at `path`, memoised by its stat signature; none for a missing or unreadable file
    (the step cannot run it either)."""
    try:
        st = os.stat(path)
    except OSError:
        return frozenset()
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    known = _MEMO.get(key)
    if known is None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return frozenset()
        if len(_MEMO) >= _MEMO_LIMIT:  # (a long-lived process that saw many files: bounded memory)
            _MEMO.clear()
        known = _MEMO[key] = read_variables(path, data)
    return known


def files_variables(paths: Iterable[str]) -> frozenset[str]:
    """The names the code files at `paths` read (file_variables), together."""
    names: set[str] = set()
    for path in paths:
        names.update(file_variables(path))
    return frozenset(names)


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

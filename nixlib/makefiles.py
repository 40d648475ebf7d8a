"""The Makefiles a step runs make with (`make -C {HERE} all`, `cd {HERE} && make`, `subprocess.run(["make", "-C",
"sub"])`), which nixlib.codefiles keys as code with the scripts their recipes run; and a Makefile's rule targets,
which make writes (not data it reads)."""

from __future__ import annotations

import os
import re
import shlex
import types
from collections.abc import Sequence

from nixlib import pycode

NAMES = ("GNUmakefile", "makefile", "Makefile")  # what `make` reads without -f, in its order
_OPERAND = re.compile(r"'[^']*'|\"[^\"]*\"|\S+")

# `make` (or `gmake`) starting a simple command, with its operands (group 1)
_MAKE = re.compile(r"(?:^|[|;&(`\n])[ \t]*(?:[A-Za-z_]\w*=\S*[ \t]+)*(?:\S*/)?g?make(?![\w.-])"
                   r"((?:[ \t]+(?:'[^']*'|\"[^\"]*\"|[^\s;|&<>()`'\"]+))*)")


def of_command(command: str, cds: Sequence[str] = ()) -> list[str]:
    """The makefiles the `make` runs of a command read: `-f FILE` (`--file=`, `--makefile=`), else the first of
    NAMES in its directory: `-C DIR` (`--directory=`), else a directory the command changes into (`cds`:
    `cd /p && make`). Existing files only; the caller keys them as code (with the scripts their recipes run)."""
    if "make" not in command:
        return []
    found: list[str] = []
    for m in _MAKE.finditer(command):
        operands = [w.strip("'\"") for w in _OPERAND.findall(m.group(1))]
        directory, files, n = None, [], 0
        while n < len(operands):
            w, value = operands[n], operands[n + 1] if n + 1 < len(operands) else None
            for short, longs, into in (("-C", ("--directory",), "d"), ("-f", ("--file", "--makefile"), "f")):
                if w == short or w in longs:
                    got, n = value, n + 1
                elif w.startswith(short) and len(w) > 2:
                    got = w[2:]
                elif w.startswith(tuple(f"{x}=" for x in longs)):
                    got = w.split("=", 1)[1]
                else:
                    continue
                if got and into == "d":
                    directory = got if directory is None else os.path.join(directory, got)
                elif got:
                    files.append(got)
                break
            n += 1
        bases = [directory] if directory and os.path.isabs(directory) else \
            [os.path.join(d, directory or "") for d in cds]
        for base in bases:
            if files:
                found += [p for f in files for p in (os.path.normpath(os.path.join(base, f)),) if os.path.isfile(p)]
            else:
                found += [p for p in (os.path.join(base, n) for n in NAMES) if os.path.isfile(p)][:1]
    return [os.path.normpath(p) for p in dict.fromkeys(found)]


# A rule's targets (`results/a.csv out/b.csv: data/in.csv`): what make writes, not data it reads
_TARGETS = re.compile(r"^([^\t#:=\n][^:=\n]*?)[ \t]*::?(?![=])", re.MULTILINE)


def of_code(strings: Sequence[str], cds: Sequence[str]) -> list[str]:
    """of_command for Python code that runs make from the directories `cds` (where it runs): a shell command among its
    string constants (`os.system("make -C sub all")`) or an argument list starting with `make` (`subprocess.run(["make",
    "-C", "sub"])`: the constants in the order written, pycode.ordered_strings, the next 16 taken as its operands)."""
    if not any("make" in s for s in strings):
        return []
    commands = [s for s in strings if "make" in s and os.path.basename(s) not in ("make", "gmake")]
    commands += [" ".join(shlex.quote(w) for w in strings[i:i + 17]) for i, s in enumerate(strings)
                 if os.path.basename(s) in ("make", "gmake")]
    return list(dict.fromkeys(p for c in commands for p in of_command(c, cds)))


def of_script(path: str, cds: Sequence[str]) -> list[str]:
    """of_code for a Python script a step runs from the directories `cds` (`subprocess.run(["make", "-C", "sub"])` in
    scripts/build.py): its string constants in the order written. None for another file, or one that does not
    compile (the step reports it when it runs the script)."""
    if not path.endswith(".py"):
        return []
    with open(path, "rb") as f:
        data = f.read()
    if b"make" not in data:
        return []
    try:
        code = compile(data, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    return of_code(pycode.ordered_strings([types.SimpleNamespace(__code__=code)], joined=False), cds)


def targets(text: str) -> set[str]:
    """The targets of a Makefile's rules (`results/a.csv out/b.csv: data/in.csv`): files make writes."""
    return {w for m in _TARGETS.finditer(text) for w in m.group(1).split()}

"""The Makefiles a step runs make with (`make -C {HERE} all`, `cd {HERE} && make`, `subprocess.run(["make", "-C",
"sub"])`), which nixlib.codefiles keys as code with the scripts their recipes run; and a Makefile's rule targets,
which make writes (not data it reads)."""

from __future__ import annotations

import glob
import os
import re
import shlex
import types
from collections.abc import Sequence

from nixlib import pycode

NAMES = ("GNUmakefile", "makefile", "Makefile")  # what `make` reads without -f, in its order
_OPERAND = re.compile(r"'[^']*'|\"[^\"]*\"|\S+")

# `make` (or `gmake`) starting a simple command, also after a wrapper (`time make`, `env X=1 make`, `nice make`, `{
# make; }`): a word `make` after a blank counts (an `echo make -C sub` too: more keyed, never less), with its operands
# (group 1)
# (each part stops at a shell separator: no text takes longer than linear time)
_MAKE = re.compile(r"(?:^|(?<=[|;&(`{!\s]))(?:[A-Za-z_]\w*=[^\s|;&()`{}<>]*[ \t]+)*(?:[^\s/|;&()`{}<>!'\"]*/)*"
                   r"g?make(?![\w.-])((?:[ \t]+(?:'[^'\n]*'|\"[^\"\n]*\"|[^\s;|&<>()`'\"])+)*)")
_VALUED = "CfIoWE"  # make's short options that take a value (`-C DIR`, `-fFILE`, `-sC DIR`: after flags)
_LONG = {"--directory": "d", "--file": "f", "--makefile": "f", "--include-dir": "I"}
MAX_BYTES = 1 << 20  # a makefile read for the makefiles it includes or runs make with
_MAX_FOLLOWED = 256  # (makefiles followed through includes and recursive makes, at most)
# `include a.mk b.mk`, `-include $(DEPS)`, `sinclude local.mk` (group 1: the names)
_INCLUDE = re.compile(r"^ *(?:-|s)?include[ \t]+([^\n]*)", re.MULTILINE)
# `TOP := ..`, `RULES ?= $(TOP)/rules`, `export X = y` (a variable an include line may name)
_ASSIGN = re.compile(r"^ *(?:(?:export|override)[ \t]+)*([A-Za-z_][\w.-]*)[ \t]*(::?:?|\?|\+)?=[ \t]*([^\n]*)",
                     re.MULTILINE)
_VARIABLE = re.compile(r"\$[({]([A-Za-z_][\w.-]*)[)}]")
_GLOB = re.compile(r"[*?[]")
# `cd sub`, `cd "$(CURDIR)/sub"` in a recipe line (group 1, 2 or 3: the directory)
_CD = re.compile(r"(?:^|[\s;&|(`{])(?:cd|pushd)[ \t]+(?:--[ \t]+)?(?:'([^']+)'|\"([^\"]+)\"|([^\s;|&<>()'\"`]+))")


class Read(str):
    """A path of_command found that make reads (a Makefile, `-f build.rules`, an included `Makefile.common` or
    `config.mak`): code whatever its name (nixlib.codefiles.CodeFiles.named keys it as such; another word without a
    code suffix is not code)."""

    __slots__ = ()


def of_command(command: str, cds: Sequence[str] = ()) -> list[str]:
    """The makefiles the `make` runs of a command read: `-f FILE` (`--file=`, `--makefile=`), else the first of
    NAMES in its directory: `-C DIR` (`--directory=`), else a directory the command changes into (`cds`:
    `cd /p && make`); and, at any depth, the makefiles those include (`include ../common.mk`, relative to the
    directory make runs in, or in a directory `-I DIR` / `--include-dir=DIR` names) and those their recipes run make
    with (`$(MAKE) -C src`, `cd src && $(MAKE)`, `for d in $(SUBDIRS); do $(MAKE) -C $$d; done`, `$(SUBDIRS):` /
    `$(MAKE) -C $@`; a shell loop over words in the command is unrolled too). Existing files only; the caller keys
    them as code (with the scripts their recipes run)."""
    if "make" not in command:
        return []
    todo = [r for one in (_unrolled(command) if "for" in command else [command]) for r in _run_by(one, cds)]
    found: dict[str, None] = {}
    while todo and len(found) < _MAX_FOLLOWED:
        path, base, include_dirs, assigned = todo.pop(0)
        if path not in found:
            found[path] = None
            todo += _read_by(path, base, include_dirs, dict(assigned))
    return [Read(p) for p in found]


Make = tuple[str, str, tuple[str, ...], tuple[tuple[str, str], ...]]  # (makefile, the directory make runs in, its
# include directories, the variables its command line sets: _run_by)


def _run_by(command: str, cds: Sequence[str], include_dirs: tuple[str, ...] = (),
            assigned: dict[str, str] | None = None) -> list[Make]:
    """(makefile, the directory make runs in, the directories its include lines are looked for in besides, as written:
    its `-I DIR`, then those of the make running it, which make hands on in MAKEFLAGS; the variables set on its command
    line, `make SUBDIRS="a b"`, with those of the make running it, which MAKEFLAGS hands on too) of each `make` a
    command runs (of_command), not followed. A directory only make's run can tell (`-C $$d` in a loop over
    `$(shell ls)`, `-C $@` of targets from the environment) is each directory below where it would run that holds a
    makefile (_below): more keyed, never less."""
    found: list[Make] = []
    for m in _MAKE.finditer(command):
        operands = _words(m.group(1))
        directory, files, includes = _options(operands)
        variables = tuple({**(assigned or {}), **_assignments(operands)}.items())
        if directory and "$" in directory:
            bases = [b for d in cds for b in _below(os.path.normpath(d))]
            files = []
        else:
            bases = [directory] if directory and os.path.isabs(directory) else \
                [os.path.join(d, directory or "") for d in cds]
        dirs = tuple(dict.fromkeys([*includes, *include_dirs]))
        for base in map(os.path.normpath, bases):
            if files:
                found += [(p, base, dirs, variables) for f in files for p in (os.path.normpath(os.path.join(base, f)),)
                          if os.path.isfile(p)]
            else:
                found += [(p, base, dirs, variables) for p in (os.path.join(base, n) for n in NAMES)
                          if os.path.isfile(p)][:1]
    return list(dict.fromkeys(found))


def _words(text: str) -> list[str]:
    """A make's operands as the shell splits them (`SUBDIRS="one two"` is one word, its quotes removed)."""
    try:
        return shlex.split(text)
    except ValueError:  # (an unbalanced quote: the shell refuses it; taken as written)
        return [w.strip("'\"") for w in _OPERAND.findall(text)]


_ASSIGNED = re.compile(r"([A-Za-z_][\w.-]*)(?::{0,2}|\+)=(.*)", re.DOTALL)  # `SUBDIRS=a b` on make's command line


def _assignments(operands: list[str]) -> dict[str, str]:
    """The variables a `make`'s command line sets (`make -C build SUBDIRS="one two" OUT=x`), free of `$`: they
    override the makefile's own assignments (_values)."""
    out: dict[str, str] = {}
    for w in operands:
        m = _ASSIGNED.fullmatch(w) if "=" in w and not w.startswith("-") else None
        if m and "$" not in m.group(2):
            out[m.group(1)] = m.group(2)
    return out


def _below(base: str) -> list[str]:
    """The directories below `base` (three levels deep at most, hidden ones left out) that hold a makefile: where a
    sub-make whose directory only make's run can tell may run."""
    out: list[str] = []
    for here, dirs, files in os.walk(base):
        deep = here[len(base):].count(os.sep) >= 3
        dirs[:] = [] if deep else sorted(d for d in dirs if not d.startswith("."))
        if here != base and any(n in files for n in NAMES):
            out.append(here)
        if len(out) >= _MAX_FOLLOWED:
            break
    return out


def _options(operands: list[str]) -> tuple[str | None, list[str], list[str]]:
    """(the directory `-C` options give, joined; the `-f` files; the `-I` directories) among a `make`'s operands."""
    directory, files, includes, n = None, [], [], 0
    while n < len(operands):
        w, kind, got = operands[n], None, ""
        n += 1
        if w.startswith("--"):
            name, eq, got = w.partition("=")
            kind = _LONG.get(name)
            if kind and not eq and n < len(operands):
                got, n = operands[n], n + 1
        elif w.startswith("-"):
            for i, c in enumerate(w[1:], 2):
                if c in "jl":  # (-j4, -l2.5: an optional number of its own)
                    break
                if c in _VALUED:
                    kind, got = {"C": "d", "f": "f", "I": "I"}.get(c), w[i:]
                    if not got and n < len(operands):
                        got, n = operands[n], n + 1
                    break
        if got and kind == "d":
            directory = got if directory is None else os.path.join(directory, got)
        elif got and kind == "f":
            files.append(got)
        elif got and kind == "I":
            includes.append(got)
    return directory, files, includes


def _read_by(makefile: str, base: str, include_dirs: tuple[str, ...] = (), assigned: dict[str, str] | None = None
             ) -> list[Make]:
    """(makefile, the directory make runs in, the include directories) of the makefiles a makefile that make runs in
    `base` reads in turn: those its include lines name (relative to `base`, as make takes them, or to its own
    directory: more keyed, never less; then in the `include_dirs`, `-I DIR`, relative to `base` as make takes them
    after `-C`, in a sub-make too; a simple variable it sets expanded,
    `$(TOP)/rules.mk` with an unknown one taken beside) and those its recipes run make with (`$(MAKE) -C src`, run in
    `base`; `cd src && $(MAKE)`, `cd $(SUB); make all`: in the directory the recipe line changes into; `cd $$d`, a
    directory only make's run can tell: each below `base` with a makefile). `assigned`: the variables set on the
    command line of the make that reads it (_run_by)."""
    try:
        with open(makefile, "rb") as f:
            text = f.read(MAX_BYTES).decode(errors="replace")
    except OSError:
        return []
    text = text.replace("\r\n", "\n").replace("\\\n", " ")
    found: list[Make] = []
    if "include" not in text and not any(line.startswith("\t") and "make" in line.lower()
                                         for line in text.split("\n")):
        return []
    values = _values(text, base, assigned or {})
    variables = tuple((assigned or {}).items())
    for line in _INCLUDE.findall(text):
        for word in line.split("#")[0].split():
            word = _VARIABLE.sub(lambda v: values.get(v.group(1), v.group(0)), word)
            if "$" in word:
                word = re.split(r"[)}]", word)[-1].lstrip("/")
                if not word or "$" in word:
                    continue
            for d in dict.fromkeys([base, os.path.dirname(makefile), *(os.path.join(base, i) for i in include_dirs)]):
                path = os.path.normpath(os.path.join(d, word))
                paths = sorted(glob.glob(os.path.join(glob.escape(d), word)))[:_MAX_FOLLOWED] \
                    if _GLOB.search(word) else [path]
                found += [(os.path.normpath(p), base, include_dirs, variables) for p in paths if os.path.isfile(p)]
    for line, targets in _recipes(text, values):  # (each line runs in a shell of its own, in `base`)
        for one in _expanded(line, values, base, targets):
            cds = [base]
            for m in _CD.finditer(one) if "cd" in one else ():
                d = m.group(1) or m.group(2) or m.group(3)
                if "$" in d:  # (`cd $$d && $(MAKE)` over words only make's run can tell)
                    cds = list(dict.fromkeys([*cds, *_below(base)]))[:_MAX_FOLLOWED]
                elif not d.startswith(("~", "-")):
                    cds = list(dict.fromkeys([*cds, *(os.path.normpath(os.path.join(c, d)) for c in cds)]))[:64]
            found += _run_by(one, cds, include_dirs, assigned)
    return found


def _values(text: str, base: str, assigned: dict[str, str]) -> dict[str, str]:
    """The variables a makefile sets that _read_by can expand (`TOP := ..`, `SUBDIRS = a b`, `SUBDIRS += c`,
    `DIRS := $(wildcard */)`: make's functions _functions knows, run in `base`); one whose value holds anything else
    (`$(shell ...)`, an unknown variable) is left out. Those `assigned` on make's command line win over the
    makefile's, unless it sets them with `override`, as in make."""
    values = {"CURDIR": base, **assigned}
    for m in _ASSIGN.finditer(text):
        if m.group(1) in assigned and "override" not in m.group(0)[:m.start(1) - m.start(0)]:
            continue
        value = _functions(_VARIABLE.sub(lambda v: values.get(v.group(1), v.group(0)),
                                         m.group(3).split("#")[0].strip()), base)
        if "$" not in value:
            values[m.group(1)] = f"{values[m.group(1)]} {value}" if m.group(2) == "+" and m.group(1) in values \
                else value
    return values


def _recipes(text: str, values: dict[str, str]) -> list[tuple[str, list[str]]]:
    """(recipe line, the targets of its rule, expanded) of each recipe line that may run make: `$@` in
    `$(SUBDIRS):` / `\t$(MAKE) -C $@` (GNU make's manual's recursive make) is each of them."""
    out: list[tuple[str, list[str]]] = []
    targets: list[str] = []
    for line in text.split("\n"):
        if line.startswith("\t"):
            if "make" in line.lower():
                out.append((line, targets))
        elif line.strip() and not line.lstrip().startswith("#"):
            m = _TARGETS.match(line)
            words = _VARIABLE.sub(lambda v: values.get(v.group(1), v.group(0)), m.group(1)).split() if m else []
            targets = [w for w in words if "$" not in w and "%" not in w and not w.startswith(".")][:64]
    return out


def _expanded(line: str, values: dict[str, str], base: str, targets: Sequence[str] = ()) -> list[str]:
    """A recipe line as the shell runs it: `$(MAKE)` as make, the makefile's variables and functions expanded, `$$`
    as `$`, `$@` as each of its rule's `targets`, a shell loop over words (`for d in $(SUBDIRS); do $(MAKE) -C $$d;
    done`) as its body once for each (at most 64 lines)."""
    line = re.sub(r"\$[({]MAKE[)}]", "make", line.replace("$$", "\0"))
    line = _functions(_VARIABLE.sub(lambda v: values.get(v.group(1), v.group(0)), line), base)
    lines = [line.replace("$@", t) for t in targets] if "$@" in line and targets else [line]
    out: list[str] = []
    for one in (x.replace("\0", "$") for x in lines):
        out += _unrolled(one, base) if "for" in one else [one]
    return out[:64]


# `for d in a b c; do BODY; done` (group 1: the variable, 2: the words, 3: the body)
_FOR = re.compile(r"\bfor[ \t]+([A-Za-z_]\w*)[ \t]+in[ \t]+([^;|&()`<>\n]*?)[ \t]*(?:;|\n)[ \t]*do\b"
                  r"([^\n]*?)(?:;[ \t]*)?\bdone\b")


_UNKNOWN = "${NW_UNKNOWN}"  # a loop word only the shell's run can tell (_unrolled), as _run_by sees one


def _unrolled(line: str, base: str | None = None) -> list[str]:
    """A shell line with its `for VAR in WORDS; do BODY; done` loops written out: the line once per word, the loop
    replaced by its body with `$VAR`, `${VAR}` as the word (each loop of the line in turn; a glob, `for d in */`,
    as the shell expands it in `base`, the directory a recipe runs in; words holding `$`, or a glob without `base`,
    are not known: the body is written once more with _UNKNOWN for the variable)."""
    m = _FOR.search(line)
    if m is None:
        return [line]
    var, body = m.group(1), m.group(3)
    written = _OPERAND.findall(m.group(2))
    words = [w for w in written if "$" not in w]
    words = [x for w in words for x in (_shell_glob(w, base) if _GLOB.search(w) and w[0] not in "'\"" else
                                        [w.strip("'\"")])][:64]
    if any("$" in w or (base is None and _GLOB.search(w)) for w in written):
        words.insert(0, _UNKNOWN)  # (a word only the run can tell: its body once more, for _run_by to answer)
    pattern = re.compile(r"\$(?:\{" + var + r"\}|" + var + r"(?!\w))")
    out: list[str] = []
    for w in words:
        out += _unrolled(line[:m.start()] + pattern.sub(w.replace("\\", "\\\\"), body) + line[m.end():], base)
        if len(out) >= 64:
            break
    return out[:64]


def _shell_glob(word: str, base: str | None) -> list[str]:
    """The words a shell glob (`*/`, `sub*`) expands to in `base`, relative as written; none without `base`."""
    if base is None or os.path.isabs(word):
        return []
    return [os.path.relpath(p, base) + ("/" if p.endswith("/") else "")
            for p in sorted(glob.glob(os.path.join(glob.escape(base), word)))[:_MAX_FOLLOWED]]


# make's functions _functions expands: `$(wildcard */)`, `$(dir $(wildcard */Makefile))`, `$(patsubst %/,%,X)`
_FUNCTION = re.compile(r"\$\((wildcard|dir|notdir|sort|strip|patsubst|addprefix|addsuffix)[ \t]+([^$()]*)\)")
_FOREACH = re.compile(r"\$\(foreach[ \t]+([A-Za-z_][\w.-]*),([^$(),]*),((?:[^()]|\([^()]*\))*)\)")


def _functions(text: str, base: str) -> str:
    """`text` with the calls of make's functions that name directories and files (_FUNCTION, innermost first, and
    `$(foreach d,a b,$(MAKE) -C $(d);)`) expanded as make would in `base`; others are left as written."""
    for _ in range(8):
        if "$(" not in text:
            break
        new = _FOREACH.sub(lambda m: " ".join(m.group(3).replace(f"$({m.group(1)})", w).replace(
            f"${{{m.group(1)}}}", w) for w in m.group(2).split()[:64]), _FUNCTION.sub(lambda m: _function(
                m.group(1), m.group(2), base), text))
        if new == text:
            break
        text = new
    return text


def _function(name: str, args: str, base: str) -> str:
    """One call of make's functions (_FUNCTION) with arguments free of `$`."""
    if name == "wildcard":
        return " ".join(os.path.relpath(p, base) + ("/" if p.endswith("/") else "") for w in args.split()
                        for p in sorted(glob.glob(os.path.join(glob.escape(base), w)))[:_MAX_FOLLOWED])
    words = args.split()
    if name == "dir":
        return " ".join((os.path.dirname(w) or ".") + "/" for w in words)
    if name == "notdir":
        return " ".join(os.path.basename(w) for w in words)
    if name in ("sort", "strip"):
        return " ".join(sorted(set(words)) if name == "sort" else words)
    parts = args.split(",", 2)
    if name in ("addprefix", "addsuffix") and len(parts) == 2:
        return " ".join(parts[0] + w if name == "addprefix" else w + parts[0] for w in parts[1].split())
    if name == "patsubst" and len(parts) == 3:  # (PATTERN,REPLACEMENT,TEXT)
        return " ".join(_patsubst(parts[0].strip(), parts[1].strip(), w) for w in parts[2].split())
    return f"$({name} {args})"  # (not known: left as written)


def _patsubst(pattern: str, replacement: str, word: str) -> str:
    """make's $(patsubst) of one word, for a pattern holding one `%` (else the word if it equals the pattern)."""
    if "%" not in pattern:
        return replacement if word == pattern else word
    prefix, _, suffix = pattern.partition("%")
    if word.startswith(prefix) and word.endswith(suffix) and len(word) >= len(prefix) + len(suffix):
        stem = word[len(prefix):len(word) - len(suffix)]
        return replacement.replace("%", stem, 1)
    return word


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
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:  # (unreadable, a directory: the step cannot run it either)
        return []
    if b"make" not in data:
        return []
    try:
        code = compile(data, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    return of_code(pycode.ordered_strings([types.SimpleNamespace(__code__=code)], joined=False), cds)


def targets(text: str) -> set[str]:
    """The targets of a Makefile's rules (`results/a.csv out/b.csv: data/in.csv`): files make writes. (A recipe's
    continued line, `\\` then `  data/x.csv -v a:b`, is of its recipe: joined first, as make does.)"""
    text = text.replace("\r\n", "\n").replace("\\\n", " ")
    return {w for m in _TARGETS.finditer(text) for w in m.group(1).split()}

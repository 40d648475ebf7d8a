"""Code files a step runs without declaring them: their content enters the step's key.

A command (`python scripts/clean.py {input}`) or a Python step's code (`subprocess.run(["Rscript",
"plot.R"])`) often runs a script of the project that no front door declares as an input. What it computes
depends on that script as much as on the command text, so `CodeFiles.named` keys it: among the words a
step names, those that are code files of the project — a script by its suffix (`CODE_SUFFIXES`) or an
executable program (a `#!` script, an ELF binary), inside one of the step's roots (the working directory,
the Snakefile's or the task module's directory), and none of the paths the step declares (inputs,
outputs, logs) — each by its
content; a Python file with the local modules it imports (a module or package next to it, followed
transitively: Python puts a script's directory first on its import path). Data files are declared; the
Snakemake and Luigi front doors also key the existing project files among a step's path-like words
(`data_words`, `data_candidates`), except those it writes by a spelling seen here (a redirection, a `tee`,
`open(p, "w")`: nixlib.pycode.written_strings), whose content may change with every run (a log it appends to)
and would make the step never hit.
"""

from __future__ import annotations

import ast
import bisect
import collections
import functools
import glob
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from pathlib import Path

from nixlib import base32, configfiles, makefiles, notebooks, pycode
from nixlib.recipe import digest
from nixlib.statmemo import StatMemo
from nixlib.trees import UnstorableFile

CODE_SUFFIXES = frozenset({".py", ".r", ".rmd", ".sh", ".bash", ".zsh", ".pl", ".pm", ".rb", ".jl", ".awk",
                           ".sed", ".js", ".mjs", ".ts", ".lua", ".m", ".do", ".sql", ".jar", ".ipynb", ".nf", ".wdl",
                           ".mk"})
# Hashing a file this user cannot read raises one of these (nar: UnreadableFile); the step cannot read it either
UNREADABLE = (OSError, UnstorableFile)
# Scripts whose named code files beside them are keyed with them (CodeFiles.digest): every code file but Python's
# (keyed with the modules it imports) and a jar; a file without a suffix that starts with `#!` too.
_NOT_NAMING = frozenset({".py", ".jar"})
_TAIL = re.compile(r"[$})][^/]*/|[})]")  # `$DIR/`, `${X%/*}/`, `$(dirname "$0")/` (split off: its tail is beside)
MAX_SCRIPT_BYTES = 1 << 20  # a shell script's head read for the code files it names
_SEPARATORS = r"\s;|&<>()'\"`=,:"  # what ends a path-like word of a shell command (an option's value after `=` too)
_WORD = re.compile(f"[^{_SEPARATORS}]+")
_SEPARATOR = re.compile(f"[{_SEPARATORS}]")
_WORD_START_SLASH = re.compile(f"(?<![^{_SEPARATORS}])/")  # a `/` that starts a word (or a quoted text)


def words(command: str) -> list[str]:
    """The path-like words of a shell command, each once, in order."""
    return list(dict.fromkeys(_WORD.findall(command)))


_QUOTED = re.compile(r"'([^']+)'|\"([^\"$`\\\\]+)\"")  # a quoted word without expansions: a path with a space


def command_paths(command: str, store_root: str) -> list[str]:
    """The absolute paths a command names outside the store (whose paths are its references, keyed as inputs):
    a command run in its output directory names a project file only this way. A quoted path counts whole
    (`python "/home/me/my project/train.py"`, `shlex.quote(...)`): a project whose path has a space is named so,
    and the words of `words` stop at the space."""
    store = store_root + os.sep
    return [] if _only_store_paths(command, store) else _paths_by_words(command, store)


def _paths_by_words(command: str, store: str) -> list[str]:
    """command_paths the general way: every word and quoted text, each tested."""
    found = words(command) + [m.group(1) or m.group(2) for m in _QUOTED.finditer(command)]
    return [w for w in dict.fromkeys(found) if os.path.isabs(w) and not w.startswith(store)]


def _only_store_paths(command: str, store: str) -> bool:
    """True if every absolute path the command could name starts with `store` (the common case: a command
    that names only its inputs and `$out`), found in one regex pass instead of splitting it into words. Every
    word and every quoted text starts at the start of the command or after one of `_WORD`'s separators (a
    quote is one), so an absolute one starts at such a `/`; exact only if the store's own path holds no
    separator (else a word ends inside it), so such a store takes the word-by-word way."""
    if _SEPARATOR.search(store):
        return False
    return all(command.startswith(store, m.start()) for m in _WORD_START_SLASH.finditer(command))


# A word that may name a data file: it has a `/`, or ends in a suffix starting with a letter (`ref.fa`, `x.tsv.gz`;
# not `0.5`, `1e-3`, `--min`). The target of an output redirection (`> log.txt`, `2>> all.log`) is written, not read,
# and so are the files a `tee` that starts a command writes (`... | tee -a logs/all.txt`), and what `touch`, `rm`,
# `mkdir`, or the destination of `cp`/`mv`/`ln` names: keyed by content, such a file (appended to, holding a time,
# or there only after a run) changed at every run, and the step never hit again (or once more).
_DATA_NAME = re.compile(r"/|\.[A-Za-z][A-Za-z0-9_]*\Z")
_REDIRECTED = re.compile(r"(?<![<>])[0-9&]?>>?\|?\s*([^\s;|&<>()'\"`]+)")
# A command whose operands it writes (`tee log`, `touch STARTED`, `rm -f x`, `mkdir -p out`; group 1), or whose last
# operand it writes (`cp a b`, `mv a b`, `ln -s a b`, or the `-t DIR` value: `cp -t out/ a`; group 2), at the start of
# a simple command; group 3: the operands. (`touch` keeps a file's content: one the command also reads stays keyed.)
_WRITES = re.compile(r"(?:^|[|;&(`\n])[ \t]*(?:(tee|touch|rm|rmdir|mkdir|truncate)|(cp|mv|ln|install))"
                  r"((?:[ \t]+(?:'[^']*'|\"[^\"]*\"|[^\s;|&<>()`'\"]+))+)")
_OPERAND = re.compile(r"'[^']*'|\"[^\"]*\"|\S+")
# A file a command only tests (`[ ! -e /p/GO ]`, `test -f done.flag`): its content is not read (a flag another
# process creates while the step runs would change the key under it).
_TESTED = re.compile(r"(?:\[\[?|(?<![^\s;&|(`])test)[ \t]+(?:![ \t]+)?-[efdsrwxLhpSbcO][ \t]+"
                     r"(?:'([^']+)'|\"([^\"$`\\]+)\"|([^\s;|&<>()'\"`\]]+))")
_WRITER_NAME = re.compile(r"\b(?:tee|touch|rm|rmdir|mkdir|truncate|cp|mv|ln|install)\b")  # (a cheap test first)
# The value of an option that names what a program writes (`python train.py --save /p/model.pt`, `tool -o x.csv`,
# `--output=/p/preds.csv`, `--out-file`, `--save_path`, `--dump-json`), and the files `sed -i` edits in place:
# keyed by content, such a file changed with every run and the step never hit. Only when the command names the
# file nowhere else (a file it also reads stays keyed).
_WRITE_OPTION = re.compile(r"(?:^|[\s;&|(`])(?:-o|--(?:out|output|save|dump|write)(?:file|dir|path|name)?"
                           r"(?:[-_][A-Za-z0-9_-]*)?)(?:[ \t]+|=)"
                           r"(?:'([^']+)'|\"([^\"$`\\]+)\"|([^\s;|&<>()'\"`]+))")
_SED = re.compile(r"(?:^|[|;&(`\n])[ \t]*sed((?:[ \t]+(?:'[^']*'|\"[^\"]*\"|[^\s;|&<>()`'\"]+))+)")
_SED_IN_PLACE = re.compile(r"-[a-zA-Z]*i.*|--in-place(?:=.*)?")  # (`-i.bak`, `-Ei`, `--in-place=.orig`)
# Programs whose `-o` is no output file (`unzip -o data/raw.zip`: overwrite, then the archive it reads; `grep -o`,
# `ssh -o Opt=v`, `tar -x -o`): the word after it is not left out as written.
_O_NOT_OUTPUT = re.compile(r"(?<![\w.-])(?:unzip|funzip|grep|egrep|fgrep|zgrep|rg|ssh|scp|sftp|tar|cpio|mount|set|"
                           r"ls|ps|join)(?![\w.-])")
_COMMAND_SEPARATOR = re.compile(r"[|;&(`\n]")


def looks_like_data(word: str) -> bool:
    """A word that may name a data file (`_DATA_NAME`): it has a `/`, or a suffix starting with a letter."""
    return _DATA_NAME.search(word) is not None


@functools.lru_cache(maxsize=4096)
def data_words(text: str) -> tuple[str, ...]:
    """The words of a text a step is given (a parameter's string `-a file:config/adapters.fa --min 3`, a shell
    command) that may name a data file it reads: `words` (split on whitespace, quotes, `=`, `:`, `,`, so also the
    value of `--ref=data/ref.fa` and the path of `file:data/x.fa`) and quoted texts (a path with a space), that
    look like a path (`_DATA_NAME`), minus the files it writes (`_REDIRECTED`, `_WRITES`; `_WRITE_OPTION`, `_SED`
    when named nowhere else) or only tests for (`_TESTED`). Pure string work,
    memoised: the caller stats only these (`CodeFiles.files_named`)."""
    found = [w for w in words(text) if _DATA_NAME.search(w)]
    if "'" in text or '"' in text:
        found += [q for m in _QUOTED.finditer(text) for q in (m.group(1) or m.group(2),) if _DATA_NAME.search(q)]
    written = set(_REDIRECTED.findall(text)) if ">" in text else set()
    once = []  # written by a spelling that may also read (an option's value, `sed -i`, `touch`), or only tested
    if _WRITER_NAME.search(text):
        for m in _WRITES.finditer(text):
            operands = [w.strip("'\"") for w in _OPERAND.findall(m.group(3))]
            files = [w for w in operands if not w.startswith("-")]
            if m.group(1) == "touch":
                once += files
            else:
                written.update(files if m.group(1) else _destination(operands, files))
    if "-o" in text or "--" in text:
        readers = [r.start() for r in _O_NOT_OUTPUT.finditer(text)] if "-o" in text else []
        cuts = [c.start() for c in _COMMAND_SEPARATOR.finditer(text)] if readers else []
        once += [m.group(1) or m.group(2) or m.group(3) for m in _WRITE_OPTION.finditer(text)
                 if not (readers and _o_of_reader(m, readers, cuts))]
    if "sed" in text:
        once += [w for m in _SED.finditer(text) for w in _sed_in_place(m.group(1))]
    if "[" in text or "test" in text:
        once += [m.group(1) or m.group(2) or m.group(3) for m in _TESTED.finditer(text)]
    if once:  # (named nowhere else; only a word found can matter)
        counts = collections.Counter(once)
        written.update(w for w in counts.keys() & set(found) if text.count(w) == counts[w])
    return tuple(dict.fromkeys(w for w in found if w not in written))


def _destination(operands: list[str], files: list[str]) -> list[str]:
    """What `cp`/`mv`/`ln`/`install` writes: the `-t DIR` (`--target-directory=DIR`) value, else its last operand."""
    for n, w in enumerate(operands):
        if w in ("-t", "--target-directory") and n + 1 < len(operands):
            return [operands[n + 1]]
        if w.startswith("--target-directory=") or (w.startswith("-t") and len(w) > 2 and w[1] != "-"):
            return [w.split("=", 1)[1] if w.startswith("--") else w[2:]]
    return files[-1:]


def _o_of_reader(m: re.Match[str], readers: list[int], cuts: list[int]) -> bool:
    """Whether a `_WRITE_OPTION` match is the `-o` of a program whose `-o` names no output: one of `readers` (where
    `_O_NOT_OUTPUT` matched) lies in its simple command, between the last of `cuts` (separators) before it and it."""
    if not m.group(0).lstrip(" \t\n;&|(`").startswith("-o"):
        return False
    n = bisect.bisect_left(cuts, m.start())
    first = cuts[n - 1] if n else -1
    k = bisect.bisect_left(readers, first + 1)
    return k < len(readers) and readers[k] < m.start()


def _sed_in_place(operands: str) -> list[str]:
    """The files a `sed -i` edits: its operands after the script (none without -i; a `-e`/`-f` value is not one)."""
    words = [w.strip("'\"") for w in _OPERAND.findall(operands)]
    if not any(_SED_IN_PLACE.fullmatch(w) for w in words):
        return []
    files, scripted, skip = [], False, False
    for w in words:
        if skip:
            skip = False
        elif w in ("-e", "-f", "--expression", "--file"):
            scripted = skip = True
        elif w.startswith("-") and w != "-":
            scripted = scripted or w.startswith(("--expression=", "--file="))
        elif not scripted:
            scripted = True  # the script
        else:
            files.append(w)
    return files


_NOT_DATA_SUFFIXES = CODE_SUFFIXES | {".log"}
_GLOB = re.compile(r"[*?]|\[[^\]/]+\]")  # a shell or Python glob pattern in a path-like word
_GLOB_LIMIT = 100_000  # (a pattern matching more keys the first ones, in sorted order)


LISTED = "/\x00"  # "<directory>/\x00<how>[/<pattern>]": a listing word (listing_word); no path holds a NUL


def listing_word(directory: str, how: str, pattern: str = "") -> str:
    """A word expand_globs replaces by what one listing API yields now, exactly as the code's call would: `entries`
    (os.listdir, os.scandir, Path.iterdir: the directory's entries, hidden ones too), `walk` (os.walk: every file
    below it at any depth, hidden ones and those in hidden directories too), `pathglob`/`rglob` (Path(directory).
    glob(pattern) / .rglob(pattern): pathlib's `*` matches hidden names), `recursive` (glob.glob(directory,
    recursive=True): `directory` is the whole pattern; glob's `*` and `**` skip hidden names)."""
    return f"{directory}{LISTED}{how}" + (f"/{pattern}" if pattern else "")


def expand_globs(words: Iterable[str]) -> list[str]:
    """The words, each glob pattern among them (`data/*.csv`) replaced by the paths it matches now (sorted; hidden
    files only when the pattern names them, as the shell does), each listing word (listing_word) by what its
    listing yields now."""
    return [m for w in words for m in (_listing(w) if LISTED in w else _matches(w) if _GLOB.search(w) else (w,))]


def _listing(word: str) -> list[str]:
    """What a listing word's API yields now (sorted, at most _GLOB_LIMIT): the same call the code makes, so a
    hidden file or one at any depth is there exactly when the code would read it."""
    directory, _, rest = word.partition(LISTED)
    how, _, pattern = rest.partition("/")
    try:
        if how == "entries":
            found = [os.path.join(directory, n) for n in os.listdir(directory)]
        elif how == "walk":
            found = [os.path.join(top, n) for top, _, names in os.walk(directory) for n in names]
        elif how in ("pathglob", "rglob") and pattern:
            matched = Path(directory).glob(pattern) if how == "pathglob" else Path(directory).rglob(pattern)
            found = [str(p) for p in matched]
        elif how == "recursive":
            found = glob.glob(directory, recursive=True)
        else:
            return []
    except (OSError, ValueError, NotImplementedError, re.error):  # (gone, unreadable, a malformed pattern)
        return []
    return sorted(found)[:_GLOB_LIMIT]


def _matches(pattern: str) -> list[str]:
    try:
        return sorted(glob.glob(pattern))[:_GLOB_LIMIT]
    except (OSError, ValueError, re.error):  # (an unreadable directory, a malformed pattern: matches nothing here)
        return []


def script_data_words(path: str) -> tuple[str, ...]:
    """data_candidates of a project script: a Python script's string constants but those it writes
    (pycode.written_strings: `df.to_csv("out.csv")`, `torch.save(model, "ckpt.pt")`), any other script's text (an R
    script's `read.csv("data/x.csv")`, a shell script's `"$DIR/data/ref.tsv"`; data_words leaves out what a shell
    script writes). Unreadable or not Python
    that compiles: none (the step will say so when it runs)."""
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".ipynb"):  # a notebook: its code cells' (`pd.read_csv("data/x.csv")`), as a Python script's
        data = notebooks.code(data)
    elif not path.endswith(".py"):
        text = data.decode("utf-8", "replace")
        written: set[str] = set()
        if _makefile(path, data):  # a rule's targets are written: left out
            written = makefiles.targets(text)
        # a path written through the script's own location (`"$DIR/data/ref.tsv"`, `"$(dirname "$0")/data/x"`): its
        # tail, which the caller resolves beside the script
        tails = [_TAIL.split(w)[-1].lstrip("/") for w in words(text) if w.startswith("/") or "$" in w]
        return tuple(dict.fromkeys([*data_candidates([text], written),
                                    *data_candidates([t for t in tails if t], written)]))
    try:
        code = compile(data, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # (too deeply nested: Python cannot run it either)
        return ()
    return data_candidates(pycode.strings(code), pycode.written_strings(code))


def _makefile(path: str, data: bytes) -> bool:
    """Whether a project file read for its data words is a makefile: by its name (`Makefile`, `rules.mk`,
    `config.mak`), or one a step's code is only because make reads it (makefiles.Read, `include Makefile.common`:
    no code suffix, no `#!` script or binary)."""
    suffix = os.path.splitext(path)[1].lower()
    return os.path.basename(path) in makefiles.NAMES or suffix in (".mk", ".mak", ".make") or \
        (suffix not in CODE_SUFFIXES and data[:2] != b"#!" and data[:4] != b"\x7fELF")


def command_data_paths(command: str, store_root: str, directories: Iterable[str] = ()) -> list[str]:
    """The paths of the data files a shell command may read without declaring them, for a front door whose steps
    run in their output directory (nw run, a Luigi command()): its absolute path-like words outside the store
    (command_paths) that data_words keeps (not the target of a redirection or of `tee`), and its relative ones
    joined to each directory the command changes into (`directories`: `cd /project && tool --ref data/ref.fa`);
    never a code file (keyed as code) nor a `.log`. Pure string work: the caller stats these."""
    absolute = set(command_paths(command, store_root))  # (first: most commands name no path outside the store)
    if not absolute:
        return []
    data = data_words(command)
    found = [w for w in data if w in absolute]
    found += [os.path.normpath(os.path.join(d, w)) for d in directories for w in data if not os.path.isabs(w)]
    return [p for p in dict.fromkeys(found) if os.path.splitext(p)[1].lower() not in _NOT_DATA_SUFFIXES]


def data_candidates(texts: Iterable[str], skip: Container[str] = ()) -> tuple[str, ...]:
    """The words among the string constants of a step's code (a Luigi task's, a `run:` block's, a script's) that may
    name a data file it reads, for the front doors to key each that is an existing project file by content: each
    one-line text and the path-like words of every text (data_words: a multi-line shell command gives its words),
    not a code file (keyed as code), a `.log`, a `{}` or `%` pattern, a directory (`out/`), or a word in `skip` (a
    path the code writes, nixlib.pycode.written_strings: content that changes at every run would make the step
    never hit). Pure string work."""
    found = (w for t in texts if t for w in ((t, *data_words(t)) if "\n" not in t and len(t) <= 4096
                                               else data_words(t) if "\n" in t else ()))
    return tuple(w for w in dict.fromkeys(found) if looks_like_data(w) and w not in skip and "{" not in w
                 and "%" not in w and not w.endswith("/") and "\n" not in w
                 and os.path.splitext(w)[1].lower() not in _NOT_DATA_SUFFIXES)


_MODULE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\Z")


def run_modules(words: Sequence[str]) -> list[str]:
    """The modules `python -m NAME` runs, among words in the order written (`-m NAME`, `-mNAME`): a command's
    (`_WORD.findall`, not the deduplicated `words`) or the string constants of Python code in order."""
    found = []
    for i, word in enumerate(words):
        name = words[i + 1] if word == "-m" and i + 1 < len(words) else word[2:] if word.startswith("-m") else ""
        if _MODULE.match(name):
            found.append(name)
    return found


# `python3 -c 'import helpers; …'` (also after other options: `python -u -c "…"`): the code, group 1, 2 or 3
_INLINE = re.compile(r"(?:^|[\s;&|(`/])python[0-9.]*(?:[ \t]+-[A-Za-bd-z]+)*[ \t]+-c[ \t]*"
                     r"(?:'([^']*)'|\"((?:[^\"\\]|\\.)*)\"|([^\s;|&<>()'\"`]+))")


def inline_modules(command: str, directories: Iterable[str]) -> list[str]:
    """The files of the project modules the Python code a command gives with `-c` imports (`cd /p && python3 -c
    'import helpers; helpers.main()'`), found in `directories` (where its Python imports from: a directory it
    changes into, PYTHONPATH's, an editable install's): a module, or every file of a package. The caller keys each
    as code, with what it imports."""
    if "-c" not in command or "python" not in command:
        return []
    names: set[str] = set()
    for m in _INLINE.finditer(command):
        code = m.group(1) if m.group(1) is not None else m.group(2) if m.group(2) is not None else m.group(3)
        names |= imported_names(code.encode(errors="replace")) if "import" in code else set()
    return [p for d in directories for n in sorted(names) for p in module_files(d, n)]


def command_modules(command: str) -> list[str]:
    """The modules a shell command runs with `python -m NAME` (see run_modules)."""
    return run_modules(_WORD.findall(command)) if "-m" in command else []


def module_paths(names: Iterable[str], directory: str) -> list[str]:
    """The files of the project modules `python -m NAME` finds in `directory` (first on its import path when
    run there): NAME's top-level module, or every .py file of its package. Editing any of them changes what
    runs; each is keyed by content with the local modules it imports (`CodeFiles.digest`)."""
    return [p for name in dict.fromkeys(names) for p in module_files(directory, name.split(".")[0])]


def _names_code(path: str) -> bool:
    """Whether a code file's digest includes the code files it names beside it (see CodeFiles._shell_named)."""
    if os.path.basename(path) in makefiles.NAMES:
        return True
    suffix = os.path.splitext(path)[1].lower()
    if suffix in CODE_SUFFIXES:
        return suffix not in _NOT_NAMING
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    # no suffix: a `#!` script; another suffix: a file keyed as code only because make reads it (makefiles.Read,
    # `include Makefile.common`: its recipes run scripts), or a `#!` script, not a binary
    return head[:2] == b"#!" if not suffix else head != b"\x7fELF"


def looks_like_code(word: str) -> bool:
    """A word worth a stat: a path (it has a `/`) or a file name with a code suffix (a bare word is
    otherwise a program found on PATH, an option or an argument)."""
    return "/" in word or os.path.splitext(word)[1].lower() in CODE_SUFFIXES


def is_program(path: str) -> bool:
    """An executable that is a program: a script with a `#!` line or an ELF binary. (On a filesystem where
    every file is executable, a data file, say a log the command appends to, must not count.)"""
    if not os.access(path, os.X_OK):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == b"\x7fELF" or head[:2] == b"#!"


def sys_path_module_dirs(script: str, roots: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """[(directory, module names found there)] of a Python script that names `sys.path`: its imports that are
    neither beside it nor in the standard library, found in the directories such a line may add (sys_path_dirs)."""
    with open(script, "rb") as f:
        data = f.read()
    if b"sys.path" not in data:
        return []
    here = os.path.dirname(os.path.abspath(script))
    names = {n for n in imported_names(data)
             if n not in sys.stdlib_module_names and not module_files(here, n, namespace=False)}
    out = []
    for directory in sys_path_dirs(here, roots) if names else []:
        found = tuple(sorted(n for n in names if module_files(directory, n)))
        if found:
            out.append((directory, found))
    return out


def sys_path_dirs(here: str, roots: list[str]) -> list[str]:
    """Directories a script in `here` may add to its import path by a relative line: its parents up to the
    project root containing it (else its parent), their non-hidden subdirectories, and each root's."""
    bounds = [r for r in roots if here.startswith(r.rstrip(os.sep) + os.sep)] or [os.path.dirname(here)]
    parents: list[str] = []
    d = here
    while d != os.path.dirname(d) and not any(d == b for b in bounds):
        d = os.path.dirname(d)
        parents.append(d)
    out: list[str] = []
    for d in dict.fromkeys([*parents, *roots]):
        out.append(d)
        try:
            with os.scandir(d) as entries:
                out += sorted(e.path for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))
        except OSError:
            continue
    return [d for d in dict.fromkeys(out) if d != here]


class CodeFiles:
    """Digests of code files, memoised by stat signature (a file edited while a run goes on is read again)."""

    def __init__(self, memo: StatMemo, evaluation: bool = False) -> None:
        self.memo = memo
        # With `evaluation` (an instance that lives for one evaluation of an experiment: nw run's), the project modules
        # found for the names a file imports are memoised per (names, directory): the 20 steps of a sweep running the
        # same train.py walk the package it imports once. Not in a long-lived instance (a Snakemake run's, Luigi's):
        # a module added or edited meanwhile must be seen.
        self._modules: dict[tuple[frozenset[str], str, tuple[tuple[str, str], ...]], dict[str, str]] | None = \
            {} if evaluation else None
        self._python: dict[tuple[str, int, int, int, int], tuple[str, set[str]]] = {}
        self._shell: dict[tuple[str, int, int, int, int], tuple[str, ...]] = {}
        self._data: dict[tuple[str, int, int, int, int], tuple[str, ...]] = {}
        self._configs: dict[tuple[str, int, int, int, int], tuple[str, ...]] = {}
        self._includes: dict[tuple[tuple[str, int, int, int, int], str], list[str]] = {}
        self._sys_path: dict[tuple[tuple[str, int, int, int, int], tuple[str, ...]],
                             list[tuple[str, tuple[str, ...]]]] = {}

    def named(self, candidates: Iterable[str], roots: Iterable[str], declared: set[str],
              cwd: str | None = None, imports: tuple[str, ...] = ()) -> dict[str, str]:
        """{absolute path: digest} of the candidates (paths as a step names them, relative ones resolved
        against `cwd`) that are code files inside one of `roots`, and not among the `declared` absolute paths
        (a Python file's digest with the project modules it imports from the `imports` directories too). A
        makefile makefiles.of_command found (makefiles.Read: `include Makefile.common`) is code whatever its name.
        A Python script that puts a directory on `sys.path` itself is keyed with the project modules it imports from
        there too (sys_path_modules)."""
        roots = list(roots)
        inside = tuple(os.path.abspath(r) + os.sep for r in roots if os.path.abspath(r) != "/")
        found: dict[str, str] = {}
        for word in candidates:
            if not looks_like_code(word):
                continue
            path = os.path.normpath(os.path.join(cwd or os.getcwd(), word))
            if path in declared or path in found or not path.startswith(inside) or not os.path.isfile(path):
                continue
            if os.path.splitext(path)[1].lower() in CODE_SUFFIXES or is_program(path) \
                    or os.path.basename(path) in makefiles.NAMES or isinstance(word, makefiles.Read):
                # (`make -f {HERE}/Makefile`; a makefile make reads, makefiles.of_command: `include config.mak`)
                try:
                    found[path] = self.code_digest(path, roots, imports)
                except UNREADABLE:  # unreadable: the step cannot read it either (an execute-only tool runs alike)
                    continue
        return found

    def code_digest(self, path: str, roots: Iterable[str], imports: tuple[str, ...] = ()) -> str:
        """A code file's digest (digest) with, for a Python file that puts a directory on `sys.path` itself, the
        project modules it imports from there (sys_path_modules): one rule for a script named by path (named) and a
        module found another way (`python -m pkg.train`, a module inline code imports; nw run's dsl), so neither
        misses an edit under the directory it adds."""
        found = self.digest(path, imports=imports)
        extra = self.sys_path_modules(path, list(roots)) if path.endswith(".py") else {}
        return digest([found, extra]) if extra else found

    def sys_path_modules(self, path: str, roots: list[str]) -> dict[str, str]:
        """{path relative to the script's directory: content hash} of the project modules a Python script imports
        from a directory it puts on `sys.path` itself (`sys.path.insert(0, os.path.join(os.path.dirname(__file__),
        "..", "lib"))`): project code as a module beside it is, so editing one re-runs the step. Only for a script
        naming `sys.path`; where its imports were found (sys_path_module_dirs) is memoised by its stat signature,
        the modules' digests are not (an edited module must be seen)."""
        key = (_signature(path), tuple(roots))
        hits = self._sys_path.get(key)
        if hits is None:
            hits = self._sys_path[key] = sys_path_module_dirs(path, roots)
        here = os.path.dirname(os.path.abspath(path))
        out: dict[str, str] = {}
        for directory, names in hits:
            found = self.local_modules(set(names), directory)
            out.update((os.path.relpath(os.path.join(directory, rel), here), h) for rel, h in found.items())
        return dict(sorted(out.items()))

    def files_named(self, texts: Iterable[str], declared: set[str], roots: Iterable[str] | None = None
                    ) -> dict[str, str]:
        """{text: content hash} of the texts (a step's parameter values: `strings_in`) that name an existing
        regular file, inside one of `roots` when given, and none of the `declared` absolute paths (the step's
        own outputs and inputs): a file a step is told to read by a parameter is keyed by content, as an input
        is. A directory, or a text naming no file, is only text."""
        inside = None if roots is None else tuple(os.path.abspath(r) + os.sep for r in roots)
        out: dict[str, str] = {}
        for text in texts:
            path = os.path.abspath(text)
            if path in declared or (inside is not None and not path.startswith(inside)) or not os.path.isfile(path):
                continue
            try:
                out[text] = self.memo.hash(os.path.realpath(path))
            except UNREADABLE:  # unreadable by this user: the step cannot read it either
                continue
        return out

    def project_data(self, candidates: Iterable[str], roots: Iterable[str], skip: set[str],
                     outside: tuple[str, ...] = (), keep: Callable[[str], bool] | None = None) -> dict[str, str]:
        """{candidate: content hash} of the data files of the project a step names without declaring them: among
        the `candidates` (its path-like words: data_words, data_candidates), each existing regular file (a symlink
        by the data it points to) inside one of `roots`, none of the `skip` absolute paths (what the step declares,
        files its parameters name, files a required task produces; a Snakemake caller leaves out what a rule
        produces itself, by the spelling: output patterns match text), none whose absolute path starts
        with a prefix of `outside` (not stat'ed: `.snakemake/`, a skipped directory), no program (keyed as code),
        and each `keep` accepts (a front door's own rule, asked last: Luigi's, no store path). One walk for every
        front door (the Snakemake executor's shell commands, `run:` blocks and scripts; Luigi's task code), so the
        rule of what such a word keys cannot differ between them; hashes are memoised by stat signature (a large
        reference is read once). A glob (`cat {HERE}/data/*.csv`, `glob.glob("data/*.csv")` in a script) stands for
        every file it matches now: adding, removing or editing one changes the key."""
        candidates = expand_globs(candidates)
        words = [w for w in candidates if not os.path.abspath(w).startswith(outside)] if outside else candidates
        return {t: h for t, h in self.files_named(words, skip, roots).items()
                if not is_program(t) and (keep is None or keep(t))}

    def digest(self, path: str, _within: frozenset[str] = frozenset(), imports: tuple[str, ...] = ()) -> str:
        """A code file's digest: its content; a Python file's with the local modules it imports (beside it, then
        in the `imports` directories: PYTHONPATH's, an editable install's; nixlib.pyimports); a shell script's
        with the code files it names beside it or below (`cd "$(dirname "$0")"; python3 train.py`: editing
        train.py changes what `bash run.sh` does)."""
        if not path.endswith(".py"):
            content = self.memo.hash(os.path.realpath(path))
            if not _names_code(path):
                return content
            named = self._shell_named(path, _within | {os.path.abspath(path)})
            if path.endswith(".ipynb"):  # a notebook: what its code cells import too (nbconvert runs it beside it)
                content, names = self.python_file(path)  # (by its code cells: outputs an --inplace run writes,
                modules, elsewhere = self._imported(names, os.path.dirname(os.path.abspath(path)), imports)
                named = {**named, **{f"import:{k}": v for k, v in {**modules, **elsewhere}.items()}}  # no key)
            return digest([content, named]) if named else content
        script, names = self.python_file(path)
        modules, elsewhere = self._imported(names, os.path.dirname(os.path.abspath(path)), imports)
        if elsewhere:
            return digest([script, modules, elsewhere])
        return digest([script, modules]) if modules else script

    def _imported(self, names: set[str], here: str, imports: tuple[str, ...]
                  ) -> tuple[dict[str, str], dict[str, str]]:
        """({path: content hash} of the project modules `names` are beside `here`, and of those not there that are in
        the `imports` directories), each followed through what it imports."""
        modules = self.local_modules(names, here)
        elsewhere: dict[str, str] = {}  # (relative to their directory: a clone elsewhere keys alike)
        # (a namespace package beside it is looked for further: each directory with a `mypkg/` adds to it)
        wanted = {n for n in names if not module_files(here, n, namespace=False)}
        for directory in (d for d in imports if d != here) if wanted else ():
            for rel, h in self.local_modules(wanted, directory).items():
                elsewhere.setdefault(rel, h)  # (`mypkg/util.py` in two of them: Python imports the first)
        return modules, elsewhere

    def local_modules(self, names: set[str], directory: str) -> dict[str, str]:
        """local_modules of the names in `directory` (memoised per evaluation: see __init__)."""
        if self._modules is None:
            return local_modules(names, directory, self.python_file)
        key = (frozenset(names), directory, getattr(directory, "packages", ()))  # (a MappedDir: its mapping too)
        known = self._modules.get(key)
        if known is None:
            known = self._modules[key] = local_modules(names, directory, self.python_file)
        return dict(known)

    def config_includes(self, path: str, root: str) -> list[str]:
        """configfiles.includes, memoised by the config's stat signature."""
        key = (_signature(path), root)
        known = self._includes.get(key)
        if known is None:
            known = self._includes[key] = configfiles.includes(path, root)
        return known

    def config_dirs(self, path: str) -> tuple[str, ...]:
        """configfiles.script_dirs, memoised by the script's stat signature."""
        signature = _signature(path)
        known = self._configs.get(signature)
        if known is None:
            known = self._configs[signature] = configfiles.script_dirs(path)
        return known

    def script_data(self, path: str) -> tuple[str, ...]:
        """The words of a project script that may name a data file it reads (script_data_words), memoised by the
        script's stat signature."""
        signature = _signature(path)
        known = self._data.get(signature)
        if known is None:
            known = self._data[signature] = script_data_words(path)
        return known

    def _shell_named(self, path: str, within: frozenset[str]) -> dict[str, str]:
        """{path relative to the script's directory: digest} of the code files a script (shell, R, Perl, Julia, …;
        _names_code) names that lie in its directory or below (relative names resolved there, where such a script
        usually changes first or which it names through its own location: `source "$(dirname "$0")/lib.sh"`,
        `"$DIR/lib.sh"`, `"$FindBin::Bin/lib.pl"`, `file.path(here, "utils.R")`: the part after the last `$…/`,
        `}` or `)`, and a path's last part), each followed once (`within`: the scripts on the way here, so two
        scripts naming each other end). A name that only looks like a sibling's keys it all the same: more keyed,
        never less."""
        here = os.path.dirname(os.path.abspath(path))
        candidates = self._shell_candidates(path)
        found: dict[str, str] = {}
        for target in self._shell_targets(path, candidates, within):
            try:
                found[os.path.relpath(target, here)] = self.digest(target, within)
            except UNREADABLE:  # unreadable: the script cannot run it either
                continue
        return dict(sorted(found.items()))

    def _shell_candidates(self, path: str) -> tuple[str, ...]:
        """The words of a script (its first MAX_SCRIPT_BYTES) that may name a code file beside it (_shell_named)."""
        signature = _signature(path)
        candidates = self._shell.get(signature)
        if candidates is None:
            with open(path, "rb") as f:
                text = f.read(MAX_SCRIPT_BYTES).decode(errors="replace")
            found_words = [w for w in words(text) if looks_like_code(w)]
            tails = [t for w in found_words if "/" in w
                     for t in (_TAIL.split(w)[-1].lstrip("/"), os.path.basename(w))]  # (`$FindBin::Bin/lib.pl`)
            candidates = self._shell[signature] = tuple(dict.fromkeys(w for w in found_words + tails if w))
        return candidates

    @staticmethod
    def _shell_targets(path: str, candidates: Iterable[str], within: Container[str]) -> list[str]:
        """The existing code files among a script's candidate words, resolved in its directory (and not above it)."""
        here = os.path.dirname(os.path.abspath(path))
        found = []
        for word in candidates:
            target = os.path.normpath(os.path.join(here, word))
            if target in within or not target.startswith(here + os.sep) or not os.path.isfile(target):
                continue
            if os.path.splitext(target)[1].lower() in CODE_SUFFIXES or is_program(target):
                found.append(target)
        return list(dict.fromkeys(found))

    def scripts_run(self, path: str) -> list[str]:
        """The code files a script's digest follows through the ones it names beside it (_shell_named), at any depth
        (`run.sh` running `python3 scripts/prep.py`, a Makefile's recipes): each may read data files of its own
        (nixlib.dsl keys them as it keys the top script's). Not `path` itself; unreadable ones left out."""
        found: list[str] = []
        todo = [os.path.abspath(path)]
        seen = set(todo)
        while todo:
            script = todo.pop(0)
            if not _names_code(script):
                continue
            try:
                targets = self._shell_targets(script, self._shell_candidates(script), seen)
            except OSError:
                continue
            for target in targets:
                seen.add(target)
                found.append(target)
                todo.append(target)
        return found

    def chain_reads(self, scripts: Iterable[str], cds: Sequence[str] = (), config_dirs: Iterable[str] = (),
                    roots: Iterable[str] = (), list_configs: Callable[[str], list[str]] | None = None,
                    imports: tuple[str, ...] = ()) -> list[str]:
        """The absolute paths that may name a data file of the project a step reads through the project `scripts` it
        runs (absolute paths): the script_data words of each and of the scripts it runs in turn at any depth
        (scripts_run: `bash run.sh` running `python3 scripts/prep.py`, a Makefile's recipes), relative to a directory
        the step changes into (`cds`), to its own or to any other script's of its chain (where a `cd "$(dirname
        "$0")"` leaves them); and the config files (configfiles.files_in) of the Hydra config directories the step names
        (`config_dirs`: `--config-path /p/conf`, absolute) or its Python scripts do (`config_path="conf"`, relative
        to the script), those inside `roots` only. A Python script's (or notebook's) words include those of the
        project modules it imports (imported_files, as its digest follows them: `from mypkg.data import load` where
        mypkg/data.py opens `HERE / "vocab.txt"` or `"data/labels.csv"`), relative to the module's own directory too.
        The caller keys the existing project files among them (project_data) with the configs their YAML configs
        include (with_includes). `list_configs` lists a config directory (default configfiles.files_in; nw run
        memoises it per evaluation); `imports`: the directories the step's Pythons import from (pyimports.import_dirs).
        """
        found: list[str] = []
        configs = list(config_dirs)
        read: set[str] = set()  # (the modules whose words are in: a module two scripts import is read once)
        for top in scripts:
            chain = [top, *self.scripts_run(top)]
            for script in chain:
                try:
                    words = self.script_data(script)
                except OSError:  # unreadable: the step cannot run it either
                    continue
                bases = list(dict.fromkeys([*cds, os.path.dirname(script), *map(os.path.dirname, chain)]))
                found += [os.path.normpath(os.path.join(b, w)) for w in words
                          for b in ([""] if os.path.isabs(w) else bases)]
                here = os.path.dirname(script)
                configs += [os.path.normpath(os.path.join(here, d)) for d in self.config_dirs(script)]
                for module in self.imported_files(script, imports):
                    if module in read:
                        continue
                    read.add(module)
                    try:
                        words = self.script_data(module)
                    except OSError:  # unreadable: the step cannot import it either
                        continue
                    around = list(dict.fromkeys([os.path.dirname(module), *bases]))  # (`HERE / "vocab.txt"`)
                    found += [os.path.normpath(os.path.join(b, w)) for w in words
                              for b in ([""] if os.path.isabs(w) else around)]
        inside = tuple(os.path.abspath(r) + os.sep for r in roots if os.path.abspath(r) != "/")
        for d in dict.fromkeys(configs):
            if (d + os.sep).startswith(inside) and os.path.isdir(d):
                found += (list_configs or configfiles.files_in)(d)
        return list(dict.fromkeys(found))

    def imported_files(self, path: str, imports: tuple[str, ...] = ()) -> list[str]:
        """The absolute paths of the project modules a Python script or notebook imports, as its digest follows them
        (beside it, then in the `imports` directories; each followed through what it imports); none for any other
        file, or an unreadable one."""
        if not path.endswith((".py", ".ipynb")):
            return []
        here = os.path.dirname(os.path.abspath(path))
        try:
            _, names = self.python_file(path)
            found = [os.path.join(here, rel) for rel in self.local_modules(names, here)]
            wanted = {n for n in names if not module_files(here, n, namespace=False)}
            for directory in (d for d in imports if d != here) if wanted else ():
                found += [os.path.join(directory, rel) for rel in self.local_modules(wanted, directory)]
        except UNREADABLE:  # (the step cannot import it either)
            return []
        return [os.path.normpath(p) for p in dict.fromkeys(found)]

    def with_includes(self, data: dict[str, str], roots: Iterable[str], skip: set[str], outside: tuple[str, ...] = (),
                      keep: Callable[[str], bool] | None = None) -> dict[str, str]:
        """`data` ({absolute path: content hash}: a step's project data files, project_data) with, at any depth, the
        configs its YAML configs include (configfiles.includes: `defaults: [base, {optim: adam}]`, `_base_: ../b.yaml`),
        resolved beside the including file or under the first config's directory, kept as project_data keeps them."""
        data = dict(data)
        todo = [(p, os.path.dirname(p)) for p in data if p.endswith(configfiles.SUFFIXES)]
        while todo:
            path, root = todo.pop()
            more = [p for p in self.config_includes(path, root) if p not in data]
            found = self.project_data(more, roots, skip, outside, keep) if more else {}
            data.update(found)
            todo += [(p, root) for p in found if p.endswith(configfiles.SUFFIXES)]
        return data

    def python_file(self, path: str) -> tuple[str, set[str]]:
        """(content hash, imported top-level names) of a local Python file, parsed once per content. A notebook's
        hash is its code cells' (notebooks.cells): the outputs and execution counts a run writes into it
        (`nbconvert --execute --inplace`) change no key, so such a step is served from the store next time."""
        signature = _signature(path)
        known = self._python.get(signature)
        if known is None:
            with open(path, "rb") as f:
                data = f.read()
            source = notebooks.code(data) if path.endswith(".ipynb") else data
            cells = notebooks.cells(data) if path.endswith(".ipynb") else None
            keyed = data if cells is None else b"ipynb-code-cells\0" + json.dumps(cells).encode()
            known = self._python[signature] = (base32.encode(hashlib.sha256(keyed).digest()), imported_names(source))
        return known


_NOT_PATHS = frozenset({int, float, bool, type(None)})


def strings_in(value: object) -> list[str]:
    """The path-like texts in a parameter value: itself (a str or a path), or those in the items of a list,
    tuple or mapping; never a text with a newline or longer than any path."""
    if type(value) in _NOT_PATHS:  # (most parameter values: no ABC check needed)
        return []
    if isinstance(value, str | os.PathLike):
        text = os.fspath(value)
        return [text] if isinstance(text, str) and text and "\n" not in text and len(text) <= 4096 else []
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in strings_in(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in strings_in(v)]
    return []


def imported_names(source: bytes) -> set[str]:
    """Top-level module names a Python file imports (absolute imports, anywhere in the file)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def absolute_module(name: str, level: int, package: str | None) -> str | None:
    """The full name an import statement names: `name` itself, or, for a relative import (`level` dots), `name`
    under `package` (the importing module's package); None for a relative import outside any package."""
    if not level:
        return name or None
    parts = (package or "").split(".") if package else []
    if level - 1 >= len(parts):
        return None
    base = ".".join(parts[:len(parts) - (level - 1)])
    return f"{base}.{name}" if name else base


def package_modules(names: set[str], root: str, hash_file: Callable[[str], str]) -> dict[str, str]:
    """{path relative to `root`: content hash} of the project modules among the full module `names` found under
    `root` (the directory holding the project's top-level package: `proj.helpers` is `root/proj/helpers.py`, a
    package its `__init__.py`), followed through the modules each imports in turn, relative imports included
    (`from .util.text import squash` in proj/helpers.py). A name not found there (the standard library, an
    installed package) is left out."""
    found: dict[str, str] = {}
    todo = sorted(names)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        base = os.path.join(root, *name.split("."))
        for path, package in ((base + ".py", name.rpartition(".")[0]), (os.path.join(base, "__init__.py"), name)):
            if not os.path.isfile(path):
                continue
            rel = os.path.relpath(path, root)
            if rel in found:
                continue
            found[rel] = hash_file(path)
            todo += sorted(_module_imports(path, package) - seen)
    return dict(sorted(found.items()))


def _module_imports(path: str, package: str) -> set[str]:
    """Full names of the modules a Python file imports (relative imports resolved against `package`; for `from m
    import a` also `m.a`)."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            name = absolute_module(node.module or "", node.level, package)
            if name:
                names.add(name)
                names.update(f"{name}.{a.name}" for a in node.names if a.name != "*")
    return names


def local_modules(names: set[str], directory: str,
                  facts: Callable[[str], tuple[str, set[str]]]) -> dict[str, str]:
    """name -> content hash of every module or package file in `directory` imported by the `names` a script
    imports, followed transitively (a helper importing another helper next to it). `facts(path)` gives a
    file's (content hash, imported names)."""
    found: dict[str, str] = {}
    todo = [names]
    seen: set[str] = set()  # (a name is listed once: the 200 modules of a package that import it list it once)
    while todo:
        for name in todo.pop():
            if name in seen:
                continue
            seen.add(name)
            for path in module_files(directory, name):
                rel = os.path.relpath(path, directory)
                if rel not in found:
                    found[rel], imported = facts(path)
                    todo.append(imported)
    return dict(sorted(found.items()))


class MappedDir(str):
    """A directory the project's modules are imported from (nixlib.pyimports) that also maps some module names to
    where their code is, as setuptools' editable finder does (`MAPPING = {'mlpkg': '/p/lib'}`: a `package_dir`
    rename; `{'ns.pkg': '/p/src/ns/pkg'}`: a package under a PEP 420 namespace): `packages`, (name, absolute path)
    pairs. Compares as its path; module_files looks the mapped names up first."""

    packages: tuple[tuple[str, str], ...]

    def __new__(cls, path: str, packages: Iterable[tuple[str, str]]) -> MappedDir:
        made = super().__new__(cls, path)
        made.packages = tuple(sorted(set(packages)))
        return made

    def __getnewargs__(self) -> tuple[str, tuple[tuple[str, str], ...]]:  # (pickled, copied: with its mapping)
        return str(self), self.packages


def module_files(directory: str, name: str, namespace: bool = True) -> list[str]:
    """The files of local module `name`: `name.py`, or every .py file of package `name/`; in a MappedDir, also
    those of each package (or module file) it maps `name` or a dotted name under it to (`ns.pkg`: `import ns.pkg`),
    __init__.py or not. With `namespace`, a directory `name/` without an __init__.py is a portion of an implicit
    namespace package (PEP 420: `import mypkg.util` finds mypkg/util.py in every directory of the import path that
    has a `mypkg/`): its importable .py files, unless it is installed code (site-packages, the Nix store) or `name`
    is the standard library's (a regular package found anywhere wins)."""
    mapped = [p for key, target in getattr(directory, "packages", ()) if key.split(".")[0] == name
              for p in _package_files(target, namespace=True)]
    single = os.path.join(directory, name + ".py")
    if os.path.isfile(single):
        return list(dict.fromkeys([single, *mapped]))
    found = _package_files(os.path.join(directory, name))
    if not found and namespace and name not in sys.stdlib_module_names and not _installed(directory):
        found = _namespace_files(os.path.join(directory, name))
    return list(dict.fromkeys([*found, *mapped]))


def _package_files(package: str, namespace: bool = False) -> list[str]:
    """Every .py file of a package directory (one with an __init__.py, or any directory with `namespace`); a module
    file itself."""
    if package.endswith(".py"):
        return [package] if os.path.isfile(package) else []
    if not (os.path.isdir(package) if namespace else os.path.isfile(os.path.join(package, "__init__.py"))):
        return []
    return sorted(os.path.join(d, f) for d, _, files in os.walk(package) for f in files if f.endswith(".py"))


def _installed(directory: str) -> bool:
    """Whether a directory holds installed code, never the project's: a site-packages or dist-packages directory (or
    one below), or the Nix store."""
    parts = os.path.abspath(directory).split(os.sep)
    store = os.environ.get("NIX_STORE_DIR", "/nix/store").rstrip(os.sep)
    return "site-packages" in parts or "dist-packages" in parts or (os.path.abspath(directory) + os.sep).startswith(
        store + os.sep)


def _namespace_files(package: str) -> list[str]:
    """The .py files Python can import from a namespace package's directory (one without an __init__.py, not a module
    file beside it): those named as modules (`util.py`), in it and in the subdirectories named as packages, at any
    depth (`.git`, `my-data` are no package: not walked)."""
    if not os.path.isdir(package):
        return []
    found, seen = [], 0
    for d, dirs, files in os.walk(package):
        seen += len(dirs) + len(files)
        if seen > NAMESPACE_ENTRIES:  # a data directory named like an imported package (`datasets/`), walked at
            return []                 # every evaluation: not code (as before namespace packages were followed)
        dirs[:] = sorted(n for n in dirs if n.isidentifier())
        found += [os.path.join(d, f) for f in sorted(files) if f.endswith(".py") and f[:-3].isidentifier()]
    return found


NAMESPACE_ENTRIES = 20_000  # entries a namespace package's directories may hold in all before it counts as data


_CD = re.compile(r"(?:^|[\s;&|(`])(?:cd|pushd)[ \t]+(?:--[ \t]+)?(?:'([^']+)'|\"([^\"$`\\\\]+)\"|([^\s;|&<>()'\"`]+))")
# (in double quotes `$` is allowed: `"${PYTHONPATH}:/abs/dir"` keeps the environment's; only absolute parts count)
_PYTHONPATH = re.compile(r"(?:^|[\s;&|(`])PYTHONPATH=(?:'([^']+)'|\"([^\"`\\\\]+)\"|([^\s;|&<>()'\"`]+))")


# `cd "$(dirname /p/experiment.py)"`, `cd $(dirname "/p/x")`: the directory of the path named
_CD_DIRNAME = re.compile(r"(?:^|[\s;&|(`])(?:cd|pushd)[ \t]+(?:--[ \t]+)?\"?\$\(dirname[ \t]+(?:--[ \t]+)?"
                         r"(?:'([^']+)'|\"([^\"$`\\\\]+)\"|([^\s;|&<>()'\"`]+))[ \t]*\)")


def _directories(pattern: re.Pattern[str], command: str, cwd: str | None = None) -> list[str]:
    """The absolute directories a command changes into (`cd DIR`, `pushd DIR`, `cd "$(dirname /p/x)"`, and a
    relative `cd src` after one of those) or puts on Python's path (`PYTHONPATH=A:B`), as written (quoted or
    not), that exist."""
    if not ("cd" in command or "pushd" in command or "PYTHONPATH" in command):
        return []
    matches = list(pattern.finditer(command))
    if pattern is _CD and "dirname" in command:
        matches += list(_CD_DIRNAME.finditer(command))
        matches.sort(key=lambda m: m.start())
    found: list[str] = []
    for m in matches:
        parts = (m.group(1) or m.group(2) or m.group(3)).split(":") if pattern is _PYTHONPATH else \
            [m.group(1) or m.group(2) or m.group(3)]
        if m.re is _CD_DIRNAME:
            parts = [os.path.dirname(parts[0])]
        for part in parts:
            if os.path.isabs(part):
                found.append(part)
            elif cwd is not None and pattern is _PYTHONPATH and part and not part.startswith(("$", "~")):
                found.append(os.path.join(cwd, part))
            elif pattern is _CD and found and not part.startswith(("$", "~", "-")):  # `cd {HERE} && cd src`
                found = list(dict.fromkeys([*found, *(os.path.normpath(os.path.join(d, part)) for d in found)]))
                if len(found) > 64:  # (each relative cd doubles them: keep those that exist, `cd build && cd ../x`)
                    found = [d for d in found if os.path.isdir(d)]
    return [d for d in dict.fromkeys(os.path.normpath(d) for d in found) if os.path.isdir(d)]

def changed_directories(command: str, roots: Iterable[str] | None = None) -> list[str]:
    """The existing directories a command changes into (`cd /p`, `pushd /p`, `cd "$(dirname /p/x)"`, a relative `cd
    src` after one of those), inside one of `roots` when given (the project's), where a front door whose steps run
    in their output directory (nw run, a Luigi command()) resolves the relative paths that follow."""
    found = _directories(_CD, command)
    if roots is None or not found:
        return found
    inside = tuple(r + os.sep for r in roots if r != "/")
    return [d for d in found if (d + os.sep).startswith(inside)]


def _signature(path: str) -> tuple[str, int, int, int, int]:
    """What a file's memo entries are keyed by: its path, size, mtime, ctime and inode (an edit changes one)."""
    st = os.stat(path)
    return os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def python_path_directories(command: str, cwd: str | None = None) -> list[str]:
    """The existing absolute directories a command puts on Python's path (`PYTHONPATH=A:B python -m pkg.mod`); with
    `cwd` (where a front door's commands start: Snakemake's working directory), a relative one
    too (`PYTHONPATH=src`)."""
    return _directories(_PYTHONPATH, command, cwd)


_FIELD_ACCESS = r"(?:\s*[.$@]\s*(\w+)\b(?!\s*\()|\s*\[\[?\s*[\"']?(\w+)[\"']?\s*\]\]?)"


def fields_read(texts: Iterable[str], name: str) -> frozenset[str] | None:
    """The fields that code texts (a script in any language, a format string) read of an object called `name`
    (`resources`): by attribute or constant key, `snakemake.resources.mem_mb`, `snakemake@resources[["mem_mb"]]`,
    `${snakemake_resources[mem_mb]}`, `{resources.mem_mb}`; an empty set when no text names it. None when some
    text names it otherwise (`print(resources)`, `resources.get(key)`, `for r in resources`), so a caller keys
    all of it. By text, so a comment naming it counts too (the safe side)."""
    access = re.compile(re.escape(name) + _FIELD_ACCESS)
    read: set[str] = set()
    for text in texts:
        start = text.find(name)
        while start >= 0:
            found = access.match(text, start)
            if found is None:
                return None
            read.add(found.group(1) or found.group(2))
            start = text.find(name, start + len(name))
    return frozenset(read)

"""The arguments an experiment is evaluated with, given on nw's command line.

experiment.nix takes nix-build's: `--arg NAME EXPR` (a Nix expression) and `--argstr NAME VALUE` (a string), passed
to the experiment when it is a function of those parameters (`{ lr ? 0.001, epochs ? 10 }: …`). experiment.py takes
the words after `--` as its `sys.argv[1:]`, as `python experiment.py --lr 0.01` would (an argparse parser at module
level reads them). They are part of the evaluation, not of any step's key: a step is keyed by the command and
inputs the arguments produce, so two runs with the same arguments share every result, and a changed argument
re-runs exactly the steps whose commands it changes.

The last `nw run` here records them beside the experiment file, so `nw why`, `nw pin` and `nw checkpoints` evaluate
the experiment as that run did.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from typing import Any

from nixlib.errors import NixWorkflowError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_'-]*\Z")
# A Nix literal: numbers, strings without interpolation, true/false/null, lists and attribute sets of them. Such an
# --arg reads nothing, so the evaluation it gives can be cached by its text; any other expression (a path, a call, a
# variable) may read files or the clock unseen, so the evaluation is done afresh each time.
_LITERAL_TOKEN = re.compile(r'\s+|-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|"(?:[^"\\$]|\\.|\$(?!\{))*"'
                            r"|(?:true|false|null)\b|[A-Za-z_][A-Za-z0-9_'-]*(?=\s*=[^=])|[\[\]{};=]")


@dataclass(frozen=True)
class Arguments:
    """`nix`: (kind, name, text) in command-line order, kind "arg" or "argstr"; `argv`: experiment.py's words; `cwd`:
    the directory they were given in (an --arg's relative path is Nix's from there, also when `nw why` evaluates the
    recorded arguments elsewhere)."""

    nix: tuple[tuple[str, str, str], ...] = ()
    argv: tuple[str, ...] = ()
    cwd: str | None = None

    def __bool__(self) -> bool:
        return bool(self.nix or self.argv)

    def as_json(self) -> dict[str, Any]:
        """For the last-run summary (empty parts left out)."""
        doc: dict[str, Any] = {}
        if self.nix:
            doc["nix"] = [list(a) for a in self.nix]
        if self.argv:
            doc["argv"] = list(self.argv)
        if self.nix and self.cwd:
            doc["cwd"] = self.cwd
        return doc

    def cacheable(self) -> bool:
        """Whether an evaluation with these arguments may be served from the evaluation cache (see _LITERAL_TOKEN)."""
        return all(kind == "argstr" or _literal(text) for kind, _, text in self.nix)

    def check_for(self, file: str) -> None:
        """Each front door takes its own kind: a mix-up is an error before anything is evaluated."""
        if self.nix and not file.endswith(".nix"):
            kind, name, _ = self.nix[0]
            raise NixWorkflowError(f"--{kind} {name}: --arg and --argstr pass parameters to an experiment.nix that is "
                                   f"a function (as nix-build does); {file} is Python. Give experiment.py its "
                                   f"arguments after `--`: nw run {file} -- --{name} VALUE (its sys.argv)")
        if self.argv and file.endswith(".nix"):
            raise NixWorkflowError(f"{' '.join(self.argv)}: the words after `--` are experiment.py's sys.argv; "
                                   f"{file} is Nix. Pass its parameters as nix-build does: --arg NAME EXPR, or "
                                   "--argstr NAME VALUE for a string")


NONE = Arguments()  # (no arguments: the default of the loaders)


def _literal(text: str) -> bool:
    at = 0
    while at < len(text):
        m = _LITERAL_TOKEN.match(text, at)
        if m is None or m.end() == at:
            return False
        at = m.end()
    return bool(text.strip())


def add_options(parser: argparse.ArgumentParser) -> None:
    """--arg and --argstr (repeatable); the words after `--` are taken apart before parsing (split_argv)."""
    parser.add_argument("--arg", nargs=2, action="append", default=[], metavar=("NAME", "EXPR"), dest="nix_arg",
                        help="experiment.nix: pass parameter NAME the Nix expression EXPR (as nix-build --arg)")
    parser.add_argument("--argstr", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        dest="nix_argstr", help="experiment.nix: pass parameter NAME the string VALUE (as "
                        "nix-build --argstr). experiment.py takes its own arguments after `--` (its sys.argv)")


def split_argv(words: list[str], commands: frozenset[str]) -> tuple[list[str], list[str] | None,
                                                                   list[tuple[str, str, str]]]:
    """For one of `commands`: nw's own words, the experiment's words after the first `--` that follows the experiment
    file (None: no such `--`; `nw run -- -odd.py` keeps argparse's meaning), and the --arg/--argstr NAME VALUE
    triples taken out first (a VALUE may start with `-`, which argparse would take for an option)."""
    at = next((i for i, w in enumerate(words) if w in commands), None)
    if at is None:
        return words, None, []
    own, given, n = words[:at + 1], [], at + 1
    while n < len(words):
        w = words[n]
        if w == "--":
            if any(not x.startswith("-") for x in own[at + 1:]):  # (after the file: the experiment's)
                return own, words[n + 1:], given
            return own + words[n:], None, given
        if w in ("--arg", "--argstr") and n + 2 < len(words):
            given.append((w[2:], words[n + 1], words[n + 2]))
            n += 3
            continue
        own.append(w)
        n += 1
    return own, None, given


def from_args(args: argparse.Namespace) -> Arguments:
    """The arguments the command line gave (checked: a NAME must be a Nix identifier, given once)."""
    nix = list(getattr(args, "nix_given", None) or [])
    nix += [("arg", n, t) for n, t in getattr(args, "nix_arg", None) or []]
    nix += [("argstr", n, t) for n, t in getattr(args, "nix_argstr", None) or []]
    seen: set[str] = set()
    for kind, name, _ in nix:
        if not _NAME.match(name):
            raise NixWorkflowError(f"--{kind} {name!r}: a parameter name is a Nix identifier (letters, digits, _, ' "
                                   "and -, not starting with a digit)")
        if name in seen:
            raise NixWorkflowError(f"--{kind} {name}: parameter {name} is given twice")
        seen.add(name)
    for kind, name, text in nix:
        try:
            text.encode()
        except UnicodeEncodeError:  # (bytes the shell passed that are no UTF-8: Nix took them for a broken JSON string)
            raise NixWorkflowError(f"--{kind} {name} {text!r}: the value holds bytes that are not UTF-8 text (shown "
                                   "as \\udcXX); Nix reads its parameters as UTF-8: give the value as UTF-8 text"
                                   ) from None
    return Arguments(tuple(nix), tuple(getattr(args, "experiment_argv", None) or ()), os.getcwd() if nix else None)


def from_json(doc: Any) -> Arguments:
    """The arguments a last-run summary recorded (anything malformed: none, as an older summary has)."""
    if not isinstance(doc, dict):
        return Arguments()
    nix = doc.get("nix", [])
    argv = doc.get("argv", [])
    if not (isinstance(nix, list) and all(isinstance(a, list) and len(a) == 3 and a[0] in ("arg", "argstr")
                                          and all(isinstance(x, str) for x in a) for a in nix)):
        nix = []
    if not (isinstance(argv, list) and all(isinstance(w, str) for w in argv)):
        argv = []
    cwd = doc.get("cwd")
    return Arguments(tuple(tuple(a) for a in nix), tuple(argv),  # type: ignore[misc]
                     cwd if isinstance(cwd, str) and os.path.isabs(cwd) else None)

"""The Nix front door: `nw run experiment.nix` evaluates the file with the real Nix and hands the
steps to the same recipe builder as experiment.py.

`nix-instantiate --eval --strict --json` of `nixlib/nix/front.nix` returns one record per
top-level attribute: a step's command (its string context discarded), the store paths in that
context (the `${tool}` derivations), its options, and the token its `outPath` stands for. Here
each Nix token becomes the Python placeholder of its step, each static token the store path of
its object, and every step a `nixlib.dsl.Step`; `nixlib.dsl` then builds the recipes exactly as
for experiment.py, so a step keys the same whichever language declared it. The evaluation is
cached (nixlib.evalcache) by the content of every local file it read.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixlib import dsl, nix, statics
from nixlib.arguments import NONE, Arguments
from nixlib.env import Env, _system, allow_unpinned
from nixlib.errors import NixWorkflowError, check_readable
from nixlib.evalcache import EvalCache
from nixlib.names import check_step_name
from nixlib.recipe import RunOptions
from nixlib.statmemo import StatMemo
from nixlib.store import default_root

_STEP_TOKEN = re.compile(r"/nix-workflow-step/[0-9a-f]{64}-[A-Za-z0-9_+?=.-]*")
_CHECKPOINT_TOKEN = re.compile(r"/nix-workflow-checkpoint/(none|[0-9abcdfghijklmnpqrsvwxyz]{52})/(\d+):")
_STATIC_TOKEN = re.compile(r"/nix-workflow-static/([0-9abcdfghijklmnpqrsvwxyz]{52})")


@dataclass
class _Decl:
    """One step as Nix declared it, with the name and location nw reports it under."""

    record: dict[str, Any]
    attr: str
    where: str
    nameless: bool = False  # (a step no top-level attribute holds: `where` is that of the named step using it)


def load(path: str | os.PathLike, arguments: Arguments = NONE) -> dsl.Workflow:
    """Evaluate experiment.nix (a function: called with `arguments`, nixlib.arguments) and turn its steps into
    recipes (nothing runs, nothing is stored)."""
    path = Path(path).absolute()
    check_readable(path, "experiment file")
    _check_utf8(path)
    try:
        value = _evaluate(path, arguments)
    except UnicodeDecodeError as e:  # a file the experiment imports put non-UTF-8 bytes into a command or name
        raise NixWorkflowError(f"{path}: Nix's result of evaluating it is not UTF-8 text ({e.reason} at byte "
                               f"{e.start}): a file it imports holds non-UTF-8 bytes in a string. Save every .nix "
                               "file as UTF-8.") from None
    if "unknownArgs" in value:
        raise _unknown_arguments(path, value)
    if "notAttrs" in value:
        raise NixWorkflowError(f"{path}: an experiment must evaluate to an attribute set of steps (rec {{ name = "
                               f"output ...; }}), not a {value['notAttrs']}")
    decls = _declarations(path, {entry["name"]: entry for entry in value["attrs"]})
    if not decls:
        raise NixWorkflowError(f"{path} defines no steps: an experiment is an attribute set of steps, e.g. "
                               '`{ data = output "echo 1,2 > $out/data.csv"; }`')
    return _Translator(path, decls).workflow()


def _check_utf8(path: Path) -> None:
    """An experiment.nix must be UTF-8: Nix would pass other bytes into commands, which nw handles as text."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise NixWorkflowError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save the experiment "
                               "as UTF-8") from None


def _unknown_arguments(path: Path, value: dict[str, Any]) -> NixWorkflowError:
    """A parameter given on the command line that the experiment does not take: nix-build would drop it silently,
    and a misspelt `--arg lrr 0.1` would then run hours with the default."""
    names = ", ".join(value["unknownArgs"])
    if not value.get("isFunction"):
        return NixWorkflowError(f"{path} is not a function, so it takes no parameter ({names}, given by --arg/--argstr)"
                                ". Make it one whose parameters have defaults: { lr ? 0.001 }: { … }")
    have = ", ".join(value.get("params", [])) or "none by name"
    return NixWorkflowError(f"{path} takes no parameter {names} (given by --arg/--argstr); its parameters: {have}")


_COMMENT = re.compile(r"#[^\n]*|/\*.*?\*/", re.DOTALL)


def takes_any(text: str) -> bool:
    """Whether a Nix file is a function whose parameter set ends in `...` (`{ lr ? 1, ... }@args:`): nix-build passes
    such a function every --arg given, not only those it names. By its text (Nix tells no function's `...`)."""
    text = _COMMENT.sub(" ", text).lstrip()
    text = re.sub(r"^[A-Za-z_][\w'-]*\s*@\s*", "", text)
    if not text.startswith("{"):
        return False
    depth = 0
    for i, c in enumerate(text):
        depth += (c == "{") - (c == "}")
        if depth == 0:
            head, rest = text[:i + 1], text[i + 1:].lstrip()
            rest = re.sub(r"^@\s*[A-Za-z_][\w'-]*\s*", "", rest)
            return rest.startswith(":") and re.search(r",\s*\.\.\.\s*\}$|^\{\s*\.\.\.\s*\}$", head) is not None
    return False


def _evaluate(path: Path, arguments: Arguments) -> dict[str, Any]:
    """The front.nix result for `path`, from the evaluation cache when no file it read has changed (and the
    arguments are those it was made with)."""
    uncached = allow_unpinned() or not arguments.cacheable()  # (an --arg that may read files unseen)
    try:
        request = {"what": "experiment", "file": str(path), "nix": nix.fingerprint(), "system": _system()}
        if arguments.nix:
            request["args"] = [list(a) for a in arguments.nix]
    except nix.NixMissing as e:
        raise nix.NixMissing(f"`nw run {path.name}` evaluates the experiment with Nix. {e}".replace(
            "Steps with host envs (no env, or env='host') still run without Nix.",
            "Experiments written in Python (experiment.py) with host envs still run without Nix.")) from None
    cache = EvalCache(default_root().absolute())
    if not uncached:
        cached = cache.get(request, _contexts_exist)
        if cached is not None:
            return cached
    auto = {name: {"str": text} if kind == "argstr" else {"arg": f"nwArg{i}"}
            for i, (kind, name, text) in enumerate(arguments.nix)}
    exprs = {f"nwArg{i}": text for i, (kind, _, text) in enumerate(arguments.nix) if kind == "arg"}
    args = {"file": str(path), "allowUnpinned": allow_unpinned(), "autoArgs": auto,
            "passAll": bool(auto) and takes_any(path.read_text(errors="replace"))}
    try:
        evaluation = nix.evaluate(nix.LIB_DIR / "front.nix", args, str(path), allow_unpinned(), exprs, arguments.cwd)
    except nix.NixFailed as e:
        if not exprs:
            raise
        given = ", ".join(f"--arg {name} {text!r}" for kind, name, text in arguments.nix if kind == "arg")
        if "«string»" in str(e):  # (Nix names an --arg's expression so)
            raise nix.NixFailed(f"{e}\n\n«string» is an expression given on the command line: {given}") from None
        raise nix.NixFailed(f"{e}\n\nThe experiment was called with {given}: an error in evaluating one of them is "
                            "reported where the experiment uses it") from None
    if not uncached:
        cache.put(request, evaluation.value, [str(path), str(nix.LIB_DIR), *evaluation.deps])
    return evaluation.value


def _contexts_exist(value: Any) -> bool:
    """A cached evaluation is usable only while the `.drv` files and sources it wrote are still in the Nix store."""
    try:
        records = [d["step"] for d in value["attrs"] if "step" in d]
        records += [r for d in value["attrs"] if "group" in d for r in d["group"].values()]
        return all(os.path.exists(p) for r in records for p in r["context"] + r["env"] + r.get("steps", []))
    except (TypeError, KeyError, AttributeError):
        return False


def _declarations(path: Path, attrs: dict[str, Any]) -> dict[str, _Decl]:
    """Top-level attribute -> declaration; any attribute that is not a step is an error naming it."""
    decls: dict[str, _Decl] = {}
    wrong: list[str] = []
    for attr, entry in attrs.items():
        where = _where(path, entry.get("pos"))
        if "step" in entry:
            _declare(decls, _Decl(entry["step"], attr, where))
        elif "group" in entry:
            for k, r in entry["group"].items():
                _declare(decls, _Decl(r, f"{attr}.{k}", where))
        else:
            name = f"{attr}.{entry['member']}" if entry.get("member") else attr
            wrong.append(f"'{name}' ({where}) is {entry['notStep']}")
    for decl in decls.values():  # `"../x" = output ...` is legal Nix; the name it gives must be a plain file name
        check_step_name(decl.record.get("name") or decl.attr, decl.where)
    if wrong:
        raise NixWorkflowError(f"{path}: every top-level attribute of an experiment must be a step (output ...) or "
                               f"a set or list of steps, but {'; '.join(wrong)}. Move helpers into a `let` binding.")
    return decls


def _declare(decls: dict[str, _Decl], decl: _Decl) -> None:
    """Add `decl`, refusing a name two different steps would get: `"a.b" = output ...` and `a = { b = output ...; }`
    are both `a.b`, and keeping either would silently drop the other from the run."""
    other = decls.setdefault(decl.attr, decl)
    if other.record["token"] != decl.record["token"]:
        raise NixWorkflowError(f"two different steps are named '{decl.attr}' ({other.where} and {decl.where}): an "
                               "attribute name containing a dot gives the same name as a step in a set; step names "
                               "must be unique: rename one of them.")


def _where(path: Path, pos: dict[str, Any] | None) -> str:
    return f"{pos['file']}:{pos['line']}" if pos else str(path)


def _length_prefixed(text: str, start: int, marker: str) -> tuple[str | None, int]:
    """The `MARKER<bytes>:<text>` segment of a lib.nix token at `start` (its length is Nix's stringLength, in
    bytes) and where it ends; (None, start) if there is none."""
    m = re.compile(re.escape(marker) + r"(\d+):").match(text, start)
    if m is None:
        return None, start
    value = text[m.end():].encode()[: int(m.group(1))].decode(errors="replace")
    return value, m.end() + len(value)


def _check_env(decl: _Decl) -> None:
    """`env = "python3";` (a package name, not the package) is refused naming the step, its file and line: lib.nix
    passes a string through as is, and Env would only say that `python3` is not a store path."""
    prefix = nix.STORE_DIR.rstrip("/") + "/"
    wrong = [e for e in decl.record["env"] if not e.startswith(prefix)]
    if wrong:
        raise NixWorkflowError(f"step '{decl.attr}' ({decl.where}): env = {wrong[0]!r} is not a package: env takes "
                               f"a derivation or a list of them (env = pkgs.python3; or env = [ pkgs.python3 "
                               f"pkgs.jq ];), or a path under {prefix}")


class _Translator:
    """Nix records -> dsl Steps (upstream first), then dsl's recipe builder."""

    def __init__(self, path: Path, decls: dict[str, _Decl]) -> None:
        self.path = path
        self.decls = decls
        self.by_token = {d.record["token"]: d for d in decls.values()}
        self.steps: dict[str, dsl.Step] = {}
        self.memo = StatMemo.for_store(default_root())

    def workflow(self) -> dsl.Workflow:
        dsl.forget()
        todo = list(self.decls.values())
        while todo:  # (before any command is translated: a reference without string context may name one of them)
            todo += self._learn(todo.pop())
        named = {attr: self.step(decl, []) for attr, decl in self.decls.items()}
        # (project scripts and data files keyed as experiment.py's are)
        return dsl.build(named, code_roots=dsl.project_roots(self.path.parent))

    def step(self, decl: _Decl, path: list[str]) -> dsl.Step:
        token = decl.record["token"]
        if token in self.steps:
            return self._same_resources(decl, self.steps[token])
        command = self._statics(decl, self._upstream(decl, decl.record["cmd"], path + [decl.attr]))
        record = decl.record
        _check_env(decl)
        tools = list(record["context"]) + list(record["env"])
        env = Env(store_paths=tools, where=decl.where) if tools else None
        options = RunOptions(pure=record["pure"], sandbox=record["sandbox"], network=record["network"],
                             gpu=record["gpu"], allow_empty=record.get("allowEmpty", False),
                             resumable=record.get("resumable", False), checkpoints=record.get("checkpoints", False))
        step = dsl.Step(command, record["name"], env, record["hash"], options, decl.where, record.get("resources"))
        self.steps[token] = step
        return step

    def _same_resources(self, decl: _Decl, step: dsl.Step) -> dsl.Step:
        """Two attributes declaring one step (the same token: resources are not part of it) must not ask for
        different resources: which set its job would get would depend on the order nw read them in."""
        mine = decl.record.get("resources")
        if (mine or None) != (step.resources or None):
            raise NixWorkflowError(f"step '{decl.attr}' ({decl.where}) is the same step as the one at {step.where} "
                                   f"(the same command and options), but asks for other resources ({mine!r} here, "
                                   f"{step.resources!r} there): a step has one set of resources; give both the same")
        return step

    def _upstream(self, decl: _Decl, command: str, path: list[str]) -> str:
        """Replace each checkpoint reference, then each upstream step's Nix token, by its Python placeholder."""
        command = self._checkpoints(decl, command, path)
        def placeholder(m: re.Match[str]) -> str:
            text = m.group(0)
            token = self._token_in(text)
            if token is None:
                raise NixWorkflowError(
                    f"step '{decl.attr}' ({decl.where}) uses a step that is not a top-level attribute of "
                    f"{self.path.name} and whose reference lost its string context (unsafeDiscardStringContext?), "
                    "so nw cannot find it. Make it an attribute of the set the file returns.")
            return str(self.step(self.by_token[token], path)) + text[len(token):]
        return _STEP_TOKEN.sub(placeholder, command)

    def _checkpoints(self, decl: _Decl, command: str, path: list[str]) -> str:
        """Replace each `model.checkpoint "NAME"` (lib.nix: pin, length-prefixed name, then the producer's
        token) by the placeholder of the same dsl.Checkpoint as Python's `model.checkpoint("NAME")`."""
        out: list[str] = []
        pos = 0
        for m in _CHECKPOINT_TOKEN.finditer(command):
            if m.start() < pos:
                continue
            name = command[m.end():].encode()[: int(m.group(2))].decode(errors="replace")
            rest = command[m.end() + len(name):]
            token = self._token_in(rest)
            if token is None:
                raise NixWorkflowError(
                    f"step '{decl.attr}' ({decl.where}) uses checkpoint '{name}' of a step that is not a top-level "
                    f"attribute of {self.path.name} and whose reference lost its string context "
                    "(unsafeDiscardStringContext?), so nw cannot find it. Make it an attribute of the set the file "
                    "returns.")
            producer = self.step(self.by_token[token], path)
            pin = None if m.group(1) == "none" else m.group(1)
            out += [command[pos:m.start()], str(dsl.Checkpoint(producer, name, decl.where, pin))]
            pos = m.end() + len(name) + len(token)
        out.append(command[pos:])
        return "".join(out)

    def _learn(self, decl: _Decl) -> list[_Decl]:
        """Add the steps `decl`'s command interpolates that no top-level attribute holds (bound in a `let`, or made
        by a function): lib.nix describes each in a Nix store file its outPath's string context names, so they run
        as experiment.py's unnamed upstream steps do (nw names them step-…, and links none). Returns the new ones."""
        new: list[_Decl] = []
        for file in decl.record.get("steps", []):
            try:
                record = json.loads(Path(file).read_text())
            except (OSError, ValueError) as e:
                raise NixWorkflowError(f"step '{decl.attr}' ({decl.where}): cannot read the description Nix wrote "
                                       f"of a step it uses ({file}: {getattr(e, 'strerror', None) or e}); run again "
                                       "(the Nix store's garbage collector may have removed it)") from None
            if record["token"] not in self.by_token:
                name = record.get("name")
                where = decl.where if decl.nameless else f"{decl.where}, a step that '{decl.attr}' uses"
                if name is not None:
                    check_step_name(name, where)
                self.by_token[record["token"]] = _Decl(record, name or "(unnamed)", where, nameless=True)
                new.append(self.by_token[record["token"]])
        return new

    def _token_in(self, text: str) -> str | None:
        """The known token a match starts with (the regex's name part may run into the text after it)."""
        return max((t for t in self.by_token if text.startswith(t)), key=len, default=None)

    def _statics(self, decl: _Decl, command: str) -> str:
        """Replace each static token (hash, optional length-prefixed source path) by its store path."""
        out: list[str] = []
        pos = 0
        for m in _STATIC_TOKEN.finditer(command):
            if m.start() < pos:
                continue
            at, end = _length_prefixed(command, m.end(), "@")  # where the `static` call is (lib.nix)
            source, end = _length_prefixed(command, end, "/")
            if source is None:
                at, end = None, m.end()  # a `@…` without a path after it is the command's own text
            out.append(command[pos:m.start()])
            out.append(str(self._static(decl, m.group(1), source, at)))
            pos = end
        out.append(command[pos:])
        return "".join(out)

    def _static(self, decl: _Decl, h: str, source: str | None, at: str | None = None) -> dsl.Static:
        where = at or decl.where
        if source is None:
            return dsl.Static(None, h, where)
        if not os.path.lexists(source):
            if (default_root() / "store" / h).exists():
                return dsl.Static(None, h, where)
            raise NixWorkflowError(f"{where}: static input {source} does not exist. Create it, fix the path, or "
                                   "drop path to use the object already in the store.")
        if not os.path.exists(source):
            raise NixWorkflowError(f"{where}: static input {source} is a symlink to {os.path.realpath(source)}, "
                                   "which does not exist")
        real, actual = statics.content(self.memo, source, where)  # (a symlink: the data it points to)
        if actual != h:
            raise NixWorkflowError(f"{where}: static input {source} has hash {actual}, but the experiment pins {h}"
                                   f"{statics.link_hint(source)}. The file changed: restore it, or update the pinned "
                                   "hash if the change is intended.")
        return dsl.Static(real, h, where)

"""Recipes and their two keys.

A recipe is the canonical description of a step. Its *recipe key* is computable before
anything runs (upstream steps enter by their own recipe keys); its *resolved key*
replaces upstream steps by the content hashes of what they actually produced, so a
changed upstream that reproduces identical bytes leaves every downstream key unchanged
(early cutoff). Neither key contains the store root, a working directory, a time or a
host name, so the same step keys the same in any checkout, store location or machine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nixlib import base32
from nixlib.command import MAX_COMMAND_BYTES, check_length
from nixlib.context import PLACEHOLDERS
from nixlib.errors import NixWorkflowError

# Bumped whenever what a key means changes: 2 = steps run under strict shell semantics (errexit,
# nounset, pipefail) and must produce non-empty outputs, so results realised under 1 are never served.
VERSION = 2
HOST_ENV: dict[str, Any] = {"kind": "host"}


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _unserialisable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _c_encoder() -> Any:
    """The C encoder json.JSONEncoder builds on every call, built once (no circular-reference bookkeeping: a cycle
    ends in RecursionError instead of ValueError). Every key and record digest is one of these, and building the
    encoder was a third of the cost of a small document. None where the json module has no C speedups or builds
    it differently (then JSONEncoder.encode is used, as before)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    try:
        return None if make is None else make(None, _unserialisable, json.encoder.encode_basestring, None, ":", ",",
                                              True, False, False)
    except TypeError:
        return None


_C_ENCODE = _c_encoder()


def canonical_json(value: Any) -> str:
    """UTF-8-safe JSON with sorted keys and no insignificant whitespace: exactly what json.dumps(value,
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False) returns."""
    if _C_ENCODE is None or isinstance(value, str):
        return _CANONICAL.encode(value)
    return "".join(_C_ENCODE(value, 0))


def digest(value: Any) -> str:
    """Nix base32 SHA-256 of a value's canonical JSON."""
    return base32.encode(hashlib.sha256(canonical_json(value).encode()).digest())


@dataclass(frozen=True)
class RunOptions:
    """How a step runs; deliberately not part of its key (a sandbox does not change what a step means)."""

    pure: bool = False
    sandbox: bool = False
    network: bool | None = None  # None: unrestricted when loose, off inside the sandbox (True opens it there)
    gpu: bool = False
    resumable: bool = False  # gets a persistent $state directory that survives failures and interrupts
    allow_empty: bool = False  # an empty output (empty file, directory with no entries) is intended, not a failure
    empty_files: bool = False  # a zero-byte file is a result (a front door whose tool says so: Luigi's marker files)
    checkpoints: bool = False  # publishes named checkpoints under $NW_CHECKPOINTS while it runs (nixlib.checkpoints)


@dataclass(frozen=True)
class Input:
    """A reference in the command: `token` stands for `output` of `step`, or for object `obj`."""

    token: str
    step: Recipe | None = None
    output: str = "out"
    obj: str | None = None


def _growth(token: str) -> int:
    """How much longer the command gets where `token` is replaced by its object's path: a placeholder
    `<root>/placeholders/<32 chars>-<name>` becomes `<root>/store/<52 chars>` (a static's token is that path)."""
    root, sep, _ = token.rpartition(f"/{PLACEHOLDERS}/")
    return len(f"{root}/store/") + 52 - len(token) if sep else 0


@dataclass(eq=False, repr=False)
class Recipe:
    """One step, as every front door hands it to the engine."""

    name: str
    command: str
    inputs: list[Input] = field(default_factory=list)
    env: Mapping[str, Any] = field(default_factory=lambda: dict(HOST_ENV))
    env_paths: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("out",)
    files: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    options: RunOptions = field(default_factory=RunOptions)
    pinned: str | None = None
    shell: str | None = None  # what runs (command.shell_form: nothing reordered); `command` is what is keyed
    _key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.pinned is None:  # a pinned step never runs: only a command that runs must fit in one argument
            command = self.shell or self.command
            # (references at most double a command's length: only a long one can grow past the limit)
            long = len(command) > MAX_COMMAND_BYTES // 2
            check_length(self.name, command, sum(command.count(i.token) * _growth(i.token) for i in self.inputs)
                         if long else 0)

    def __repr__(self) -> str:  # not the dataclass repr: that would recurse through every upstream recipe
        return f"Recipe(name={self.name!r}, command={self.command[:60]!r})"

    def upstream(self) -> list[Recipe]:
        """Distinct upstream recipes, in order of first reference."""
        seen: dict[int, Recipe] = {}
        for i in self.inputs:
            if i.step is not None:
                seen.setdefault(id(i.step), i.step)
        return list(seen.values())

    def document(self, ref: Callable[[Input], str]) -> dict[str, Any]:
        """The keyed document, with each reference rendered by `ref`."""
        command = self.command
        inputs = self.inputs
        rendered = {id(i): "@{" + ref(i) + "}" for i in inputs}  # (each reference rendered once)
        for i in sorted(inputs, key=lambda i: len(i.token), reverse=True) if len(inputs) > 1 else inputs:
            command = command.replace(i.token, rendered[id(i)])
        doc = {
            "v": VERSION,
            "command": command,
            "env": self.env,
            "files": dict(self.files),
            "outputs": sorted(self.outputs),
            "extra": self.extra,
        }
        # Inputs the command does not mention (a Python step reads its inputs itself; a Luigi
        # requires() that the command never interpolates) must still key the step. Only added
        # when present, so every recipe without such inputs keeps its key.
        unmentioned = sorted({rendered[id(i)] for i in inputs if i.token not in self.command})
        if unmentioned:
            doc["uses"] = unmentioned
        # What counts as success is part of what a step means: a step that may leave its output empty
        # must never serve that empty result to the same command declared without allow_empty.
        if self.options.allow_empty:
            doc["allow_empty"] = True
        return doc

    @property
    def key(self) -> str:
        """The recipe key: input-addressed, upstream steps entering by their recipe keys."""
        if self._key is None:  # upstream first, without recursion: chains may be thousands of steps long
            for r in topological([self], done=lambda r: r._key is not None):
                r._key = digest(r.document(_by_recipe))
        return self._key

    def resolved_key(self, realised: Mapping[str, str]) -> str:
        """The key for lookups, given `realised`: token -> object hash for every step reference."""
        return digest(self.document(lambda i: "obj:" + (i.obj or realised[i.token])))


def topological(targets: Iterable[Recipe], done: Callable[[Recipe], bool] = lambda r: False) -> list[Recipe]:
    """Targets and everything upstream, dependencies first (iteratively: no recursion limit on depth).
    Recipes for which `done` holds are neither listed nor looked through. A cycle is an error naming it."""
    order: list[Recipe] = []
    state: dict[int, int] = {}  # 1 on the stack, 2 listed
    for target in targets:
        if state.get(id(target)) or done(target):
            continue
        state[id(target)] = 1
        stack = [(target, iter(target.upstream()))]
        while stack:
            node, ups = stack[-1]
            up = next((u for u in ups if state.get(id(u)) != 2 and not done(u)), None)
            if up is None:
                stack.pop()
                state[id(node)] = 2
                order.append(node)
            elif state.get(id(up)) == 1:
                names = [n.name for n, _ in stack]
                at = next(i for i, (n, _) in enumerate(stack) if n is up)
                raise NixWorkflowError(f"steps form a cycle: {' -> '.join(names[at:] + [up.name])}. A step cannot "
                                       "use its own output, directly or through other steps.")
            else:
                state[id(up)] = 1
                stack.append((up, iter(up.upstream())))
    return order


def _by_recipe(i: Input) -> str:
    if i.step is None:
        return "obj:" + str(i.obj)
    return f"step:{i.step.key}!{i.output}"

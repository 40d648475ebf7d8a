"""Environment specs: what a step runs with, and the identity that enters its recipe key.

One model for every front door (experiment.py, experiment.nix, nixworkflow.yaml for the
Snakemake and Luigi adapters). An `Env` names its packages in one of these ways:

- `packages` from a pinned package set: `nixpkgs={"path": DIR}`, `{"url": URL, "sha256": H}`
  (through `builtins.fetchTarball`, which also takes `file://`), or a flake reference with a
  revision (`"github:NixOS/nixpkgs/<commit>"`);
- `file` (a Nix expression file evaluating to a derivation, a list or a set of them),
  optionally one `attr` of it;
- `store_paths`: explicit `/nix/store` paths (`.drv` paths are derivations);
- `host` (the default): no pin; recorded as such, and `nw run` warns about it.

`resolve(spec)` evaluates the env with Nix (`nixlib.nix`), realises it, and returns a
`ResolvedEnv`: its identity, the sorted `.drv` paths (they pin the whole build closure) that
enter the recipe key, and the output paths that go on the step's PATH. Evaluations are
cached (`nixlib.evalcache`) and realised envs get Nix GC roots under the store root, so a
cached re-run starts no Nix process at all.

Interpolating a tool into a command (`f"{tools['train']}/bin/train"`) adds the tool's
derivation to the step's env, as Nix string context does in experiment.nix: the same step
written both ways has the same env identity and the same recipe key.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import socket
import sys
import threading
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nixlib import nix
from nixlib.errors import NixWorkflowError
from nixlib.evalcache import EvalCache
from nixlib.recipe import HOST_ENV, digest
from nixlib.store import default_root

ALLOW_UNPINNED_VAR = "NIX_WORKFLOW_ALLOW_UNPINNED"
GCROOTS = "nix-gcroots"
_LOCKED_FLAKE = re.compile(r".*[?&](rev=[0-9a-f]{40}|narHash=sha256-).*"
                           r"|(github|gitlab|sourcehut):[^/]+/[^/]+/[0-9a-f]{40}([?].*)?")
_STORE_PATH = re.compile(re.escape(nix.STORE_DIR) + r"/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+._?=-]+")


@dataclass(frozen=True)
class ResolvedEnv:
    """An env after evaluation: `identity` enters the recipe key, `paths` go on the step's PATH."""

    identity: dict[str, Any]
    paths: tuple[str, ...] = ()

    @property
    def is_host(self) -> bool:
        return self.identity.get("kind") == "host"


HOST = ResolvedEnv(dict(HOST_ENV))


class UnpinnedSource(NixWorkflowError):
    """An env names a package source that can change under the same name (a channel, a bare URL)."""


def allow_unpinned() -> bool:
    """True when the user opted into unpinned sources (`--allow-unpinned` or NIX_WORKFLOW_ALLOW_UNPINNED=1)."""
    return os.environ.get(ALLOW_UNPINNED_VAR, "") not in ("", "0")


def _caller() -> str:
    """file:line of the code that declared an env (skipping nixlib and the dataclass-generated __init__)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/nixlib/" not in frame.filename.replace("\\", "/") and frame.filename != "<string>":
            return f"{frame.filename}:{frame.lineno}"
    return "<unknown>"


@dataclass(frozen=True)
class Env:
    """An environment spec (see the module docstring); relative paths are taken from the current directory.

    `env["name"]` is one package's output path (a `Tool`, a str): interpolate it into a command to run
    that exact build (`f"{env['train']}/bin/train"`); `str(env)` does the same for a one-package env.
    """

    packages: Sequence[str] = ()
    nixpkgs: Any = None
    file: str | os.PathLike | None = None
    attr: str | None = None
    store_paths: Sequence[str] = ()
    host: bool = False
    where: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "packages", (self.packages,) if isinstance(self.packages, str) else tuple(self.packages))
        set_(self, "store_paths", (self.store_paths,) if isinstance(self.store_paths, str) else
             tuple(str(p) for p in self.store_paths))
        if self.file is not None:
            set_(self, "file", os.path.abspath(self.file))
        set_(self, "nixpkgs", _source(self.nixpkgs) if self.packages or self.nixpkgs is not None else None)
        if not self.where:
            set_(self, "where", _caller())
        self._check()

    def _check(self) -> None:
        bad = [p for p in self.packages if not isinstance(p, str) or not p]
        if bad:
            raise NixWorkflowError(f"env at {self.where}: packages must be attribute names like 'python3' or "
                                   f"'python3Packages.numpy', not {bad[0]!r}")
        foreign = [p for p in self.store_paths if not p.startswith(nix.STORE_DIR + "/")]
        if foreign:
            raise NixWorkflowError(f"env at {self.where}: store path {foreign[0]} is not under {nix.STORE_DIR}")
        if self.attr is not None and self.file is None:
            raise NixWorkflowError(f"env at {self.where}: attr={self.attr!r} needs file= (the Nix file it is in)")
        if self.host and (self.packages or self.file or self.store_paths):
            raise NixWorkflowError(f"env at {self.where}: host=True cannot be combined with packages, file or "
                                   "store paths")

    def request(self) -> dict[str, Any]:
        """What Nix is asked to evaluate: the cache key of the evaluation (canonical, absolute paths)."""
        return {"packages": [p.split(".") for p in self.packages], "source": self.nixpkgs, "file": self.file,
                "attr": self.attr.split(".") if self.attr else None}

    def with_paths(self, paths: Iterable[str]) -> Env:
        """This env plus explicit store paths (the tools a command interpolates)."""
        extra = [p for p in paths if p not in self.store_paths]
        return replace(self, store_paths=tuple(self.store_paths) + tuple(extra), host=False) if extra else self

    def __getitem__(self, name: str) -> Tool:
        for attr, drv in _evaluate(self):
            if attr == name:
                return _tool(drv, name)
        names = ", ".join(a for a, _ in _evaluate(self)) or "none"
        raise NixWorkflowError(f"env at {self.where} has no package '{name}' (it has {names})")

    def __str__(self) -> str:
        drvs = _evaluate(self)
        if len(drvs) != 1:
            raise NixWorkflowError(f"env at {self.where} has {len(drvs)} packages; interpolate one of them with "
                                   "env['name'] instead of the whole env")
        return str(_tool(drvs[0][1], drvs[0][0]))

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class Tool(str):
    """The output path of one package of an env; interpolating it puts its derivation in the step's env."""

    drv: str
    name: str


_TOOLS: dict[str, str] = {}  # output path -> .drv path, for tools handed out in this process


def _tool(drv: str, name: str) -> Tool:
    outputs = nix.drv_outputs(drv)
    path = outputs.get("out") or next(iter(outputs.values()), None)
    if path is None:
        raise NixWorkflowError(f"cannot read the outputs of {drv} (package '{name}')")
    for out in outputs.values():
        _TOOLS[out] = drv
    tool = Tool(path)
    tool.drv, tool.name = drv, name
    return tool


def context_of(command: str) -> list[str]:
    """The derivations of the tools a command interpolates (this process's string context)."""
    if not _TOOLS:  # no tool handed out in this process: nothing to find (asked for every task of a graph)
        return []
    found: dict[str, None] = {}
    for m in _STORE_PATH.finditer(command):
        drv = _TOOLS.get(m.group(0))
        if drv is not None:
            found[drv] = None
    return list(found)


# ---- package sources --------------------------------------------------------------------


def _source(value: Any) -> dict[str, Any]:
    """A package source in canonical form; whether it is pinned is decided by `_check_pinned`."""
    if value is None:
        return {"kind": "nixpath", "name": "nixpkgs"}
    if isinstance(value, os.PathLike):
        return {"kind": "path", "path": os.path.abspath(value)}
    if isinstance(value, str):
        return _source_of_string(value)
    if isinstance(value, Mapping):
        return dict(value) if "kind" in value else _source_of_mapping(dict(value))
    raise NixWorkflowError(f"nixpkgs must be a path, a URL with sha256, or a flake reference, not {value!r}")


def _source_of_string(value: str) -> dict[str, Any]:
    if value.startswith("<") and value.endswith(">"):
        return {"kind": "nixpath", "name": value[1:-1]}
    if value.startswith("channel:"):
        return {"kind": "unpinned-url", "url": f"https://nixos.org/channels/{value[8:]}/nixexprs.tar.xz"}
    if re.match(r"^(https?|file|ftp)://", value):
        return {"kind": "unpinned-url", "url": value}
    if ":" in value:
        return {"kind": "flake", "ref": value}
    return {"kind": "path", "path": os.path.abspath(value)}


def _source_of_mapping(value: dict[str, Any]) -> dict[str, Any]:
    args = value.pop("args", None)
    known = {"path", "url", "sha256", "flake"}
    unknown = sorted(set(value) - known)
    if unknown or not value:
        raise NixWorkflowError(f"nixpkgs takes path, url (+ sha256), flake or args; got {', '.join(unknown) or 'none'}")
    if "path" in value:
        out: dict[str, Any] = {"kind": "path", "path": os.path.abspath(value["path"])}
    elif "flake" in value:
        out = {"kind": "flake", "ref": str(value["flake"])}
    elif value.get("sha256"):
        out = {"kind": "url", "url": str(value["url"]), "sha256": str(value["sha256"])}
    else:
        out = {"kind": "unpinned-url", "url": str(value.get("url"))}
    if args is not None:
        if not isinstance(args, Mapping):
            raise NixWorkflowError("nixpkgs args must be a mapping (the argument set the package set is called with)")
        out["args"] = dict(args)
    return out


def _check_pinned(env: Env) -> None:
    """Refuse a source that can change under the same name, showing how to pin it."""
    source = env.nixpkgs
    if source is None or allow_unpinned():
        return
    kind = source["kind"]
    if kind == "flake" and _LOCKED_FLAKE.fullmatch(source["ref"]):
        return
    if kind in ("path", "url"):
        return
    packages = ", ".join(env.packages) or "packages"
    if kind == "nixpath":
        what = f"<{source['name']}> (a channel on the Nix search path)"
        how = ("nixpkgs={'url': 'https://github.com/NixOS/nixpkgs/archive/<commit>.tar.gz', 'sha256': '<output of "
               "nix-prefetch-url --unpack URL>'} or nixpkgs={'path': '/path/to/a/nixpkgs/checkout'}")
    elif kind == "unpinned-url":
        what = f"{source['url']} (a URL without sha256)"
        how = f"add sha256 = the output of `nix-prefetch-url --unpack {source['url']}`"
    else:
        what = f"flake {source['ref']} (no revision)"
        how = "name a revision, e.g. github:NixOS/nixpkgs/<40-character commit>, or add ?rev=<commit>"
    raise UnpinnedSource(f"env at {env.where}: {packages} would come from {what}, which is not pinned: the same "
                         f"name can give different packages tomorrow. Pin it: {how}. To run unpinned anyway, "
                         f"{nix.UNPINNED_OPT_IN}; the run is then not reproducible.")


# ---- evaluation and realisation ----------------------------------------------------------

_LOCK = threading.RLock()
_EVALUATED: dict[str, list[tuple[str, str]]] = {}
_RESOLVED: dict[str, ResolvedEnv] = {}


def _root() -> Path:
    return default_root().absolute()


def _evaluate(env: Env) -> list[tuple[str, str]]:
    """(attribute, .drv path) of every derivation the env names, from memory, the cache, or Nix."""
    if not env.packages and env.file is None:
        return []
    _check_pinned(env)
    unpinned = allow_unpinned()
    try:
        request = {"what": "env", "spec": env.request(), "nix": nix.fingerprint(), "system": _system()}
    except nix.NixMissing as e:
        raise nix.NixMissing(f"env at {env.where}: {e}") from None
    _check_paths_exist(env)
    memo_key = digest([request, unpinned])
    with _LOCK:
        if memo_key in _EVALUATED:
            return _EVALUATED[memo_key]
        cache = EvalCache(_root())
        value = None if unpinned else cache.get(request, _drvs_exist)
        if value is None:
            value = _run_nix(env, unpinned, cache, request)
        result = [(str(v["attr"]), str(v["drv"])) for v in value]
        _EVALUATED[memo_key] = result
        return result


def _check_paths_exist(env: Env) -> None:
    """A missing `file` or nixpkgs `path` is named here, not by Nix's "getting status of" message. Relative paths
    of an Env are taken from the current directory (unlike static()'s): if the path exists beside the file that
    declares the env instead, say so, since that is what was meant when `nw run dir/experiment.py` ran elsewhere."""
    source = env.nixpkgs if env.packages else None
    named = [("file", env.file)]
    if source and source.get("kind") == "path":
        named.append(("nixpkgs path", source["path"]))
    for what, path in named:
        if path is None or os.path.lexists(path):
            continue
        hint = ""
        declared_in = env.where.rsplit(":", 1)[0]
        relative = os.path.relpath(path)
        if declared_in.endswith(".py") and os.path.isfile(declared_in) and not relative.startswith(".."):
            beside = os.path.join(os.path.dirname(os.path.abspath(declared_in)), relative)
            if os.path.lexists(beside):
                hint = (f" (an Env's relative paths are taken from the current directory, {os.getcwd()}, not from the "
                        f"file that declares it; {beside} exists: write Path(__file__).parent / {relative!r} to use "
                        "it from any directory)")
        raise NixWorkflowError(f"env at {env.where}: its {what} {path} does not exist{hint}")


def _run_nix(env: Env, unpinned: bool, cache: EvalCache, request: dict[str, Any]) -> list[dict[str, str]]:
    args = {**env.request(), "allowUnpinned": unpinned}
    evaluation = nix.evaluate(nix.LIB_DIR / "env.nix", args, f"the env at {env.where}", unpinned)
    deps = [str(nix.LIB_DIR), *evaluation.deps]  # nixworkflow's own Nix code decides the result too
    if env.file is not None:
        deps.append(env.file)
    if env.nixpkgs and env.nixpkgs["kind"] == "path":
        deps.append(env.nixpkgs["path"])
    if not unpinned:
        cache.put(request, evaluation.value, deps)
    return evaluation.value


def _system() -> str:
    return f"{platform.machine()}-{sys.platform}"


def _drvs_exist(value: Any) -> bool:
    try:
        return all(os.path.exists(v["drv"]) for v in value)
    except (TypeError, KeyError):
        return False


def resolve(spec: Any) -> ResolvedEnv:
    """Resolve an env spec; None and "host" mean the host runtime (recorded as unpinned).

    Accepts an `Env`, one package of an env (`env["name"]`), a list of these (their union), a
    `ResolvedEnv` (returned as is), None/"host", or a mapping in the nixworkflow.yaml form
    (`{"packages": [...], "nixpkgs": {...}}`, `{"file": ...}`, ...).
    """
    if spec is None or spec == "host":
        return HOST
    if isinstance(spec, ResolvedEnv):
        return spec
    if isinstance(spec, Tool):
        spec = Env(store_paths=[spec.drv], where=f"package '{spec.name}'")
    if isinstance(spec, list | tuple):
        return _union([resolve(s) for s in spec])
    if isinstance(spec, Mapping):
        spec = Env(**_mapping_args(spec))
    if not isinstance(spec, Env):
        raise NixWorkflowError(f"unsupported env spec {spec!r}: use nixlib.Env(...), a mapping, None or 'host'")
    if spec.host:
        return HOST
    drvs = [drv for _, drv in _evaluate(spec)]
    return _realised(drvs, list(spec.store_paths), spec.where)


def _union(envs: list[ResolvedEnv]) -> ResolvedEnv:
    """Several envs as one: all their derivations and paths (host parts add nothing)."""
    pinned = [e for e in envs if not e.is_host]
    if not pinned:
        return HOST
    drvs = sorted({d for e in pinned for d in e.identity.get("drvs", [])})
    plain = sorted({p for e in pinned for p in e.identity.get("paths", [])})
    identity: dict[str, Any] = {"kind": "nix", "drvs": drvs, **({"paths": plain} if plain else {})}
    return ResolvedEnv(identity, tuple(dict.fromkeys(p for e in pinned for p in e.paths)))


def resolve_for(spec: Any, command: str) -> ResolvedEnv:
    """The env of a step: its spec plus the tools its command interpolates (string context)."""
    tools = context_of(command)
    if not tools:
        return resolve(spec)
    if not isinstance(spec, Env | Mapping | None | str):
        return _union([resolve(spec), resolve(Env(store_paths=tools, where="the command's interpolated tools"))])
    if spec is None or spec == "host" or (isinstance(spec, Env) and spec.host):
        spec = Env(store_paths=tools, where="the command's interpolated tools")
    elif isinstance(spec, Mapping):
        spec = Env(**_mapping_args(spec)).with_paths(tools)
    elif isinstance(spec, Env):
        spec = spec.with_paths(tools)
    return resolve(spec)


def _mapping_args(spec: Mapping[str, Any]) -> dict[str, Any]:
    allowed = {"packages", "nixpkgs", "file", "attr", "store_paths", "host"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise NixWorkflowError(f"unknown env key(s) {', '.join(unknown)}; an env takes {', '.join(sorted(allowed))}")
    return dict(spec)


def _realised(drvs: list[str], explicit: list[str], where: str) -> ResolvedEnv:
    """Realise the env (unless every output is present and rooted) and describe it."""
    drvs = list(dict.fromkeys(drvs + [p for p in explicit if p.endswith(".drv")]))
    plain = list(dict.fromkeys(p for p in explicit if not p.endswith(".drv")))
    identity: dict[str, Any] = {"kind": "nix", "drvs": sorted(drvs)}
    if plain:
        identity["paths"] = sorted(plain)
    key = digest(identity)
    memo_key = f"{_root()}:{digest([drvs, plain])}"  # order matters: it is the PATH order
    with _LOCK:
        if memo_key in _RESOLVED:
            return _RESOLVED[memo_key]
        outputs = [out for drv in drvs for out in nix.drv_outputs(drv).values()]
        root = _gcroot(key)
        complete = all(nix.drv_outputs(d) for d in drvs) and all(os.path.exists(p) for p in outputs + plain)
        if not (complete and os.path.lexists(root)):
            if nix.DEFER_BUILDS:  # evaluated, not built: nw builds only the envs of the steps a run runs
                return ResolvedEnv(identity, tuple(dict.fromkeys(outputs + plain)))
            count = len(drvs) + len(plain)
            print(f"nw: building the env at {where} with Nix ({count} store path{'s' * (count != 1)})",
                  file=sys.stderr, flush=True)
            _make_gcroot_dir(root.parent)
            nix.realise([*drvs, *plain], root, f"the env at {where}")
            outputs = [out for drv in drvs for out in nix.drv_outputs(drv).values()]
        resolved = ResolvedEnv(identity, tuple(dict.fromkeys(outputs + plain)))
        _RESOLVED[memo_key] = resolved
        return resolved


def build(identity: Mapping[str, Any], where: str) -> ResolvedEnv:
    """Build and root the Nix env a recipe's env identity names, for a step about to run: `nw` evaluates envs
    without building them (nix.DEFER_BUILDS)."""
    return _realised(list(identity.get("drvs", [])), list(identity.get("paths", [])), where)


def _gcroot(key: str) -> Path:
    """Where the Nix GC root of an env lives: `<store root>/nix-gcroots/<host>/<identity digest>`.

    Per host, because each host's Nix registers (and collects) its own roots: a store shared over
    NFS must not make one host believe an env is rooted because another host rooted it. Only the path: its
    directory is made when an env is built (_make_gcroot_dir), so that a query (`nw status`, `nw dag`, `nw run -n`)
    which evaluates envs without building them leaves a store that does not exist yet uncreated."""
    return _root() / GCROOTS / socket.gethostname() / key


def _make_gcroot_dir(directory: Path) -> None:
    """Make the per-host GC-root directory and its parent (1777: every user of a shared store roots envs there)."""
    for d in (directory.parent, directory):
        if not d.is_dir():
            d.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                d.chmod(0o1777)


def clear_memo() -> None:
    """Forget this process's evaluations and realisations (tests; long-lived adapters after a store change)."""
    with _LOCK:
        _EVALUATED.clear()
        _RESOLVED.clear()

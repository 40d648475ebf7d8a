"""The side-car `nixworkflow.yaml`: envs for pipelines whose own files stay unchanged.

The Snakemake and Luigi adapters read it next to the Snakefile / the Luigi module, so an
existing pipeline gains pinned runtimes without an edit:

    nixpkgs:                       # where `packages` come from (optional; an env may name its own)
      url: https://github.com/NixOS/nixpkgs/archive/<commit>.tar.gz
      sha256: <output of nix-prefetch-url --unpack URL>
    env:                           # the default env (omitted: host, not pinned)
      packages: [python3, coreutils]
    envs:                          # named envs
      train:
        packages: [python3Packages.torch]
        gpu: true                  # run options: pure, sandbox, network, gpu
      tools: {file: nix/default.nix, attr: train}
      prebuilt: {store_paths: [/nix/store/...-foo]}
      legacy: host
    steps:                         # step (rule, task) name -> env name
      train_model: train

Relative paths are taken from the file's directory. Every mistake is reported with the file,
line and key path (`nixworkflow.yaml:7: envs.train.packages: ...`), before any step runs.

    cfg = load_config("nixworkflow.yaml")     # or find_config(directory) -> Path | None
    cfg.env()        # the default Env, or None (host)
    cfg.env("train") # a named Env; unknown names are an error listing the known ones
    cfg.env_for("train_model"), cfg.options_for("train_model")   # via `steps:`, else the default
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nixlib.env import Env, _check_pinned
from nixlib.errors import NixWorkflowError
from nixlib.recipe import RunOptions

FILENAME = "nixworkflow.yaml"
TOP_KEYS = ("nixpkgs", "env", "envs", "steps")
ENV_KEYS = ("packages", "nixpkgs", "file", "attr", "store_paths", "pure", "sandbox", "network", "gpu")
SOURCE_KEYS = ("path", "url", "sha256", "flake", "args")
OPTION_KEYS = ("pure", "sandbox", "network", "gpu")


class ConfigError(NixWorkflowError):
    """A malformed nixworkflow.yaml; the message names the file, line and key."""


@dataclass
class _Entry:
    env: Env | None
    options: RunOptions


@dataclass
class Config:
    """A loaded nixworkflow.yaml: the default env, named envs and the step -> env map."""

    path: Path
    default: _Entry = field(default_factory=lambda: _Entry(None, RunOptions()))
    envs: dict[str, _Entry] = field(default_factory=dict)
    steps: dict[str, str] = field(default_factory=dict)

    def _entry(self, name: str | None) -> _Entry:
        if name is None:
            return self.default
        if name not in self.envs:
            known = ", ".join(sorted(self.envs)) or "none"
            raise ConfigError(f"{self.path}: no env named '{name}' (envs: {known})")
        return self.envs[name]

    def env(self, name: str | None = None) -> Env | None:
        """The named env (None: the default env); None means host. Pass it to nixlib.env.resolve."""
        return self._entry(name).env

    def options(self, name: str | None = None) -> RunOptions:
        """The run options (pure, sandbox, network, gpu) the env entry sets; defaults otherwise."""
        return self._entry(name).options

    def env_for(self, step: str) -> Env | None:
        """The env of a step (Snakemake rule, Luigi task family): `steps:` mapping, else the default."""
        return self.env(self.steps.get(step))

    def options_for(self, step: str) -> RunOptions:
        return self.options(self.steps.get(step))


def find_config(directory: str | os.PathLike) -> Path | None:
    """`directory/nixworkflow.yaml` if it exists."""
    candidate = Path(directory) / FILENAME
    return candidate if candidate.is_file() else None


def load_config(path: str | os.PathLike) -> Config:
    """Parse and check a nixworkflow.yaml (no Nix runs; envs are evaluated when resolved)."""
    path = Path(path).absolute()
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error(path, e)) from None
    return _Reader(path).config(root)


def _yaml_error(path: Path, e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = getattr(e, "problem", None) or str(e)
    return f"{where}: not valid YAML: {problem}"


class _Reader:
    """Walks the YAML node tree, converting and checking values while their line numbers are known."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def fail(self, node: yaml.Node, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}:{node.start_mark.line + 1}: {key}: {problem}")

    def where(self, node: yaml.Node) -> str:
        return f"{self.path}:{node.start_mark.line + 1}"

    def mapping(self, node: yaml.Node, key: str, allowed: tuple[str, ...]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key, f"expected a mapping with keys {', '.join(allowed)}")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else None
            full = f"{key}.{name}" if key else str(name)
            if name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f"; allowed: {', '.join(allowed)}"
                raise self.fail(k, full, f"unknown key{hint}")
            if name in out:
                raise self.fail(k, full, "given twice")
            out[name] = (k, v)
        return out

    def scalar(self, node: yaml.Node, key: str, kind: type, what: str) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value = _construct(node)
            if isinstance(value, kind) and not (kind is str and value == ""):
                return value
        raise self.fail(node, key, f"expected {what}")

    def strings(self, node: yaml.Node, key: str, what: str) -> list[str]:
        if isinstance(node, yaml.ScalarNode):
            return [self.scalar(node, key, str, what)]
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.fail(node, key, f"expected a list of {what}")
        return [self.scalar(item, f"{key}[{i}]", str, what) for i, item in enumerate(node.value)]

    def config(self, root: yaml.Node | None) -> Config:
        cfg = Config(self.path)
        if root is None:
            return cfg
        top = self.mapping(root, "", TOP_KEYS)
        source = self.source(top["nixpkgs"][1], "nixpkgs") if "nixpkgs" in top else None
        if "env" in top:
            cfg.default = self.entry(top["env"][1], "env", source)
        if "envs" in top:
            envs = top["envs"][1]
            if not isinstance(envs, yaml.MappingNode):
                raise self.fail(envs, "envs", "expected a mapping of env names to envs")
            for k, v in envs.value:
                cfg.envs[str(k.value)] = self.entry(v, f"envs.{k.value}", source)
        if "steps" in top:
            cfg.steps = self.steps(top["steps"][1], cfg)
        return cfg

    def steps(self, node: yaml.Node, cfg: Config) -> dict[str, str]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, "steps", "expected a mapping of step names to env names")
        out: dict[str, str] = {}
        for k, v in node.value:
            env = self.scalar(v, f"steps.{k.value}", str, "an env name")
            if env not in cfg.envs:
                raise self.fail(v, f"steps.{k.value}", f"no env named '{env}' under envs "
                                f"(envs: {', '.join(sorted(cfg.envs)) or 'none'})")
            out[str(k.value)] = env
        return out

    def entry(self, node: yaml.Node, key: str, source: Any) -> _Entry:
        if isinstance(node, yaml.ScalarNode) and node.value == "host":
            return _Entry(Env(host=True, where=self.where(node)), RunOptions())
        if isinstance(node, yaml.ScalarNode):
            raise self.fail(node, key, "expected 'host' or a mapping with packages, file or store_paths")
        fields = self.mapping(node, key, ENV_KEYS)
        options = RunOptions(**{o: self.scalar(fields[o][1], f"{key}.{o}", bool, "true or false")
                                for o in OPTION_KEYS if o in fields})
        args = self.env_args(node, fields, key, source)
        where = self.where(node)
        try:
            env = Env(**args, where=where)
        except NixWorkflowError as e:
            raise self.fail(node, key, _detail(e, where)) from None
        try:
            _check_pinned(env)
        except NixWorkflowError as e:
            culprit = fields["nixpkgs"][1] if "nixpkgs" in fields else node
            raise self.fail(culprit, key, _detail(e, where)) from None
        return _Entry(env, options)

    def env_args(self, node: yaml.Node, fields: dict[str, tuple[yaml.Node, yaml.Node]], key: str,
                 source: Any) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if "packages" in fields:
            args["packages"] = self.strings(fields["packages"][1], f"{key}.packages", "package attribute names")
            args["nixpkgs"] = source
        if "nixpkgs" in fields:
            args["nixpkgs"] = self.source(fields["nixpkgs"][1], f"{key}.nixpkgs")
        if "file" in fields:
            args["file"] = self.local(self.scalar(fields["file"][1], f"{key}.file", str, "a path to a .nix file"))
        if "attr" in fields:
            args["attr"] = self.scalar(fields["attr"][1], f"{key}.attr", str, "an attribute name")
        if "store_paths" in fields:
            args["store_paths"] = self.strings(fields["store_paths"][1], f"{key}.store_paths", "/nix/store paths")
        if not ({"packages", "file", "store_paths"} & set(fields)):
            raise self.fail(node, key, "an env needs packages, file or store_paths (or is just 'host')")
        return args

    def source(self, node: yaml.Node, key: str) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value = self.scalar(node, key, str, "a path, a flake reference, or a mapping with url and sha256")
            return value if ":" in value or value.startswith("<") else self.local(value)
        fields = self.mapping(node, key, SOURCE_KEYS)
        out: dict[str, Any] = {}
        for name, (_, v) in fields.items():
            if name == "args":
                out[name] = _construct(v)
                continue
            out[name] = self.scalar(v, f"{key}.{name}", str, "a string")
        if "sha256" in out and "url" not in out:
            raise self.fail(node, key, "sha256 needs url")
        if not ({"path", "url", "flake"} & set(out)):
            raise self.fail(node, key, "expected path, url (with sha256) or flake")
        if "path" in out:
            out["path"] = self.local(out["path"])
        return out

    def local(self, value: str) -> str:
        return str((self.base / os.path.expanduser(value)).absolute())


def _detail(e: Exception, where: str) -> str:
    """An env error without its `env at FILE:LINE:` prefix (the config error names the line already)."""
    return str(e).removeprefix(f"env at {where}: ")


def _construct(node: yaml.Node) -> Any:
    """The plain Python value of a node (YAML's own typing: `true` is a bool, `3` an int)."""
    return yaml.SafeLoader("").construct_object(node, deep=True)

"""Where NixTasks find their store, engine and envs.

Settings come from a `[nixworkflow]` section of luigi.cfg, each key overridden by an environment
variable (`NIX_WORKFLOW_ENV=gpu`): `store`, `config` (the side-car nixworkflow.yaml), `env` (the
default env's name), `out_link` and `force`; and the remote cache's `remote`, `push`, `secret_key_file`
and `trusted_public_keys` (docs/remote.md). Everything here is memoised per process because
`complete()` runs many times in every worker; `reset()` forgets it all
(tests, long-lived interpreters that change settings).
"""

from __future__ import annotations

import configparser
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import luigi

from luigi_nixworkflow import journal
from nixlib import env as envmod
from nixlib.config import FILENAME as CONFIG_FILE
from nixlib.config import Config, check_push_flag, check_remote_url, find_config, load_config
from nixlib.engine import Engine
from nixlib.errors import NixWorkflowError
from nixlib.recipe import RunOptions
from nixlib.store import Store, default_root

logger = logging.getLogger("luigi-interface")


@dataclass(frozen=True)
class nixworkflow:  # noqa: N801 - named after its luigi.cfg section
    """The `[nixworkflow]` section of luigi.cfg, each key overridden by its NIX_WORKFLOW_* variable.

    Deliberately not a luigi.Config: Luigi would add a global `--nixworkflow-*` flag per key, and
    argparse's abbreviations of every other flag (`--n 20` for `--n-days`) would become ambiguous
    in every module that merely imports this package."""

    store: str | None = None  # store root (default: $NIX_WORKFLOW_STORE or /nix-workflow)
    config: str | None = None  # path of nixworkflow.yaml (default: ./nixworkflow.yaml next to the module or here)
    env: str | None = None  # name of the env (in nixworkflow.yaml) of NixTasks that give none
    out_link: str = "nix-workflow-output"  # where NixTasks' outputs are linked ('' or 'none': no links)
    force: tuple[str, ...] = ()  # task families (or '*') run again even when the store has their result

    @classmethod
    def read(cls) -> nixworkflow:
        """luigi.cfg's [nixworkflow] section; NIX_WORKFLOW_CONFIG, _ENV, _OUT_LINK and _FORCE override it
        (the store keeps its own order: luigi.cfg's `store`, else $NIX_WORKFLOW_STORE)."""
        cfg = luigi.configuration.get_config()

        def get(key: str, default: str | None) -> str | None:
            variable = os.environ.get(f"NIX_WORKFLOW_{key.upper()}")
            if variable is not None and key != "store":
                return variable
            return cfg.get("nixworkflow", key, default)

        _check_keys(cfg)
        force = get("force", "") or ""
        out_link = get("out_link", "nix-workflow-output") or ""
        if out_link and out_link.lower() != "none" and os.path.exists(out_link) and not os.path.isdir(out_link):
            # (Store.link_output's makedirs raised a raw "[Errno 17] File exists" out of every complete())
            raise NixWorkflowError(f"[nixworkflow] out_link (or NIX_WORKFLOW_OUT_LINK) names {out_link}, which is a "
                                   "file; outputs are linked in a directory: name another, or 'none' for no links")
        return cls(store=get("store", None) or None, config=get("config", None) or None, env=get("env", None) or None,
                   out_link=out_link,
                   force=tuple(f.strip() for f in force.replace(",", " ").split() if f.strip()))

    def forced(self, family: str) -> bool:
        return "*" in self.force or family in self.force


_SETTINGS: list[nixworkflow] = []
_ROOTS: dict[str | bytes | None, str] = {}  # by NIX_WORKFLOW_STORE as _RAW_ENVIRON holds it
# os.environ's own storage on POSIX (bytes -> bytes: what os.environ reads and writes; a bare os.putenv
# bypasses both, as before); None elsewhere, where the str mapping is read instead
_RAW_ENVIRON: dict[bytes, bytes] | None = getattr(os.environ, "_data", None) if os.name == "posix" else None
_ENGINES: dict[str, Engine] = {}
_CONFIGS: dict[str, Config] = {}
_CHOICES: dict[tuple[type, str], EnvChoice] = {}
_ENVS: dict[str, envmod.ResolvedEnv] = {}
_WARNED: set[str] = set()


def reset() -> None:
    """Forget settings, engines and resolved envs (they are otherwise read once per process)."""
    for memo in (_SETTINGS, _ROOTS, _ENGINES, _CONFIGS, _CHOICES, _ENVS, _WARNED):
        memo.clear()
    envmod.clear_memo()
    for variable, value in _EXPORTED.items():  # the remote settings luigi.cfg exported, unless changed since
        if os.environ.get(variable) == value:
            del os.environ[variable]
    _EXPORTED.clear()


def _check_keys(cfg: Any) -> None:
    """A key of [nixworkflow] that nothing reads is an error naming it: a misspelt `forced` or `out-dir` was
    silently ignored (Luigi itself accepts `out-link` for `out_link`, so both spellings are known)."""
    if not isinstance(cfg, configparser.ConfigParser) or not cfg.has_section("nixworkflow"):
        return
    known = {"store", "config", "env", "out_link", "force", *_REMOTE_KEYS}
    defaults = set(cfg.defaults())
    unknown = sorted(k for k in cfg.options("nixworkflow") if k not in defaults and k.replace("-", "_") not in known)
    if unknown:
        raise NixWorkflowError(f"luigi.cfg [nixworkflow]: unknown key {unknown[0]!r}; the keys are "
                               f"{', '.join(sorted(known))} (docs/luigi.md, docs/remote.md)")


_REMOTE_KEYS = {"remote": "NIX_WORKFLOW_REMOTE", "push": "NIX_WORKFLOW_PUSH",
                "secret_key_file": "NIX_WORKFLOW_SECRET_KEY_FILE", "trusted_public_keys": "NIX_WORKFLOW_TRUSTED_KEYS"}
_EXPORTED: dict[str, str] = {}


def export_remote_settings() -> None:
    """luigi.cfg's [nixworkflow] remote, push, secret_key_file and trusted_public_keys become the NIX_WORKFLOW_*
    variables the engine reads (docs/remote.md), unless the variable is set (the environment wins, as for every
    key here); worker processes inherit them. A relative key file is taken from the working directory."""
    cfg = luigi.configuration.get_config()
    check_remote_url(os.environ.get("NIX_WORKFLOW_REMOTE"), "NIX_WORKFLOW_REMOTE")
    check_push_flag(os.environ.get("NIX_WORKFLOW_PUSH"), "NIX_WORKFLOW_PUSH")
    for key, variable in _REMOTE_KEYS.items():
        value = (cfg.get("nixworkflow", key, None) or "").strip()
        if not value or os.environ.get(variable):
            continue
        if key == "remote":
            check_remote_url(value, "luigi.cfg [nixworkflow] remote")
        if key == "push":
            check_push_flag(value, "luigi.cfg [nixworkflow] push")
        if key == "secret_key_file":
            value = str(Path(value).expanduser().absolute())
        os.environ[variable] = _EXPORTED[variable] = value


def settings() -> nixworkflow:
    if not _SETTINGS:
        _SETTINGS.append(nixworkflow.read())
    return _SETTINGS[0]


def store_root() -> str:
    """The store root as placeholders spell it (absolute, no trailing slash); follows NIX_WORKFLOW_STORE.

    Asked about ten times per cached task: the variable is read as the raw bytes os.environ keeps (its
    mapping methods encode the key and decode the value on every call), and the answer is memoised by it."""
    raw = _store_variable()
    root = _ROOTS.get(raw)
    if root is None:
        variable = os.environ.get("NIX_WORKFLOW_STORE")
        configured = settings().store
        root = _ROOTS[raw] = str(Path(configured or default_root()).absolute())
        if configured and variable != root:  # the rest of nixlib (env GC roots, eval cache) follows it too
            os.environ["NIX_WORKFLOW_STORE"] = root
            _ROOTS[_store_variable()] = root
    return root


def _store_variable() -> str | bytes | None:
    if _RAW_ENVIRON is None:
        return os.environ.get("NIX_WORKFLOW_STORE")
    return _RAW_ENVIRON.get(b"NIX_WORKFLOW_STORE")


STORE_SETTING = "the `store` key of [nixworkflow] in luigi.cfg (or NIX_WORKFLOW_STORE=DIR)"
"""How a Luigi user chooses the store, for the store's own errors (nixlib's Store takes it as `setting`)."""


def engine(root: str | None = None) -> Engine:
    """One engine per store root and process: its memo of realised results serves every complete()."""
    root = root or store_root()
    found = _ENGINES.get(root)
    if found is None:
        export_remote_settings()  # the engine asks the remote NIX_WORKFLOW_REMOTE names on a local miss
        found = _ENGINES[root] = Engine(Store(root, setting=STORE_SETTING), echo=_echo)
        journal.attach(found, settings().out_link)  # nw view: this process's tasks and their states, live
    return found


def _echo(step: str, line: str) -> None:
    logger.info("[%s] %s", step, line)


# ---- envs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvChoice:
    """Where a task's env comes from: the spec to resolve, and the run options its config entry sets."""

    spec: Any
    options: RunOptions
    origin: str


def resolve_env(cls: type, command: str = "", choice: EnvChoice | None = None) -> tuple[envmod.ResolvedEnv, RunOptions]:
    """The task's env, resolved, plus the Nix tools its command interpolates
    (`f"{tools['train']}/bin/train"`, as in experiment.py), and its run options. `choice`: choose_env(cls),
    if the caller has it already (it is asked for every task of a cached graph)."""
    family = cls.get_task_family()
    choice = choice or choose_env(cls)
    memo_key = repr((choice.spec, envmod.context_of(command)))
    resolved = _ENVS.get(memo_key)
    if resolved is None:
        try:
            resolved = envmod.resolve_for(choice.spec, command)
        except Exception as e:  # env errors are the user's to fix: name the task and where its env comes from
            raise NixWorkflowError(f"task {family}: its env ({choice.origin}) cannot be used: {e}") from None
        _ENVS[memo_key] = resolved
    if resolved.is_host and family not in _WARNED:
        _WARNED.add(family)
        logger.warning("nixworkflow: task %s runs with the host environment, not pinned by Nix (%s)", family,
                       choice.origin)
    return resolved, choice.options


CLASS_SETTINGS = {"env": None, "version": None, "pure": None, "sandbox": None, "network": None, "gpu": None,
                  "allow_empty": False, "resumable": False}


def of_class(cls: type, name: str) -> Any:
    """A NixTask class setting (`env`, `version`, `pure`, `sandbox`, `network`, `gpu`, `allow_empty`, `resumable`),
    or its default when the class has a Luigi parameter of that name instead: `env = luigi.Parameter()` (the
    deployment target), `version = luigi.Parameter()` (a model's version), `gpu = luigi.BoolParameter()` are common
    in plain pipelines, and such a parameter is the task's own (keyed as any parameter), not a nixworkflow setting.
    Read as settings, the Parameter object was an env spec ("unsupported env spec"), a code version that changed in
    every process (its repr holds an address: never served), a truthy `gpu`, or a record that could not be written."""
    value = getattr(cls, name, None)
    return CLASS_SETTINGS[name] if isinstance(value, luigi.Parameter) else value


def choose_env(cls: type) -> EnvChoice:
    """The class's `env` (a spec, or a name in nixworkflow.yaml); else the yaml's `steps:` entry for the
    task family; else `[nixworkflow] env` of luigi.cfg; else the yaml's default env; else the host."""
    memo_key = (cls, os.getcwd())
    known = _CHOICES.get(memo_key)
    if known is None:
        known = _CHOICES[memo_key] = _choose(cls)
    return known


def _choose(cls: type) -> EnvChoice:
    family = cls.get_task_family()
    spec = of_class(cls, "env")
    if spec is not None and not isinstance(spec, str):
        return EnvChoice(spec, RunOptions(), f"{family}.env")
    if spec == "host":
        return EnvChoice(None, RunOptions(), f"{family}.env = 'host'")
    config = _config(cls)
    name = spec
    if name is None and config is not None and family in config.steps:
        name = config.steps[family]
    name = name or settings().env
    if name is None:
        if config is None:
            return EnvChoice(None, RunOptions(), f"no env given and no {CONFIG_FILE}")
        return EnvChoice(config.env(), config.options(), f"the default env of {config.path}")
    if config is None:
        raise NixWorkflowError(f"task {family} uses the env {name!r}, but there is no {CONFIG_FILE} next to its "
                               f"module or in {os.getcwd()} (nor a [nixworkflow] config in luigi.cfg) to define "
                               "it. Define it there, or give the task an Env spec.")
    try:
        return EnvChoice(config.env(name), config.options(name), f"env {name!r} of {config.path}")
    except NixWorkflowError as e:
        raise NixWorkflowError(f"task {family}: {e}") from None


def _config(cls: type) -> Any:
    """The nixworkflow.yaml that applies to a task class: [nixworkflow] config, else the one next to the
    class's module, else the one in the working directory; None when there is none."""
    configured = settings().config
    if configured:
        path = Path(configured)
        if not path.is_file():
            what = "is a directory, not a nixworkflow.yaml file" if path.is_dir() else "does not exist"
            raise NixWorkflowError(f"[nixworkflow] config names {configured}, which {what}")
    else:
        module = getattr(sys.modules.get(cls.__module__), "__file__", None)
        candidates = ([find_config(Path(module).parent)] if module else []) + [find_config(os.getcwd())]
        path = next((c for c in candidates if c is not None), None)
        if path is None:
            return None
    memo_key = str(path.absolute())
    if memo_key not in _CONFIGS:
        _CONFIGS[memo_key] = load_config(path)
    return _CONFIGS[memo_key]

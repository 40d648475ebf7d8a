"""The config files a program reads that no command names one by one: a Hydra config directory (`--config-path
{HERE}/conf`, `@hydra.main(config_path="conf")`), whose every YAML file is keyed, and the configs a YAML config
includes (`defaults:`, `_base_`). nixlib.codefiles keys them as a step's project data."""

from __future__ import annotations

import ast
import os
import re

MAX_BYTES = 1 << 20  # a config read for the configs it includes (a larger one includes none: it is data)

# Hydra's config directory on the command line (`--config-path /p/conf`, `-cp conf`, `--config-dir=/p/extra`)
_CONFIG_DIR_OPTION = re.compile(r"(?:^|[\s;&|(`])(?:--config-path|--config-dir|-cp|-cd)(?:[ \t]+|=)"
                                r"(?:'([^']+)'|\"([^\"$`\\]+)\"|([^\s;|&<>()'\"`]+))")
SUFFIXES = (".yaml", ".yml")  # what a config directory holds that the program reads (Hydra's)
_CONFIG_LIMIT = 10_000  # (files of one config directory keyed at most)
# Where Hydra, Lightning, W&B and MLflow write a run's files (a `.hydra/config.yaml`, an `hparams.yaml`), in the
# current directory: below a config directory (`config_path="."` in a project the step changes into), never keyed
_RUN_DIRS = frozenset({"outputs", "multirun", "lightning_logs", "wandb", "mlruns"})


def command_dirs(command: str) -> list[str]:
    """The config directories a command gives a Hydra app (`--config-path`, `--config-dir`, `-cp`, `-cd`), as
    written: a program reads its configs there and writes nothing there (its runs go to `outputs/`)."""
    if "-c" not in command:
        return []
    return [m.group(1) or m.group(2) or m.group(3) for m in _CONFIG_DIR_OPTION.finditer(command)]


def script_dirs(path: str) -> tuple[str, ...]:
    """The config directories a Python script names by a constant `config_path=`/`config_dir=` keyword
    (`@hydra.main(config_path="conf", config_name="config")`, `initialize(config_path="../conf")`): relative to the
    script's directory, as Hydra takes them. None for another script, or one that does not compile."""
    if not path.endswith(".py"):
        return ()
    try:
        with open(path, "rb") as f:
            data = f.read()
        if b"config_path" not in data and b"config_dir" not in data:
            return ()
        tree = ast.parse(data)
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return ()
    return tuple(dict.fromkeys(k.value.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                               for k in node.keywords if k.arg in ("config_path", "config_dir")
                               and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)
                               and k.value.value))


def files_in(directory: str) -> list[str]:
    """The config files (SUFFIXES) under a config directory, at any depth, hidden ones left out, sorted: a
    Hydra app composes its config from any of them (`model=vit` on its command line reads conf/model/vit.yaml), so
    each is keyed by content and adding one re-runs the step too. A symlinked directory there is followed (`conf/model
    -> ../shared/models`), each real directory once."""
    found: list[str] = []
    seen: set[str] = set()  # (a symlinked directory is followed, as Hydra reads it; a loop once)
    for d, dirs, files in os.walk(directory, followlinks=True):
        real = os.path.realpath(d)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        if len(seen) > _CONFIG_LIMIT:  # (a link to `/` or a data tree: no config directory is that large)
            break
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x not in _RUN_DIRS)
        found += [os.path.join(d, f) for f in sorted(files) if f.endswith(SUFFIXES) and not f.startswith(".")]
        if len(found) >= _CONFIG_LIMIT:
            break
    return found[:_CONFIG_LIMIT]


def includes(path: str, root: str) -> list[str]:
    """The other config files a YAML config includes by name, existing ones only: the entries of a `defaults:` list
    (Hydra, OmegaConf-style loaders: `- base`, `- model: resnet`, `- override /optim: adam`, beside it or under the
    primary config's directory `root`) and `_base_`/`_BASE_` (mmcv, detectron2: a path relative to it). A file that
    is no YAML mapping includes nothing."""
    import yaml  # (here: most steps name no config; 20 ms at import)

    try:
        with open(path, "rb") as f:
            text = f.read(MAX_BYTES + 1)
        if len(text) > MAX_BYTES or not any(k in text for k in (b"defaults", b"_base_", b"_BASE_")):
            return []
        loaded = yaml.safe_load(text)
    except (OSError, ValueError, RecursionError, MemoryError, yaml.YAMLError):
        return []
    if not isinstance(loaded, dict):
        return []
    names: list[str] = []
    for key in ("_base_", "_BASE_"):
        value = loaded.get(key)
        names += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    defaults = loaded.get("defaults")
    for entry in defaults if isinstance(defaults, list) else ():
        if isinstance(entry, str) and entry != "_self_":
            names.append(entry)
        elif isinstance(entry, dict):
            for group, options in entry.items():
                group = str(group).split()[-1].split("@")[0] if str(group).split() else ""
                for option in options if isinstance(options, list) else [options]:
                    if isinstance(option, str) and group:
                        names.append(f"{group}/{option}")
    here = os.path.dirname(os.path.abspath(path))
    found = []
    for name in names:
        for base in dict.fromkeys([here, os.path.abspath(root)]):
            target = os.path.normpath(os.path.join(base, name.lstrip("/") if name.startswith("/") else name))
            for candidate in (target, *(target + s for s in SUFFIXES)):
                if os.path.isfile(candidate):
                    found.append(candidate)
    return list(dict.fromkeys(found))

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
    slurm:                         # `nw run`: cache misses as Slurm jobs (docs/slurm.md)
      enabled: true                # as --slurm (--no-slurm overrides); omitted: only with --slurm
      partition: batch             # defaults for every job: partition, time, cpus, mem, gpus, options
      steps:
        train_model: {partition: gpu, gpus: 1, mem: 64G, time: "12:00:00"}

Relative paths are taken from the file's directory. Every mistake is reported with the file,
line and key path (`nixworkflow.yaml:7: envs.train.packages: ...`), before any step runs.
The file must be UTF-8, at most 1 MiB, nested at most 64 levels and at most 1,000,000 values
once aliases are expanded; only YAML's standard tags are accepted (no `!!python/...`).

    cfg = load_config("nixworkflow.yaml")     # or find_config(directory) -> Path | None
    cfg.env()        # the default Env, or None (host)
    cfg.env("train") # a named Env; unknown names are an error listing the known ones
    cfg.env_for("train_model"), cfg.options_for("train_model")   # via `steps:`, else the default
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nixlib import slurm
from nixlib.env import Env, _check_pinned
from nixlib.errors import NixWorkflowError
from nixlib.recipe import RunOptions
from nixlib.slurm import SlurmConfig, SlurmOptions

FILENAME = "nixworkflow.yaml"
TOP_KEYS = ("nixpkgs", "env", "envs", "steps", "remote", "slurm")
REMOTE_KEYS = ("url", "push", "trusted-public-keys", "secret-key-file")  # see docs/remote.md
SLURM_JOB_KEYS = ("partition", "time", "cpus", "mem", "gpus", "options")  # see docs/slurm.md (`nw run --slurm`)
SLURM_KEYS = ("enabled", *SLURM_JOB_KEYS, "steps")
ENV_KEYS = ("packages", "nixpkgs", "file", "attr", "store_paths", "pure", "sandbox", "network", "gpu")
SOURCE_KEYS = ("path", "url", "sha256", "flake", "args")
OPTION_KEYS = ("pure", "sandbox", "network", "gpu")
# Limits that keep a hostile or broken file from hanging or crashing every run (an alias bomb, a 600k-entry
# file on the pure-Python parser, 5,000-deep nesting). A real config names envs and maps step names to them.
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 1_000_000
# libyaml's parser is ~10x faster than PyYAML's pure-Python one; both give the same node tree.
_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAGS = frozenset(k for k in yaml.SafeLoader.yaml_constructors if k) | {"tag:yaml.org,2002:merge"}


def remote_url_problem(url: str) -> str | None:
    """Why a remote cache URL (or its `?endpoint=`) cannot be parsed, or None. Checked where each front door
    takes the URL (--remote, NIX_WORKFLOW_REMOTE, `remote:`, luigi.cfg, --nixworkflow-remote): urllib raises a bare
    ValueError ("Invalid IPv6 URL", a port that is not a number) deep inside the remote's opening otherwise."""
    from urllib.parse import parse_qs, urlsplit

    try:
        parts = urlsplit(url)
        for endpoint in parse_qs(parts.query).get("endpoint", []):
            urlsplit(endpoint).port  # noqa: B018 - parsing the port is the check
    except ValueError as e:
        return f"{url!r} is not a valid URL ({e}); write s3://BUCKET/PREFIX[?endpoint=URL] or file:///DIRECTORY"
    return None


SWITCH_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
                "off": False}


def switch_word(value: object) -> bool | None:
    """The one reading of an on/off setting (NIX_WORKFLOW_PUSH, luigi.cfg `push`, a Snakemake rule's `nix_cache`):
    1/true/yes/on and 0/false/no/off in any case, None for any other word, which callers refuse naming where it
    was set (`push = maybe` silently pushed nothing, `nix_cache="maybe"` silently cached)."""
    return SWITCH_WORDS.get(str(value).strip().lower())


def push_on(value: str | None) -> bool:
    """Whether a push setting turns pushing on (unset or empty: off; check_push_flag refuses other words where the
    setting is taken)."""
    return bool(value and value.strip() and switch_word(value))


def check_push_flag(value: str | None, origin: str) -> None:
    """Raise a NixWorkflowError naming ORIGIN if VALUE is not a push setting (switch_word; empty: off)."""
    if value is not None and value.strip() and switch_word(value) is None:
        raise NixWorkflowError(f"{origin}: {value!r} is not true or false (write true, false, yes, no, on, off, "
                               "1 or 0)")


def check_remote_url(url: str | None, origin: str) -> None:
    """Raise a NixWorkflowError naming ORIGIN (the option, variable or file) if URL cannot be parsed."""
    problem = remote_url_problem(url) if url else None
    if problem:
        raise NixWorkflowError(f"{origin}: {problem}")


class ConfigError(NixWorkflowError):
    """A malformed nixworkflow.yaml; the message names the file, line and key."""

    def __init__(self, message: str) -> None:
        # Keys and values from the file are quoted in messages: a newline or control character in one must not
        # break the message's single paragraph.
        super().__init__("".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in message))


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
    remote: dict[str, Any] = field(default_factory=dict)  # `remote:` (url, push, trusted-public-keys, secret-key-file)
    slurm: SlurmConfig | None = None  # `slurm:` (used by `nw run`; the Snakemake adapter has Snakemake's resources)

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


def mentions(path: Path, key: str) -> bool:
    """Whether the file's top-level mapping has `key` (in any YAML spelling: `slurm:`, `"slurm":`, `{slurm: …}`).
    `nw run FILE.py` reads nixworkflow.yaml only for the sections it uses (remote, slurm): a file written for the
    adapters, or broken elsewhere, does not stop it otherwise. Decided from the parsed document, as the loader
    reads it; a file that cannot be parsed counts as mentioning the key if its name appears anywhere in it (the
    loader then reports the problem with its line), so a section is never silently ignored."""
    try:
        text = _read(path)
    except ConfigError:
        return True  # not a readable UTF-8 file within the size limit: let the loader report it
    try:
        root = _parse(path, text)
    except ConfigError:
        return key in text
    if not isinstance(root, yaml.MappingNode):
        return False
    return any(isinstance(k, yaml.ScalarNode) and k.value == key for k, _ in root.value)


def load_config(path: str | os.PathLike) -> Config:
    """Parse and check a nixworkflow.yaml (no Nix runs; envs are evaluated when resolved)."""
    path = Path(path).absolute()
    return _Reader(path).config(_parse(path, _read(path)))


def _read(path: Path) -> str:
    """The file's text: UTF-8 (a BOM is allowed), read without blocking on a FIFO and never past the size limit."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"{path}: not a regular file; {FILENAME} must be a file")
            data = f.read(MAX_BYTES + 1)
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; {FILENAME} must be a file") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_BYTES >> 20} MiB, the limit for {FILENAME} (it names envs and "
                          "maps step names to them; nothing in it needs to be this big)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(f"{path}:{line}:{column}: not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as "
                          "UTF-8") from None


def _parse(path: Path, text: str) -> yaml.Node | None:
    """The YAML node tree, checked against the limits before anything walks or constructs it."""
    loader = None
    try:
        loader = _LOADER(text)  # the pure-Python reader already rejects control characters here
        root = loader.get_single_node()
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error(path, text, e)) from None
    except RecursionError:  # only the pure-Python parser recurses; libyaml stops at its own depth limit
        line = f":{loader.get_mark().line + 1}" if hasattr(loader, "get_mark") else ""
        raise ConfigError(f"{path}{line}: not valid YAML: nested too deeply (the limit is {MAX_DEPTH} levels)"
                          ) from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is not None:
        _check_tree(path, root)
    return root


def _check_tree(path: Path, root: yaml.Node) -> None:
    """Depth, tags, recursive aliases and the expanded size, in one iterative pass over the distinct nodes.
    An alias is the same node object met again: its size and height come from the memo, it is not re-walked."""
    if root.tag not in _TAGS:
        raise _bad_tag(path, root)
    done: dict[int, tuple[int, int]] = {}  # id(collection node) -> (values once expanded, height)
    open_: set[int] = set()  # the collections on the path from the root to the current node
    stack: list[tuple[yaml.Node, bool]] = [(root, False)] if _children(root) is not None else []
    while stack:
        node, finished = stack.pop()
        children = _children(node) or []
        if finished:
            open_.discard(id(node))
            _measure(path, node, children, done)
            continue
        if id(node) in done:
            continue
        if len(open_) >= MAX_DEPTH:
            raise ConfigError(f"{_at(path, node)}: nested more than {MAX_DEPTH} levels deep")
        open_.add(id(node))
        stack.append((node, True))
        for child in reversed(children):
            if child.tag not in _TAGS:
                raise _bad_tag(path, child)
            if isinstance(child, yaml.ScalarNode) or id(child) in done:
                continue
            if id(child) in open_:
                raise ConfigError(f"{_at(path, child)}: an alias refers to a value that contains it (a recursive "
                                  "alias); an alias may only repeat a value defined before it")
            stack.append((child, False))


def _measure(path: Path, node: yaml.Node, children: list[yaml.Node], done: dict[int, tuple[int, int]]) -> None:
    """Record a finished collection's expanded size and height; too big or too deep (through aliases) is an error."""
    size, height = 1, 1
    for child in children:
        s, h = (1, 0) if isinstance(child, yaml.ScalarNode) else done[id(child)]
        size += s
        height = max(height, h + 1)
    if size > MAX_VALUES:
        raise ConfigError(f"{_at(path, node)}: more than {MAX_VALUES:,} values once its aliases are expanded "
                          "(an alias bomb?); repeat fewer values by alias")
    if height > MAX_DEPTH:
        raise ConfigError(f"{_at(path, node)}: nested more than {MAX_DEPTH} levels deep (through aliases)")
    done[id(node)] = (size, height)


def _bad_tag(path: Path, node: yaml.Node) -> ConfigError:
    tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
    return ConfigError(f"{_at(path, node)}: unsupported tag {tag} (only YAML's standard types are allowed)")


def _at(path: Path, node: yaml.Node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def _children(node: yaml.Node) -> list[yaml.Node] | None:
    """A collection's child nodes (a mapping's keys and values); None for a scalar."""
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return None


def _yaml_error(path: Path, text: str, e: yaml.YAMLError) -> str:
    """One line: file:line:column and the parser's problem (a reader error has only a character, not a mark)."""
    if isinstance(e, yaml.reader.ReaderError):
        char = chr(e.character) if isinstance(e.character, int) else str(e.character)
        line = text.count("\n", 0, max(text.find(char), 0)) + 1
        return f"{path}:{line}: not valid YAML: {e.reason} (character #x{ord(char[:1] or ' '):04x})"
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


class _Reader:
    """Walks the YAML node tree, converting and checking values while their line numbers are known."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def fail(self, node: yaml.Node, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}:{node.start_mark.line + 1}: {key}: {problem}")

    def where(self, node: yaml.Node) -> str:
        return f"{self.path}:{node.start_mark.line + 1}"

    def construct(self, node: yaml.Node, key: str) -> Any:
        """The node's Python value; a value its tag cannot hold (`!!int abc`, `!!bool maybe`) names its line."""
        try:
            return _construct(node)
        except Exception as e:  # noqa: BLE001 - any failure here is the user's value, never our state
            problem = getattr(e, "problem", None) or (str(e).splitlines() or [type(e).__name__])[0]
            tag = str(node.tag).rsplit(":", 1)[-1]
            raise self.fail(node, key, f"not a valid {tag} ({problem})") from None

    def name(self, node: yaml.Node, key: str) -> str:
        """A mapping key used as a name (env, step): any non-empty scalar, as written (`2024:` names '2024')."""
        if isinstance(node, yaml.ScalarNode) and node.value:
            return str(node.value)
        raise self.fail(node, key, "expected a name")

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
            value = self.construct(node, key)
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
                name = self.name(k, "envs")
                if name in cfg.envs:
                    raise self.fail(k, f"envs.{name}", "given twice")
                cfg.envs[name] = self.entry(v, f"envs.{name}", source)
        if "steps" in top:
            cfg.steps = self.steps(top["steps"][1], cfg)
        if "remote" in top:
            cfg.remote = self.remote(top["remote"][1])
        if "slurm" in top:
            cfg.slurm = self.slurm(top["slurm"][1])
        return cfg

    def slurm(self, node: yaml.Node) -> SlurmConfig:
        """`slurm: true|false`, or a mapping: enabled, the job settings for every step, and `steps:` with each
        step's own settings (docs/slurm.md). Values are checked by the rules the --slurm-* options follow."""
        if isinstance(node, yaml.ScalarNode):
            enabled = self.scalar(node, "slurm", bool, "true, false or a mapping with enabled, partition, time, "
                                  "cpus, mem, gpus, options and steps")
            return SlurmConfig(self.path, enabled, self.where(node))
        fields = self.mapping(node, "slurm", SLURM_KEYS)
        enabled, enabled_at = None, ""
        if "enabled" in fields:
            enabled = self.scalar(fields["enabled"][1], "slurm.enabled", bool, "true or false")
            enabled_at = self.where(fields["enabled"][1])
        steps: dict[str, SlurmOptions] = {}
        lines: dict[str, str] = {}
        if "steps" in fields:
            listed = fields["steps"][1]
            if not isinstance(listed, yaml.MappingNode):
                raise self.fail(listed, "slurm.steps", "expected a mapping of step names to their Slurm settings "
                                f"({', '.join(SLURM_JOB_KEYS)})")
            for k, v in listed.value:
                step = self.name(k, "slurm.steps")
                if step in steps:
                    raise self.fail(k, f"slurm.steps.{step}", "given twice")
                steps[step] = self.job(self.mapping(v, f"slurm.steps.{step}", SLURM_JOB_KEYS), f"slurm.steps.{step}")
                lines[step] = self.where(k)
        return SlurmConfig(self.path, enabled, enabled_at, self.job(fields, "slurm"), steps, lines)

    def job(self, fields: dict[str, tuple[yaml.Node, yaml.Node]], key: str) -> SlurmOptions:
        """One set of job settings. Time, memory and GPUs are taken as written: YAML would read `2:00:00` as the
        sexagesimal integer 7200, which sbatch would take as 7200 minutes."""
        def text(name: str, check: Callable[[str], str | None]) -> str | None:
            if name not in fields:
                return None
            node = fields[name][1]
            if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
                raise self.fail(node, f"{key}.{name}", "expected a single value")
            problem = check(str(node.value))
            if problem:
                raise self.fail(node, f"{key}.{name}", problem)
            return str(node.value)

        cpus = None
        if "cpus" in fields:
            node = fields["cpus"][1]
            if not isinstance(node, yaml.ScalarNode):
                raise self.fail(node, f"{key}.cpus", "expected a whole number of at least 1")
            cpus = self.construct(node, f"{key}.cpus")
            problem = slurm.cpus_problem(cpus)
            if problem:
                raise self.fail(node, f"{key}.cpus", problem)
        extra: tuple[str, ...] = ()
        if "options" in fields:
            extra = tuple(self.strings(fields["options"][1], f"{key}.options", "sbatch options"))
            items = fields["options"][1].value if isinstance(fields["options"][1], yaml.SequenceNode) else None
            for i, option in enumerate(extra):
                if slurm.option_problem(option):
                    culprit = items[i] if items else fields["options"][1]
                    raise self.fail(culprit, f"{key}.options" + (f"[{i}]" if items else ""),
                                    str(slurm.option_problem(option)))
        return SlurmOptions(text("partition", slurm.partition_problem), text("time", slurm.time_problem), cpus,
                            text("mem", slurm.mem_problem), text("gpus", slurm.gpus_problem), extra)

    def remote(self, node: yaml.Node) -> dict[str, Any]:
        """`remote: URL`, or a mapping with url, push, trusted-public-keys and secret-key-file (a local path)."""
        if isinstance(node, yaml.ScalarNode):
            return {"url": self.url(node, "remote")}
        fields = self.mapping(node, "remote", REMOTE_KEYS)
        if "url" not in fields:
            raise self.fail(node, "remote", "needs url (s3://BUCKET/PREFIX or file:///DIR)")
        out: dict[str, Any] = {"url": self.url(fields["url"][1], "remote.url")}
        if "push" in fields:
            out["push"] = self.scalar(fields["push"][1], "remote.push", bool, "true or false")
        if "trusted-public-keys" in fields:
            out["trusted-public-keys"] = self.strings(fields["trusted-public-keys"][1], "remote.trusted-public-keys",
                                                      "public keys NAME:BASE64")
        if "secret-key-file" in fields:
            out["secret-key-file"] = self.local(self.scalar(fields["secret-key-file"][1], "remote.secret-key-file",
                                                            str, "a path to a secret key file"))
        return out

    def url(self, node: yaml.Node, key: str) -> str:
        """A remote URL that parses (`http://[` made urllib raise ValueError, a traceback, wherever it was opened)."""
        url = self.scalar(node, key, str, "a remote URL (s3://BUCKET/PREFIX or file:///DIR)")
        problem = remote_url_problem(url)
        if problem:
            raise self.fail(node, key, problem)
        return url

    def steps(self, node: yaml.Node, cfg: Config) -> dict[str, str]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, "steps", "expected a mapping of step names to env names")
        out: dict[str, str] = {}
        for k, v in node.value:
            step = self.name(k, "steps")
            if step in out:
                raise self.fail(k, f"steps.{step}", "given twice")
            env = self.scalar(v, f"steps.{step}", str, "an env name")
            if env not in cfg.envs:
                raise self.fail(v, f"steps.{step}", f"no env named '{env}' under envs "
                                f"(envs: {', '.join(sorted(cfg.envs)) or 'none'})")
            out[step] = env
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
                out[name] = self.construct(v, f"{key}.args")
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
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str":
        return node.value  # the common case, without a constructor
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)

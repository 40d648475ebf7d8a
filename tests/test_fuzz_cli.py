"""Fuzzing the user's inputs: a clear error or success, never a traceback (issue 9, item 8).

(a) nixworkflow.yaml — random YAML-ish text, random nested structures shaped like a config (dumped with
    yaml.safe_dump), and random bytes — through `load_config`, the code path `nw run`, the Snakemake executor
    and Luigi share: it returns a Config or raises NixWorkflowError (one line), nothing else. A few examples also
    go through the real `nw run`.
(b) random `nw` argument lists, in-process: argparse's SystemExit or an exit code, never an exception, never the
    internal-error path, with a private store and working directory.
"""

from __future__ import annotations

import contextlib
import io
import signal
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlib import cli, config
from nixlib.config import load_config
from nixlib.errors import NixWorkflowError
from tests.helpers import nw

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

# ---- (a) nixworkflow.yaml --------------------------------------------------------------------------------

KEYS = [*config.TOP_KEYS, *config.ENV_KEYS, *config.SOURCE_KEYS, "host", "<<", "x"]
STORE_PATH = "/nix/store/00000000000000000000000000000000-x"
STRINGS = ["python3", STORE_PATH, "/usr/bin", "github:a/b", "./p", "nix/x.nix", "<nixpkgs>",
           "https://x.org/a.tar.gz", "0" * 52, "", "~", "host", "a"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.sampled_from(KEYS + STRINGS),
                    st.text(max_size=6))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=4), max_leaves=20)
strings = st.sampled_from(STRINGS) | st.text(max_size=6)
names = st.sampled_from(["a", "b", "train", "host", "", "1"]) | st.text(max_size=4)


def either(good: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly the right shape for the key, sometimes anything: errors deep inside the config, not only at the top."""
    return st.one_of(good, good, values)


source = strings | st.fixed_dictionaries({}, optional={**{k: either(strings) for k in ("path", "url", "sha256",
                                                                                         "flake")}, "args": values})
entry = st.just("host") | scalars | st.fixed_dictionaries({}, optional={
    "packages": either(st.lists(strings, max_size=3) | strings), "nixpkgs": either(source),
    "file": either(strings), "attr": either(strings), "store_paths": either(st.lists(strings, max_size=3)),
    **{o: either(st.booleans()) for o in config.OPTION_KEYS}})
shaped = st.fixed_dictionaries({}, optional={
    "nixpkgs": either(source), "env": either(entry), "envs": either(st.dictionaries(names, entry, max_size=3)),
    "steps": either(st.dictionaries(names, names, max_size=3))}).map(lambda d: yaml.safe_dump(d).encode())
TOKENS = ["[", "]", "{", "}", ":", ": ", ",", "- ", "\n", "  ", "&a ", "*a", "&b ", "*b", "!!int ", "!!bool ",
          "!!python/name:os.system ", "!!python/object/apply:os.system ", "!!timestamp ", "!!binary ", "!!set ",
          "!!omap ", "!!pairs ", "!!str ", "!local ", "? ", "|", ">", "'", '"', "#", "%YAML 1.1\n", "%TAG ! x\n",
          "---\n", "...\n", "<<: ", "\t", "\x00", "\x07", "\ufeff", "\\"] + [k + ": " for k in KEYS] + KEYS + STRINGS
yamlish = st.lists(st.sampled_from(TOKENS) | st.text(max_size=3), max_size=40).map(
    lambda parts: "".join(parts).encode("utf-8", "surrogatepass"))
contents = st.one_of(shaped, yamlish, st.binary(max_size=64),
                     st.binary(max_size=32).map(lambda b: b"env:\n  packages: [" + b + b"]\n"))


def loads_or_fails_cleanly(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        cfg = load_config(path)
    except NixWorkflowError as e:
        assert str(e) and "\n" not in str(e), repr(str(e))
        assert str(path) in str(e), str(e)
        return
    for name in [None, *cfg.envs]:  # a loaded config answers every question about it
        cfg.env(name), cfg.options(name)
    for step in cfg.steps:
        cfg.env_for(step), cfg.options_for(step)


@FAST
@given(data=contents)
def test_config_loads_or_fails_cleanly(tmp_path: Path, data: bytes) -> None:
    loads_or_fails_cleanly(tmp_path / "nixworkflow.yaml", data)


@settings(FAST, max_examples=60)
@given(data=contents)
def test_config_with_the_pure_python_parser(tmp_path: Path, data: bytes) -> None:
    """The fallback without libyaml gives the same guarantee (it is the one that recursed and was slow)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(config, "_LOADER", yaml.SafeLoader)
        loads_or_fails_cleanly(tmp_path / "nixworkflow.yaml", data)


USES_CONFIG = ("from nixlib import output\nfrom nixlib.config import load_config\n"
               "cfg = load_config('nixworkflow.yaml')\nwarm = output('echo warm > $out/w')\n")


@settings(FAST, max_examples=4)
@given(data=contents)
def test_config_through_the_real_cli(data: bytes) -> None:
    """The same property end to end: `nw run` of an experiment that loads the config exits 0 or 1, cleanly."""
    Path("nixworkflow.yaml").write_bytes(data)
    Path("exp.py").write_text(USES_CONFIG)
    proc = nw("run", "exp.py", cwd=Path.cwd(), timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 1:
        assert f"{Path('nixworkflow.yaml').absolute()}" in proc.stderr, proc.stderr


# ---- (b) nw arguments ------------------------------------------------------------------------------------

WORDS = ["run", "hash", "show", "lineage", "log", "gc", "verify", "--store", "-j", "--jobs", "-k", "--keep-going",
         "-q", "--out-link", "--allow-unpinned", "--json", "--depth", "--min-age", "-n", "--dry-run", "--repair",
         "-h", "exp.py", "bad.py", "config.py", "x.nix", "nixworkflow.yaml", "missing.py", "dir", "out", "store",
         "step", "a", ".", "0", "1", "-1", "2", "nan", "inf", "-inf", "1e309", "", "--", "-"]
# Words inside this test's directory only (no '/', no '..'): nothing outside it is read, hashed or written (nor
# made a store); no NUL, which a real command line cannot carry.
token = (st.sampled_from(WORDS) | st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=["Cs"]),
                                          max_size=6)).filter(lambda w: w != "..")
numbers = st.sampled_from(["0", "1", "2", "-1", "nan", "inf", "1e309", "3.5", "x", "99999999999999999999"])
places = st.sampled_from(["out", "dir", "exp.py", "store", ".", ""]) | token
whats = st.sampled_from(["step", "nosuch", "exp.py", "out/step", "nix-workflow-output/step", "dir", ""]) | token
OPTIONS = {  # per command: option -> its value (None: a flag); positionals follow
    "run": {"-j": numbers, "-k": None, "--out-link": places, "-q": None, "--allow-unpinned": None},
    "gc": {"-n": None, "--min-age": numbers}, "verify": {"--repair": None}, "hash": {},
    "show": {"--json": None}, "log": {"--json": None}, "lineage": {"--json": None, "--depth": numbers},
}
POSITIONALS = {"run": st.tuples(st.sampled_from(["exp.py", "bad.py", "config.py", "missing.py", "x.nix", "dir"])
                                | token, st.lists(whats, max_size=2)).map(lambda t: [t[0], *t[1]]),
               "hash": st.lists(st.sampled_from(["exp.py", "dir", "missing", "."]) | token, min_size=1, max_size=2),
               "gc": st.just([]), "verify": st.just([])}


@st.composite
def shaped_argv(draw: st.DrawFn) -> list[str]:
    """A command with its own options (in any order, with good or bad values), positionals and maybe --store."""
    cmd = draw(st.sampled_from(sorted(OPTIONS)))
    argv = ["--store", draw(places)] if draw(st.booleans()) else []
    argv.append(cmd)
    for option in draw(st.lists(st.sampled_from(sorted(OPTIONS[cmd])), max_size=3)) if OPTIONS[cmd] else []:
        value = OPTIONS[cmd][option]
        argv += [option] + ([draw(value)] if value is not None else [])
    argv += draw(POSITIONALS.get(cmd, whats.map(lambda w: [w])))
    return argv


argvs = shaped_argv() | shaped_argv() | st.lists(token, max_size=7)


@pytest.fixture
def playground(tmp_path: Path) -> Path:
    """The cwd's files the argument words name: a good experiment, a broken one, a config, a directory."""
    Path("exp.py").write_text("from nixlib import output\nstep = output('echo hi > $out/x', name='step')\n")
    Path("bad.py").write_text("def f(:\n")
    Path("config.py").write_text("from nixlib.config import load_config\nload_config('nixworkflow.yaml')\n")
    Path("nixworkflow.yaml").write_text("envs:\n  a: host\nsteps:\n  step: b\n")
    Path("dir").mkdir()
    return tmp_path


@settings(FAST, max_examples=120)
@given(argv=argvs)
def test_random_arguments_exit_cleanly(playground: Path, argv: list[str]) -> None:
    err = io.StringIO()
    term = signal.getsignal(signal.SIGTERM)  # `nw run` makes SIGTERM an interrupt: not for pytest's process
    hup = signal.getsignal(signal.SIGHUP)  # (and SIGHUP)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NIX_WORKFLOW_STORE", str(playground / "nw-store"))  # `--store` rewrites it: restored after
        mp.delenv("NIX_WORKFLOW_ALLOW_UNPINNED", raising=False)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = cli.main(argv)
        except SystemExit as e:  # argparse: --help, or a usage error
            code = e.code
        finally:
            signal.signal(signal.SIGTERM, term)
            signal.signal(signal.SIGHUP, hup)
    assert code in (0, 1, 2), (argv, code, err.getvalue())
    assert "Traceback" not in err.getvalue() and "internal error" not in err.getvalue(), (argv, err.getvalue())

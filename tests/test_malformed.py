"""Malformed input of every kind gives one clear paragraph naming the file (and line), a non-zero exit and an
unchanged store — never a traceback, a raw `[Errno ...]`, a hang or a new directory (issue 9, item 8).

Every case runs the real `nw` CLI against one store warmed once for the module, snapshotted before and after.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nixlib import cli, config
from nixlib.config import ConfigError, load_config
from tests.helpers import nw, tree_snapshot
from tests.nixcheck import require_nix

PIN = 'nixpkgs:\n  url: https://example.org/nixpkgs.tar.gz\n  sha256: "' + "0" * 52 + '"\n'
BOMB = "".join(["  args:\n    a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"]
               + [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)])

# name -> (file content, line the error must name, words the error must contain)
BAD_YAML: dict[str, tuple[bytes, int, str]] = {
    "non-UTF-8": (b"env:\n  packages: [caf\xe9]\n", 2, "not UTF-8 text (byte 0xe9)"),
    "python tag": (b"env: !!python/name:os.system\n", 1, "unsupported tag !!python/name:os.system"),
    "python tag in args": ((PIN + "  args: !!python/name:os.system\nenv: {packages: [x]}\n").encode(), 4,
                           "unsupported tag !!python/name:os.system"),
    "int abc": (b"env:\n  store_paths: !!int abc\n", 2, "env.store_paths: not a valid int"),
    "bool maybe": (b"env:\n  packages: [x]\n  nixpkgs: ./p\n  pure: !!bool maybe\n", 4, "env.pure: not a valid bool"),
    "5000 deep": (b"env: " + b"[" * 5000 + b"]" * 5000 + b"\n", 1, "nesting depth"),
    "recursive alias": ((PIN + "  args: &a [*a]\nenv: {packages: [x]}\n").encode(), 4, "recursive alias"),
    # a6 (line 11) is the first anchor over a million values: 1 + 9 * (1 + 9 * ... (1 + 9)) = 5,380,840
    "alias bomb": ((PIN + BOMB + "env: {packages: [x]}\n").encode(), 11, "alias bomb"),
    "control character": (b"env:\n  packages: [a\x07]\n", 2, "characters are not allowed"),
    "600k entries": (b"envs:\n  a: host\nsteps:\n" + b"".join(b"  s%d: a\n" % i for i in range(600_000)), 0,
                     "larger than 1 MiB"),
}

EXPERIMENT = "from nixlib import output\nwarm = output('echo warm > $out/w')\n"
USES_CONFIG = ("from nixlib import output\nfrom nixlib.config import load_config\n"
               "cfg = load_config('nixworkflow.yaml')\nwarm = output('echo warm > $out/w', env=cfg.env())\n")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one realised step (object, record, log, root), shared read-only by every test here."""
    root = tmp_path_factory.mktemp("malformed") / "store"
    work = root.parent / "warm"
    work.mkdir()
    (work / "exp.py").write_text(EXPERIMENT)
    nw("run", "exp.py", cwd=work, env={"NIX_WORKFLOW_STORE": str(root)}, check=True)
    return root


def contents(root: Path, temproots: bool = True) -> dict[str, bytes | str]:
    """The store's snapshot; without temp roots, which a process that reached the engine leaves for gc to
    remove once it has exited (they are not the store's contents)."""
    snap = tree_snapshot(root)
    return snap if temproots else {k: v for k, v in snap.items() if not k.startswith("temproots")}


def fails_cleanly(shared: Path, *args: str, names: str, exit_code: int = 1, timeout: float = 60,
                  temproots: bool = True) -> str:
    """Run `nw ARGS` in the cwd; assert one clear error naming `names`, the exit code, and an unchanged store."""
    before = contents(shared, temproots)
    proc = nw(*args, cwd=Path.cwd(), env={"NIX_WORKFLOW_STORE": str(shared)}, timeout=timeout)
    assert proc.returncode == exit_code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "[Errno" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("error:", "nw: error:", "nw "))]
    assert len(errors) == 1, proc.stderr  # one paragraph: a single error line
    assert names in errors[0], proc.stderr
    assert contents(shared, temproots) == before
    return errors[0]


# ---- nixworkflow.yaml, through `nw run` of an experiment that loads it --------------------------------------


@pytest.mark.parametrize("case", sorted(BAD_YAML))
def test_malformed_yaml_in_a_run(shared: Path, case: str) -> None:
    data, line, words = BAD_YAML[case]
    Path("nixworkflow.yaml").write_bytes(data)
    Path("exp.py").write_text(USES_CONFIG)
    where = f"{Path('nixworkflow.yaml').absolute()}" + (f":{line}" if line else ":")
    error = fails_cleanly(shared, "run", "exp.py", names=where)
    assert words in error


@pytest.mark.parametrize("loader", ["libyaml", "pure Python"])
@pytest.mark.parametrize("case", sorted(BAD_YAML))
def test_malformed_yaml_with_either_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str,
                                          loader: str) -> None:
    """Both PyYAML parsers give the same clear error (the pure-Python one recursed to a RecursionError)."""
    if loader == "pure Python":
        monkeypatch.setattr(config, "_LOADER", yaml.SafeLoader)
    elif not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML was built without libyaml")
    data, line, words = BAD_YAML[case]
    path = tmp_path / "nixworkflow.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}" if line else f"{path}:"), message
    assert "\n" not in message
    if case != "5000 deep" or loader == "libyaml":  # the parsers word the depth limit differently
        assert words in message, message


def test_deep_nesting_below_the_parser_limit(tmp_path: Path) -> None:
    """100 levels parse with either parser; the config's own limit names the line."""
    path = tmp_path / "nixworkflow.yaml"
    path.write_text(PIN + "  args: " + "[" * 100 + "]" * 100 + "\nenv: {packages: [x]}\n")
    with pytest.raises(ConfigError, match=r":4: nested more than 64 levels deep"):
        load_config(path)


def test_aliases_that_stay_small_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "nixworkflow.yaml"
    path.write_text(PIN + "  args: {a: &x [1, 2], b: *x, c: [*x, *x]}\nenvs:\n  a: &e {packages: [x]}\n  b: *e\n")
    cfg = load_config(path)
    assert cfg.env("a") == cfg.env("b")
    assert cfg.env("a").nixpkgs["args"] == {"a": [1, 2], "b": [1, 2], "c": [[1, 2], [1, 2]]}


def test_a_big_legitimate_config_loads(tmp_path: Path) -> None:
    """20,000 step entries (far more rules than a real pipeline has) are under the size limit and load."""
    path = tmp_path / "nixworkflow.yaml"
    path.write_text("envs:\n  a: host\n  b: host\nsteps:\n" + "".join(f"  rule_{i}: {'ab'[i % 2]}\n"
                                                                         for i in range(20_000)))
    cfg = load_config(path)
    assert len(cfg.steps) == 20_000 and cfg.steps["rule_19999"] == "b"


def test_config_that_is_a_directory_or_missing(tmp_path: Path) -> None:
    (tmp_path / "nixworkflow.yaml").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path / "nixworkflow.yaml")
    with pytest.raises(ConfigError, match="cannot read .*missing.yaml: No such file"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("text, line, words", [
    ("envs:\n  a: host\n  a: {store_paths: [/nix/store/00000000000000000000000000000000-x]}\n", 3,
     "envs.a: given twice"),
    ("envs:\n  a: host\nsteps:\n  s: a\n  s: a\n", 5, "steps.s: given twice"),
    ("envs:\n  ? [a, b]\n  : host\n", 2, "envs: expected a name"),
], ids=["env twice", "step twice", "list as a name"])
def test_env_and_step_names(tmp_path: Path, text: str, line: int, words: str) -> None:
    """A repeated name silently replaced the first; a list used as a name became its Python repr."""
    path = tmp_path / "nixworkflow.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:{line}: {words}"


def test_newline_in_a_key_stays_one_paragraph(tmp_path: Path) -> None:
    path = tmp_path / "nixworkflow.yaml"
    path.write_text("env:\n  ? \"pack\\nages\"\n  : [x]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "\n" not in str(info.value) and "pack\\nages" in str(info.value)


# ---- the experiment file ----------------------------------------------------------------------------------


def test_non_utf8_experiment_nix(shared: Path) -> None:
    """Nix accepts the bytes; nw read its result as text and crashed. Now refused with the line, before Nix."""
    Path("exp.nix").write_bytes(b"let inherit ((import <nixworkflow>).lib) output; in rec {\n"
                                b"  a = output \"echo \xff > $out/x\";\n}\n")
    error = fails_cleanly(shared, "run", "exp.nix", names=f"{Path('exp.nix').absolute()}:2")
    assert "not UTF-8" in error


@pytest.mark.nix
def test_non_utf8_string_from_an_imported_nix_file(shared: Path) -> None:
    require_nix("nix-instantiate")
    Path("cmd.nix").write_bytes(b"\"echo \xff > $out/x\"\n")
    Path("exp.nix").write_text("let inherit ((import <nixworkflow>).lib) output; in rec {\n"
                               "  a = output (import ./cmd.nix);\n}\n")
    error = fails_cleanly(shared, "run", "exp.nix", names=str(Path("exp.nix").absolute()), timeout=300)
    assert "not UTF-8" in error


@pytest.mark.parametrize("source, line, words", [
    (b"x = 1\n\xff\n", 2, "SyntaxError: (unicode error)"),
    (b"from nixlib import output\ndef f(:\n", 2, "SyntaxError: invalid syntax"),
    (b"from nixlib import output\nx = 1\nraise ValueError('boom')\n", 3, "ValueError: boom"),
], ids=["non-UTF-8", "syntax error", "exception at import"])
def test_broken_experiment_py_names_its_line(shared: Path, source: bytes, line: int, words: str) -> None:
    Path("exp.py").write_bytes(source)
    error = fails_cleanly(shared, "run", "exp.py", names=f"exp.py:{line}: evaluating the experiment failed")
    assert words in error


@pytest.mark.parametrize("suffix", [".py", ".nix"])
def test_experiment_missing_directory_or_fifo(shared: Path, suffix: str) -> None:
    fails_cleanly(shared, "run", f"missing{suffix}", names="does not exist")
    Path(f"dir{suffix}").mkdir()
    fails_cleanly(shared, "run", f"dir{suffix}", names="is a directory")
    os.mkfifo(f"fifo{suffix}")  # runpy would block reading it forever
    fails_cleanly(shared, "run", f"fifo{suffix}", names="is not a regular file", timeout=20)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: permission errors cannot happen")
@pytest.mark.parametrize("suffix", [".py", ".nix"])
def test_unreadable_experiment(shared: Path, suffix: str) -> None:
    Path(f"exp{suffix}").write_text("x = 1\n")
    Path(f"exp{suffix}").chmod(0)
    fails_cleanly(shared, "run", f"exp{suffix}", names="cannot be read: permission denied")


# ---- command-line arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["run", "exp.py", "-j", "0"], "argument -j/--jobs: must be a whole number of at least 1, not '0'"),
    (["run", "exp.py", "-j", "many"], "argument -j/--jobs: must be a whole number of at least 1, not 'many'"),
    (["gc", "--min-age", "-1"], "argument --min-age: must be a number of seconds of at least 0, not '-1'"),
    (["gc", "--min-age", "nan"], "argument --min-age: must be a number of seconds of at least 0, not 'nan'"),
    (["lineage", "warm", "--depth", "-3"], "argument --depth: must be a whole number of at least 0"),
], ids=["jobs 0", "jobs word", "min-age negative", "min-age nan", "depth negative"])
def test_bad_numbers_are_usage_errors(shared: Path, args: list[str], words: str) -> None:
    Path("exp.py").write_text(EXPERIMENT)
    fails_cleanly(shared, *args, names=words, exit_code=2)


def test_unknown_step_name(shared: Path) -> None:
    Path("exp.py").write_text(EXPERIMENT)
    fails_cleanly(shared, "run", "exp.py", "nosuch", names="no step named 'nosuch'")


def test_store_that_is_a_file(shared: Path) -> None:
    Path("afile").write_text("not a store\n")
    for command in (["gc"], ["verify"], ["run", "exp.py"]):
        Path("exp.py").write_text(EXPERIMENT)
        fails_cleanly(shared, "--store", "afile", *command, names=str(Path("afile").absolute()))
    assert Path("afile").read_text() == "not a store\n"


def test_os_error_escaping_a_command_names_the_path(shared: Path) -> None:
    """--out-link naming a file: the run's mkdir failed with a traceback; now one line with the path and the
    operation. The step itself is cached, so the store is unchanged."""
    Path("exp.py").write_text(EXPERIMENT)
    Path("links").write_text("a file, not a directory\n")
    error = fails_cleanly(shared, "run", "exp.py", "--out-link", "links", names="links", temproots=False)
    assert "exists" in error.lower() or "not a directory" in error.lower()


def test_internal_error_is_reported_as_a_bug(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A genuine bug is not disguised as a user error: it says so, shows the traceback and exits 70.
    (No real bug is known to trigger it, so a command that raises one stands in for it.)"""
    def broken(args: object) -> int:
        raise KeyError("bug")
    monkeypatch.setitem(cli.COMMANDS, "gc", broken)
    assert cli.main(["gc"]) == 70
    err = capsys.readouterr().err
    assert err.startswith("nw: internal error (a bug in nw") and "Please report it" in err
    assert "Traceback" in err and "KeyError: 'bug'" in err


def test_closed_stdout_is_quiet(shared: Path) -> None:
    """`nw show warm | head -0`: the reader has gone; no traceback and no 'Exception ignored' noise."""
    read, write = os.pipe()
    os.close(read)  # closed before nw writes: the write fails with EPIPE every time
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent), NIX_WORKFLOW_STORE=str(shared))
    try:
        proc = subprocess.run([sys.executable, "-m", "nixlib.cli", "show", "warm"], cwd=shared.parent / "warm",
                              env=env, stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert proc.returncode == 1
    assert proc.stderr == ""

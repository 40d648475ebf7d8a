"""nixworkflow.yaml: envs for adapters, and every mistake named by file, line and key (no Nix needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlib import slurm
from nixlib.config import ConfigError, find_config, load_config, mentions
from nixlib.env import Env
from nixlib.recipe import RunOptions
from nixlib.slurm import SlurmAction, SlurmConfig, SlurmOptions, layered
from tests.helpers import nw, tree_snapshot

PIN = {"url": "https://example.org/nixpkgs.tar.gz", "sha256": "0" * 52}

GOOD = f"""\
# pinned package set for every env below
nixpkgs:
  url: {PIN['url']}
  sha256: "{PIN['sha256']}"
env:
  packages: [python3, coreutils]
envs:
  train:
    packages: python3Packages.torch
    gpu: true
    sandbox: true
  tools: {{file: nix/default.nix, attr: train}}
  local:
    packages: [hello]
    nixpkgs: ./pkgs
  prebuilt: {{store_paths: [/nix/store/00000000000000000000000000000000-foo]}}
  legacy: host
steps:
  train_model: train
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_good_config(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "nixworkflow.yaml", GOOD))
    assert cfg.env() == Env(packages=["python3", "coreutils"], nixpkgs=PIN)
    assert cfg.options() == RunOptions()
    assert cfg.env("train") == Env(packages=["python3Packages.torch"], nixpkgs=PIN)
    assert cfg.options("train") == RunOptions(gpu=True, sandbox=True)
    tools = cfg.env("tools")
    assert tools is not None and tools.file == str(tmp_path / "nix" / "default.nix") and tools.attr == "train"
    local = cfg.env("local")
    assert local is not None and local.nixpkgs == {"kind": "path", "path": str(tmp_path / "pkgs")}
    prebuilt = cfg.env("prebuilt")
    assert prebuilt is not None and prebuilt.store_paths == ("/nix/store/00000000000000000000000000000000-foo",)
    legacy = cfg.env("legacy")
    assert legacy is not None and legacy.host
    assert cfg.env_for("train_model") == cfg.env("train")
    assert cfg.options_for("train_model") == RunOptions(gpu=True, sandbox=True)
    assert cfg.env_for("anything else") == cfg.env()
    assert find_config(tmp_path) == tmp_path / "nixworkflow.yaml"
    assert find_config(tmp_path / "nix") is None


def test_env_where_points_at_the_yaml_line(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "nixworkflow.yaml", GOOD))
    train = cfg.env("train")
    assert train is not None and train.where == f"{tmp_path / 'nixworkflow.yaml'}:9"


def test_empty_config_means_host(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "nixworkflow.yaml", "# nothing yet\n"))
    assert cfg.env() is None and cfg.envs == {}


def test_unknown_env_name_lists_the_known_ones(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "nixworkflow.yaml", GOOD))
    with pytest.raises(ConfigError, match=r"no env named 'gpu' \(envs: legacy, local, prebuilt, tools, train\)"):
        cfg.env("gpu")


BAD = {
    "misspelled key": ("envs:\n  train:\n    pakages: [torch]\n", 3,
                       "envs.train.pakages: unknown key (did you mean 'packages'?)"),
    "unknown top key": ("nixpkgs: {path: .}\nenviron: {}\n", 2, "environ: unknown key (did you mean 'env'?)"),
    "package not a string": ("env:\n  packages:\n    - python3\n    - 3\n", 4, "env.packages[1]: expected package"),
    "option not a bool": ("envs:\n  a:\n    packages: [x]\n    nixpkgs: ./p\n    gpu: maybe\n", 5,
                          "envs.a.gpu: expected true or false"),
    "steps to unknown env": ("envs:\n  a: host\nsteps:\n  train: b\n", 4, "steps.train: no env named 'b'"),
    "empty env": ("env: {}\n", 1, "env: an env needs packages, file or store_paths"),
    "sha256 without url": ("nixpkgs:\n  sha256: abc\nenv: {packages: [x]}\n", 2, "nixpkgs: sha256 needs url"),
    "yaml syntax": ("env:\n  packages: [python3\n", 3, "not valid YAML"),
    "unpinned packages": ("env:\n  packages: [python3]\n", 2, "from <nixpkgs> (a channel on the Nix search path)"),
    "url without sha256": ("envs:\n  a:\n    packages: [x]\n    nixpkgs: {url: 'https://x.org/n.tar.gz'}\n", 4,
                           "nix-prefetch-url --unpack https://x.org/n.tar.gz"),
    "flake without revision": ("envs:\n  a:\n    packages: [x]\n    nixpkgs: github:NixOS/nixpkgs/nixos-24.05\n", 4,
                               "flake github:NixOS/nixpkgs/nixos-24.05 (no revision)"),
    "attr without file": ("env: {attr: x, store_paths: [/nix/store/00000000000000000000000000000000-x]}\n", 1,
                          "attr='x' needs file="),
    "store path outside the store": ("env: {store_paths: [/usr/bin]}\n", 1, "/usr/bin is not under /nix/store"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_config_names_file_line_and_key(tmp_path: Path, case: str) -> None:
    text, line, message = BAD[case]
    path = write(tmp_path / "nixworkflow.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:{line}"), str(info.value)
    assert message in str(info.value)


def test_unpinned_config_allowed_when_opted_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIX_WORKFLOW_ALLOW_UNPINNED", "1")
    cfg = load_config(write(tmp_path / "nixworkflow.yaml", "env:\n  packages: [python3]\n"))
    env = cfg.env()
    assert env is not None and env.nixpkgs == {"kind": "nixpath", "name": "nixpkgs"}


def test_malformed_config_in_a_run_is_an_error_before_any_step(tmp_path: Path, store_root: Path) -> None:
    write(tmp_path / "nixworkflow.yaml", "envs:\n  train:\n    packages: [torch]\n    sandbx: true\n")
    exp = write(tmp_path / "exp.py", "from nixlib import output\nfrom nixlib.config import load_config\n"
                                     "first = output('echo 1 > $out/x')\n"
                                     f"cfg = load_config({str(tmp_path / 'nixworkflow.yaml')!r})\n"
                                     "second = output('echo 2 > $out/x', env=cfg.env('train'))\n")
    nw("run", str(write(tmp_path / "warm.py", "from nixlib import output\nw = output('echo w > $out/w')\n")),
       check=True)
    before = tree_snapshot(store_root)
    proc = nw("run", str(exp))
    assert proc.returncode == 1
    assert f"{tmp_path / 'nixworkflow.yaml'}:4: envs.train.sandbx: unknown key (did you mean 'sandbox'?)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree_snapshot(store_root) == before


# ---- slurm: (nw run --slurm; docs/slurm.md) ------------------------------------------------------------------

SLURM = """\
slurm:
  enabled: true
  partition: batch
  time: 1:30:00            # unquoted: YAML 1.1 would read the sexagesimal integer 5400
  cpus: 2
  mem: 4096
  options: [--account=lab]
  steps:
    train:
      partition: gpu,gpu2
      gpus: a100:2
      mem: 64G
      time: 2-12
      options: --constraint=ib
    2024: {cpus: 8}
"""


def test_slurm_section(tmp_path: Path) -> None:
    path = write(tmp_path / "nixworkflow.yaml", SLURM)
    cfg = load_config(path).slurm
    assert cfg is not None and cfg.enabled is True and cfg.enabled_at == f"{path}:2"
    assert cfg.default == SlurmOptions("batch", "1:30:00", 2, "4096", None, ("--account=lab",))
    assert cfg.steps == {"train": SlurmOptions("gpu,gpu2", "2-12", None, "64G", "a100:2", ("--constraint=ib",)),
                         "2024": SlurmOptions(cpus=8)}
    assert cfg.step_lines == {"train": f"{path}:9", "2024": f"{path}:15"}
    assert load_config(write(path, "slurm: false\n")).slurm == SlurmConfig(path, False, f"{path}:1")
    assert load_config(write(path, "slurm: {partition: x}\n")).slurm == SlurmConfig(
        path, None, "", SlurmOptions(partition="x"))
    assert load_config(write(path, "env: host\n")).slurm is None


@pytest.mark.parametrize("text", ['"slurm": {mem: 4GB}\n', "{slurm: {mem: 4GB}}\n", "'slurm':\n  mem: 4GB\n",
                                  "? slurm\n: {mem: 4GB}\n"], ids=["quoted", "flow", "single-quoted", "explicit-key"])
def test_a_slurm_section_in_any_yaml_spelling_is_read_by_nw_run(tmp_path: Path, text: str) -> None:
    """`nw run FILE.py` reads only the sections it uses; a top-level key spelled other than `slurm:` at the start
    of a line is still that section, so its mistake stops the run instead of the section being silently ignored."""
    yaml_path = write(tmp_path / "nixworkflow.yaml", text)
    exp = write(tmp_path / "exp.py", "from nixlib import output\na = output('echo a > $out/v')\n")
    proc = nw("run", str(exp))
    assert proc.returncode == 1 and f"{yaml_path}:" in proc.stderr, proc.stderr
    assert "slurm.mem: '4GB' is not a memory size" in proc.stderr, proc.stderr
    assert not Path("nix-workflow-output/a").exists()


@pytest.mark.parametrize(("text", "expected"), [
    ("slurm: true\n", True), ('"slurm": true\n', True), ("{env: host, slurm: true}\n", True),
    ("env: host  # slurm: later\n", False), ("steps:\n  slurm: tools\n", False),  # a comment, a nested key
    ("- slurm\n", False),  # not a mapping: no top-level keys
    ("envs: [unclosed\nslurm: true\n", True),  # not YAML: the loader reports it
    ("envs: [unclosed\n", False),  # not YAML, but no slurm in it: a file for the adapters does not stop nw run
])
def test_mentions_decides_from_the_top_level_keys(tmp_path: Path, text: str, expected: bool) -> None:
    assert mentions(write(tmp_path / "nixworkflow.yaml", text), "slurm") is expected


SLURM_BAD = {
    "cpus zero": ("slurm:\n  cpus: 0\n", 2, "slurm.cpus: 0 is not a CPU count"),
    "cpus a bool": ("slurm:\n  cpus: true\n", 2, "slurm.cpus: True is not a CPU count"),
    "cpus a list": ("slurm:\n  cpus: [1]\n", 2, "slurm.cpus: expected a whole number"),
    "time in hours": ("slurm:\n  steps:\n    train:\n      time: 2h\n", 4,
                      "slurm.steps.train.time: '2h' is not a Slurm time"),
    "time empty": ("slurm:\n  time:\n", 2, "slurm.time: expected a single value"),
    "mem with a B": ("slurm:\n  mem: 4GB\n", 2, "slurm.mem: '4GB' is not a memory size"),
    "gpus words": ("slurm:\n  gpus: two\n", 2, "slurm.gpus: 'two' is not a GPU count"),
    "partition two words": ("slurm:\n  partition: gpu batch\n", 2, "slurm.partition: 'gpu batch' is not a partition"),
    "option not an option": ("slurm:\n  options:\n    - --account=lab\n    - account=lab\n", 4,
                             "slurm.options[1]: 'account=lab' is not an sbatch option"),
    "requeue": ("slurm:\n  steps:\n    a:\n      options: [--requeue]\n", 4,
                "slurm.steps.a.options[0]: '--requeue' cannot be used: Slurm could start a second copy"),
    "array by prefix": ("slurm:\n  options: --arr=1-3\n", 2, "slurm.options: '--arr=1-3' cannot be used"),
    "array short": ("slurm:\n  options: [-a1-3]\n", 2, "'-a1-3' cannot be used"),
    "misspelled key": ("slurm:\n  steps:\n    a:\n      partiton: gpu\n", 4,
                       "slurm.steps.a.partiton: unknown key (did you mean 'partition'?)"),
    "enabled not a bool": ("slurm:\n  enabled: maybe\n", 2, "slurm.enabled: expected true or false"),
    "slurm a number": ("slurm: 3\n", 1, "slurm: expected true, false or a mapping"),
    "steps a list": ("slurm:\n  steps: [a]\n", 2, "slurm.steps: expected a mapping of step names"),
    "step given twice": ("slurm:\n  steps:\n    a: {cpus: 1}\n    a: {cpus: 2}\n", 4, "slurm.steps.a: given twice"),
    "step entry not a mapping": ("slurm:\n  steps:\n    a: gpu\n", 3, "slurm.steps.a: expected a mapping with keys"),
    "enabled per step": ("slurm:\n  steps:\n    a: {enabled: true}\n", 3, "slurm.steps.a.enabled: unknown key"),
}


@pytest.mark.parametrize("case", sorted(SLURM_BAD))
def test_malformed_slurm_section_names_file_line_and_key(tmp_path: Path, case: str) -> None:
    text, line, message = SLURM_BAD[case]
    path = write(tmp_path / "nixworkflow.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:{line}: "), str(info.value)
    assert message in str(info.value)


_SETTINGS = {"partition": st.sampled_from(["gpu", "a,b", "x y", "-p", ""]),
             "time": st.sampled_from(["90", "1:30:00", "2-12", "2h", "UNLIMITED", "1:2:3:4"]) | st.integers(),
             "cpus": st.integers(-2, 9) | st.booleans() | st.sampled_from(["2", "two", None]),
             "mem": st.sampled_from(["4G", "4096", "4GB", "1.5G", "0"]), "gpus": st.sampled_from(["1", "a100:2", "x"]),
             "options": st.lists(st.sampled_from(["--account=lab", "--requeue", "-a1", "x", "--qos=hi"]), max_size=3)}
_JOB = st.fixed_dictionaries({}, optional=_SETTINGS) | st.sampled_from([None, "gpu", 3, []])
_SLURM_DOC = st.fixed_dictionaries({}, optional={"enabled": st.booleans() | st.sampled_from(["yes", 1]),
                                                 "steps": st.dictionaries(st.sampled_from(["a", "b", "2"]), _JOB,
                                                                          max_size=3), **_SETTINGS})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_SLURM_DOC | st.booleans() | st.sampled_from([None, 3, "on", []]))
def test_any_slurm_section_loads_checked_or_fails_cleanly(tmp_path: Path, doc: object) -> None:
    """Whatever `slurm:` holds, loading either fails with file:line: slurm… or gives settings every value of which
    passes the --slurm-* rules (so it reaches sbatch as it was written)."""
    path = write(tmp_path / "nixworkflow.yaml", yaml.safe_dump({"slurm": doc}))
    try:
        cfg = load_config(path).slurm
    except ConfigError as e:
        assert re.match(rf"{re.escape(str(path))}:\d+: slurm", str(e)), str(e)
        return
    assert cfg is not None
    for opts in [cfg.default, *cfg.steps.values()]:
        checks = [(opts.partition, slurm.partition_problem), (opts.time, slurm.time_problem),
                  (opts.mem, slurm.mem_problem), (opts.gpus, slurm.gpus_problem)]
        assert all(check(v) is None for v, check in checks if v is not None)
        assert opts.cpus is None or (type(opts.cpus) is int and opts.cpus >= 1)
        assert all(slurm.option_problem(o) is None for o in opts.extra)


# Precedence (docs/slurm.md): --slurm-step > --slurm-* > `slurm: steps: STEP:` > `slurm:`. sbatch keeps an option's
# last occurrence, so the effective value of a setting is its last one in the argv.
_FLAGS = {"partition": "--partition", "time": "--time", "cpus": "--cpus-per-task"}
_LAYER = st.builds(SlurmOptions, partition=st.sampled_from([None, "p1", "p2"]), time=st.sampled_from([None, "5", "9"]),
                   cpus=st.sampled_from([None, 1, 2]), extra=st.lists(st.sampled_from(
                       ["--partition=x1", "--time=77", "--cpus-per-task=3", "--qos=q"]), max_size=2).map(tuple))


@given(layers=st.lists(_LAYER, min_size=1, max_size=4))
def test_the_highest_layer_that_sets_a_value_wins(layers: list[SlurmOptions]) -> None:
    argv = layered(layers)
    for field, flag in _FLAGS.items():
        expected = None
        for layer in reversed(layers):  # the highest layer deciding: its extra options come after its named ones
            given = [a.split("=", 1)[1] for a in layer.extra if a.startswith(flag + "=")]
            if given or getattr(layer, field) is not None:
                expected = given[-1] if given else str(getattr(layer, field))
                break
        effective = [a.split("=", 1)[1] for a in argv if a.startswith(flag + "=")]
        assert (effective[-1] if effective else None) == expected, argv
        assert sum(a.startswith(flag + "=") for a in argv) <= sum(  # each named setting given once at most
            a.startswith(flag + "=") for layer in layers for a in layer.extra) + 1


def test_slurm_action_orders_the_four_sources() -> None:
    cfg = SlurmConfig(Path("nixworkflow.yaml"), True, "", SlurmOptions(time="10", cpus=1, extra=("--qos=low",)),
                      {"train": SlurmOptions(cpus=4, mem="8G", extra=("--qos=high",))})
    action = SlurmAction(SlurmOptions(mem="16G"), {"train": ("--mem=32G",)}, cfg)
    assert action.sbatch_args("train") == ["--time=10", "--qos=low", "--cpus-per-task=4", "--qos=high",
                                           "--mem=16G", "--mem=32G"]
    assert action.sbatch_args("other") == ["--time=10", "--cpus-per-task=1", "--qos=low", "--mem=16G"]

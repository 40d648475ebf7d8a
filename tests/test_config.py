"""nixworkflow.yaml: envs for adapters, and every mistake named by file, line and key (no Nix needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixlib.config import ConfigError, find_config, load_config
from nixlib.env import Env
from nixlib.recipe import RunOptions
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

"""Env specs: sources and pinning, identity from the real nix-instantiate, realisation, GC roots,
the evaluation cache, and the Nix settings nw adds for root without a daemon."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixlib import env as envmod
from nixlib import nix
from nixlib.env import HOST, Env, UnpinnedSource, resolve, resolve_for
from nixlib.errors import NixWorkflowError
from tests import nixsets
from tests.nixcheck import require_nix

VERSIONS = {"hello": "1.0", "greet": "2.0"}


@pytest.fixture(autouse=True)
def fresh_memo() -> Iterator[None]:
    """Each test sees a cold process: resolutions are memoised per process."""
    envmod.clear_memo()
    yield
    envmod.clear_memo()


@pytest.fixture
def pinned(tmp_path: Path) -> dict[str, str]:
    """A local package set as a sha256-pinned file:// tarball (the code path of a nixpkgs pin)."""
    require_nix("nix-instantiate")
    src = nixsets.package_set(tmp_path / "pkgs", VERSIONS)
    url, sha256 = nixsets.tarball(src, tmp_path / "pkgs.tar.gz")
    return {"url": url, "sha256": sha256}


# ---- specs and pinning (no Nix) ------------------------------------------------------------------


def test_host_specs() -> None:
    assert resolve(None) is HOST and resolve("host") is HOST and resolve(Env(host=True)) is HOST
    assert HOST.identity == {"kind": "host"} and HOST.is_host


@pytest.mark.parametrize("source, kind", [
    ({"path": "pkgs"}, "path"), ("./pkgs", "path"), (Path("pkgs"), "path"),
    ({"url": "https://x/n.tar.gz", "sha256": "1" * 52}, "url"),
    ("github:NixOS/nixpkgs/" + "a" * 40, "flake"), ("git+https://x/n?rev=" + "b" * 40, "flake"),
])
def test_pinned_sources_pass(source: object, kind: str) -> None:
    env = Env(packages=["hello"], nixpkgs=source)
    assert env.nixpkgs["kind"] == kind
    envmod._check_pinned(env)


@pytest.mark.parametrize("source, hint", [
    (None, "<nixpkgs> (a channel on the Nix search path)"),
    ("<nixpkgs>", "<nixpkgs> (a channel on the Nix search path)"),
    ("channel:nixos-24.05", "nix-prefetch-url --unpack https://nixos.org/channels/nixos-24.05/nixexprs.tar.xz"),
    ({"url": "https://x/n.tar.gz"}, "add sha256 = the output of `nix-prefetch-url --unpack https://x/n.tar.gz`"),
    ("https://x/n.tar.gz", "(a URL without sha256)"),
    ("github:NixOS/nixpkgs/nixos-24.05", "name a revision, e.g. github:NixOS/nixpkgs/<40-character commit>"),
])
def test_unpinned_sources_are_refused_with_a_hint(source: object, hint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NIX_WORKFLOW_ALLOW_UNPINNED", raising=False)
    with pytest.raises(UnpinnedSource) as info:
        resolve(Env(packages=["hello"], nixpkgs=source))
    assert hint in str(info.value) and "--allow-unpinned" in str(info.value)
    assert "test_env.py" in str(info.value)  # names where the env was declared
    monkeypatch.setenv("NIX_WORKFLOW_ALLOW_UNPINNED", "1")
    envmod._check_pinned(Env(packages=["hello"], nixpkgs=source))  # the opt-in accepts it


def test_env_validation() -> None:
    with pytest.raises(NixWorkflowError, match="is not under /nix/store"):
        Env(store_paths=["/usr/bin/python3"])
    with pytest.raises(NixWorkflowError, match="needs file="):
        Env(attr="x")
    with pytest.raises(NixWorkflowError, match="cannot be combined"):
        Env(host=True, packages=["x"])
    with pytest.raises(NixWorkflowError, match="unknown env key"):
        resolve({"pakages": ["x"]})


def test_mapping_spec_is_the_same_env() -> None:
    assert Env(**{"packages": ["a"], "nixpkgs": {"path": "/p"}}) == Env(packages=["a"], nixpkgs={"path": "/p"})


def test_root_without_daemon_gets_build_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    monkeypatch.setenv("NIX_CONF_DIR", str(conf))
    monkeypatch.setenv("NIX_CONFIG", "cores = 3")
    monkeypatch.setattr(nix, "DAEMON_SOCKET", tmp_path / "no-socket")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    env = nix.environ()
    assert env["NIX_CONFIG"].startswith(nix.ROOT_NO_DAEMON_CONFIG) and env["NIX_CONFIG"].endswith("cores = 3")
    assert env["NIX_PATH"] == ""  # <nixpkgs> is a channel: not pinned
    assert "NIX_PATH" not in nix.environ(pinned=False) or nix.environ(pinned=False)["NIX_PATH"] == os.environ.get(
        "NIX_PATH")
    (conf / "nix.conf").write_text("build-users-group = nixbld\n")
    assert nix.environ()["NIX_CONFIG"] == "cores = 3"  # configured build users: leave Nix alone
    (conf / "nix.conf").write_text("")
    (tmp_path / "no-socket").touch()  # a daemon builds for us
    assert nix.environ()["NIX_CONFIG"] == "cores = 3"
    (tmp_path / "no-socket").unlink()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # not root: Nix as configured
    assert nix.environ()["NIX_CONFIG"] == "cores = 3"


def test_nix_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(nix.NixMissing) as info:
        resolve(Env(packages=["hello"], nixpkgs={"path": str(tmp_path)}))
    message = str(info.value)
    assert "apt-get install nix-bin" in message and "nixos.org/nix/install" in message
    assert "host envs" in message and "still run without Nix" in message


# ---- with the real Nix ---------------------------------------------------------------------------


@pytest.mark.nix
def test_identity_is_the_drvs_nix_instantiates(pinned: dict[str, str], store_root: Path) -> None:
    resolved = resolve(Env(packages=["hello", "greet"], nixpkgs=pinned))
    expr = (f'let p = import (builtins.fetchTarball {{ url = "{pinned["url"]}"; sha256 = "{pinned["sha256"]}"; }}) '
            "{}; in [ p.hello p.greet ]")
    drvs = nixsets.instantiate(expr)
    assert resolved.identity == {"kind": "nix", "drvs": sorted(drvs)}
    outs = [o for d in drvs for o in nixsets.outputs(d)]
    assert list(resolved.paths) == outs
    assert all(os.path.isfile(f"{o}/bin/{n}") for o, n in zip(outs, ["hello", "greet"], strict=True))
    # realised envs are Nix GC roots: nix-collect-garbage cannot delete them
    roots = subprocess.run([require_nix("nix-store"), "--query", "--roots", outs[0]], capture_output=True,
                           text=True, check=True).stdout
    assert str(store_root / "nix-gcroots") in roots


@pytest.mark.nix
def test_drv_outputs_match_nix_store_query(pinned: dict[str, str]) -> None:
    drv = resolve(Env(packages=["hello"], nixpkgs=pinned)).identity["drvs"][0]
    assert list(nix.drv_outputs(drv).values()) == nixsets.outputs(drv)


@pytest.mark.nix
def test_tool_interpolation_joins_the_env(pinned: dict[str, str]) -> None:
    tools = Env(packages=["hello", "greet"], nixpkgs=pinned)
    hello = tools["hello"]
    assert os.path.basename(hello).endswith("-hello")
    command = f"{hello}/bin/hello > $out/x"
    by_context = resolve_for(None, command)
    assert by_context.identity == {"kind": "nix", "drvs": [hello.drv]}
    assert by_context == resolve(Env(packages=["hello"], nixpkgs=pinned))
    both = resolve_for(Env(packages=["greet"], nixpkgs=pinned), command)
    assert both.identity["drvs"] == sorted([hello.drv, tools["greet"].drv])
    assert str(Env(packages=["hello"], nixpkgs=pinned)) == hello
    assert resolve(hello) == by_context  # one package as a spec
    assert resolve([hello, tools["greet"]]) == resolve(tools)  # a list is the union
    assert resolve_for([tools["greet"]], command).identity == both.identity
    with pytest.raises(NixWorkflowError, match="has 2 packages"):
        str(tools)
    with pytest.raises(NixWorkflowError, match="no package 'nope' \\(it has hello, greet\\)"):
        tools["nope"]


@pytest.mark.nix
def test_file_env_with_attr_and_explicit_store_paths(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    src = nixsets.package_set(tmp_path / "set", VERSIONS)
    whole = resolve(Env(file=src / "default.nix"))
    one = resolve(Env(file=src / "default.nix", attr="greet"))
    assert one.identity["drvs"] == nixsets.instantiate(f"(import {src} {{}}).greet")
    assert set(one.identity["drvs"]) < set(whole.identity["drvs"])
    explicit = resolve(Env(store_paths=one.identity["drvs"]))
    assert explicit.identity == one.identity
    plain = resolve(Env(store_paths=list(one.paths)))
    assert plain.identity == {"kind": "nix", "drvs": [], "paths": list(one.paths)}


@pytest.mark.nix
def test_evaluation_cache_calls_nix_once_until_a_file_changes(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    src = nixsets.package_set(tmp_path / "set", VERSIONS)
    spec = Env(file=src / "default.nix", attr="hello")
    first = resolve(spec)
    used = nix.CALLS.count
    for _ in range(3):
        envmod.clear_memo()  # as a new process would
        assert resolve(spec) == first
    assert nix.CALLS.count == used  # neither evaluated nor realised again
    nixsets.package_set(src, {**VERSIONS, "hello": "1.1"})
    envmod.clear_memo()
    changed = resolve(spec)
    assert changed.identity != first.identity
    assert nix.CALLS.count == used + 2  # one evaluation, one realisation


@pytest.mark.nix
def test_evaluation_error_shows_nix_message_with_file_and_line(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    bad = tmp_path / "env.nix"
    bad.write_text("{ }:\n{\n  tool = undefined_thing;\n}\n")
    with pytest.raises(NixWorkflowError) as info:
        resolve(Env(file=bad))
    message = str(info.value)
    assert "undefined variable 'undefined_thing'" in message
    assert f"{bad}:3:" in message


@pytest.mark.nix
def test_unpinned_fetch_inside_a_nix_file_is_refused(tmp_path: Path, pinned: dict[str, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NIX_WORKFLOW_ALLOW_UNPINNED", raising=False)
    env_file = tmp_path / "env.nix"
    env_file.write_text(f'let pkgs = import (builtins.fetchTarball "{pinned["url"]}") {{}};\nin pkgs.hello\n')
    with pytest.raises(NixWorkflowError) as info:
        resolve(Env(file=env_file))
    message = str(info.value)
    assert f"fetchTarball {pinned['url']} is not pinned" in message
    assert f"nix-prefetch-url --unpack {pinned['url']}" in message
    assert f"{env_file}:1:" in message and "--allow-unpinned" in message
    channel = tmp_path / "channel.nix"
    channel.write_text("let pkgs = import <nixpkgs> {};\nin pkgs.hello\n")
    with pytest.raises(NixWorkflowError, match="file 'nixpkgs' was not found in the Nix search path"):
        resolve(Env(file=channel))
    monkeypatch.setenv("NIX_WORKFLOW_ALLOW_UNPINNED", "1")
    assert resolve(Env(file=env_file)).identity == resolve(Env(packages=["hello"], nixpkgs=pinned)).identity


@pytest.mark.nix
def test_a_tool_that_fails_to_build_is_a_clear_error(tmp_path: Path) -> None:
    require_nix("nix-store")
    src = nixsets.package_set(tmp_path / "set", VERSIONS, broken=("greet",))
    with pytest.raises(NixWorkflowError) as info:
        resolve(Env(packages=["greet"], nixpkgs={"path": str(src)}))
    assert "building the env at" in str(info.value) and "compiling greet failed: missing header" in str(info.value)


@pytest.mark.nix
def test_flake_reference_needs_a_lock_and_then_gives_the_same_drvs(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    require_nix("nix-instantiate")
    monkeypatch.delenv("NIX_WORKFLOW_ALLOW_UNPINNED", raising=False)
    flake = tmp_path / "flake"
    nixsets.package_set(flake / "set", VERSIONS)
    (flake / "flake.nix").write_text("""{
  outputs = { self }: {
    legacyPackages = builtins.listToAttrs
      (map (s: { name = s; value = import ./set { }; }) [ "x86_64-linux" "aarch64-linux" ]);
  };
}
""")
    nar_hash = subprocess.run([require_nix("nix"), "--extra-experimental-features", "nix-command", "hash", "path",
                               str(flake)], capture_output=True, text=True, check=True).stdout.strip()
    with pytest.raises(UnpinnedSource, match="no revision"):
        resolve(Env(packages=["hello"], nixpkgs=f"path:{flake}"))
    locked = resolve(Env(packages=["hello"], nixpkgs=f"path:{flake}?narHash={nar_hash}"))
    assert locked.identity["drvs"] == nixsets.instantiate(f"(import {flake / 'set'} {{}}).hello")

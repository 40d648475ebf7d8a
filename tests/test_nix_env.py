"""`nw run experiment.py` with Nix-pinned envs, end to end through the real CLI and the real Nix.

The package set is a local one packed as a file:// tarball pinned by sha256: the same code
path as `nixpkgs = {url, sha256}` for a real nixpkgs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests import nixsets
from tests.helpers import nw, tree_snapshot
from tests.nixcheck import require_nix

pytestmark = pytest.mark.nix

EXPERIMENT = """\
from nixlib import Env, output
pkgs = Env(packages=["hello", "greet"], nixpkgs={{"url": "{url}", "sha256": "{sha256}"}})
hi = output(f"echo ran >> {count}-hi; {{pkgs['hello']}}/bin/hello > $out/said")
gr = output("echo ran >> {count}-gr; greet > $out/said", env=Env(packages=["greet"], nixpkgs=pkgs.nixpkgs))
both = output(f"cat {{hi}}/said {{gr}}/said > $out/all")
"""


def pin(tmp_path: Path, versions: dict[str, str], tag: str) -> dict[str, str]:
    src = nixsets.package_set(tmp_path / f"set-{tag}" / "pkgs", versions)
    url, sha256 = nixsets.tarball(src, tmp_path / f"pkgs-{tag}.tar.gz")
    return {"url": url, "sha256": sha256}


def runs(count: Path, step: str) -> int:
    path = Path(f"{count}-{step}")
    return len(path.read_text().splitlines()) if path.exists() else 0


def keys() -> dict[str, str]:
    summary = json.loads(Path("nix-workflow-output/.nw-last-run.json").read_text())
    return {name: entry["recipe_key"] for name, entry in summary.items()}


def test_pinned_env_runs_caches_and_rekeys_on_change(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    count, log = tmp_path / "count", tmp_path / "nix-calls"
    shim = nixsets.nix_shim(tmp_path / "shim", log)
    exp = tmp_path / "exp.py"
    v1 = pin(tmp_path, {"hello": "1.0", "greet": "1.0"}, "v1")
    exp.write_text(EXPERIMENT.format(count=count, **v1))

    first = nw("run", str(exp), env=shim, check=True)
    assert "not pinned by Nix: both\n" in first.stderr  # only the step without an env (it uses the host's cat)
    assert Path("nix-workflow-output/both/all").read_text() == "hello 1.0\ngreet 1.0\n"
    keys_v1 = keys()

    calls_before = len(nixsets.calls(log))
    again = nw("run", str(exp), env=shim, check=True)
    assert "cached 3" in again.stderr and "done 0" in again.stderr
    assert nixsets.calls(log)[calls_before:] == []  # an unchanged env starts no Nix process at all
    assert keys() == keys_v1

    # One package changes (a new pinned tarball): only the step using it, and its dependant, re-run.
    v2 = pin(tmp_path, {"hello": "1.1", "greet": "1.0"}, "v2")
    exp.write_text(EXPERIMENT.format(count=count, **v2))
    nw("run", str(exp), env=shim, check=True)
    keys_v2 = keys()
    assert keys_v2["hi"] != keys_v1["hi"] and keys_v2["both"] != keys_v1["both"]
    assert keys_v2["gr"] == keys_v1["gr"]  # greet's derivation is identical in both tarballs
    assert (runs(count, "hi"), runs(count, "gr")) == (2, 1)
    assert Path("nix-workflow-output/both/all").read_text() == "hello 1.1\ngreet 1.0\n"


def test_show_lists_the_exact_store_paths_of_the_env(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    v1 = pin(tmp_path, {"hello": "1.0", "greet": "1.0"}, "v1")
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT.format(count=tmp_path / "count", **v1))
    nw("run", str(exp), check=True)
    expr = (f'(import (builtins.fetchTarball {{ url = "{v1["url"]}"; sha256 = "{v1["sha256"]}"; }}) {{}}).greet')
    (drv,) = nixsets.instantiate(expr)
    (out,) = nixsets.outputs(drv)
    shown = nw("show", "gr", check=True).stdout
    assert drv in shown and out in shown
    record = json.loads(nw("show", "gr", "--json", check=True).stdout)
    assert record["env"] == {"identity": {"kind": "nix", "drvs": [drv]}, "paths": [out]}


def test_pure_mode_hides_host_tools(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    hostbin = tmp_path / "hostbin"
    hostbin.mkdir()
    (hostbin / "host-only-tool").write_text("#!/bin/sh\necho from the host\n")
    (hostbin / "host-only-tool").chmod(0o755)
    src = nixsets.package_set(tmp_path / "pkgs", {"hello": "1.0"})
    exp = tmp_path / "exp.py"
    exp.write_text(  # only shell builtins: a pure env has nothing else unless it brings it
        "from nixlib import Env, output\n"
        f"env = Env(packages=['hello'], nixpkgs={{'path': '{src}'}})\n"
        "probe = 'hello > $out/env; if command -v host-only-tool >/dev/null; then echo seen; else echo hidden; fi'\n"
        "pure = output(probe + ' > $out/host; echo $PATH > $out/path', env=env, pure=True)\n"
        "impure = output(probe + ' > $out/host', env=env)\n")
    nw("run", str(exp), env={"PATH": f"{hostbin}{os.pathsep}{os.environ['PATH']}"}, check=True)
    assert Path("nix-workflow-output/pure/host").read_text() == "hidden\n"
    assert Path("nix-workflow-output/impure/host").read_text() == "seen\n"
    assert Path("nix-workflow-output/pure/env").read_text() == "hello 1.0\n"
    (out,) = [p for p in Path("nix-workflow-output/pure/path").read_text().strip().split(":")]
    assert out.startswith("/nix/store/") and out.endswith("-hello/bin")


BAD = {
    "unpinned package source": ("from nixlib import Env, output\n"
                                "a = output('hello > $out/x', env=Env(packages=['hello']))\n",
                                "<nixpkgs> (a channel on the Nix search path), which is not pinned"),
    "url without sha256": ("from nixlib import Env, output\n"
                           "a = output('hello > $out/x', env=Env(packages=['hello'], "
                           "nixpkgs={{'url': 'file://{tarball}'}}))\n",
                           "nix-prefetch-url --unpack file://"),
    "evaluation error": ("from nixlib import Env, output\n"
                         "a = output('hello > $out/x', env=Env(file='{broken}'))\n",
                         "undefined variable 'no_such_package'"),
    "tool fails to build": ("from nixlib import Env, output\n"
                            "a = output('echo fine > $out/x')\n"
                            "b = output('greet > $out/x', env=Env(packages=['greet'], nixpkgs={{'path': '{src}'}}))\n",
                            "compiling greet failed: missing header"),
    "unknown package": ("from nixlib import Env, output\n"
                        "a = output('nope > $out/x', env=Env(packages=['nope'], nixpkgs={{'path': '{src}'}}))\n",
                        "the package set has no attribute 'nope'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_env_is_a_clear_error_before_any_step(tmp_path: Path, store_root: Path, case: str) -> None:
    require_nix("nix-instantiate")
    src = nixsets.package_set(tmp_path / "pkgs", {"hello": "1.0", "greet": "1.0"}, broken=("greet",))
    broken = tmp_path / "broken.nix"
    broken.write_text("{ }:\nlet\n  x = 1;\nin no_such_package\n")
    source, message = BAD[case]
    nw("run", str(_write(tmp_path / "warm.py", "from nixlib import output\nw = output('echo w > $out/w')\n")),
       check=True)
    before = tree_snapshot(store_root)
    exp = _write(tmp_path / "exp.py", source.format(src=src, broken=broken, tarball=tmp_path / "x.tar.gz"))
    proc = nw("run", str(exp))
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "running" not in proc.stderr
    if case == "evaluation error":
        assert f"{broken}:4:" in proc.stderr
    after = tree_snapshot(store_root)  # the (empty) directories for Nix GC roots may appear, nothing else
    assert ({k: v for k, v in after.items() if not (k.startswith("nix-gcroots") and v == "dir")}
            == {k: v for k, v in before.items() if not (k.startswith("nix-gcroots") and v == "dir")})


def test_nix_missing_says_how_to_install_and_host_envs_still_work(tmp_path: Path) -> None:
    bare = tmp_path / "bare-path"
    bare.mkdir()
    src = tmp_path / "pkgs"
    exp = _write(tmp_path / "exp.py", "from nixlib import Env, output\n"
                 "a = output('echo host > $out/x')\n"
                 f"b = output('hello > $out/x', env=Env(packages=['hello'], nixpkgs={{'path': '{src}'}}))\n")
    proc = nw("run", str(exp), env={"PATH": str(bare)})
    assert proc.returncode == 1
    assert "Install Nix" in proc.stderr and "apt-get install nix-bin" in proc.stderr
    assert "host envs" in proc.stderr and "still run without Nix" in proc.stderr
    host_only = _write(tmp_path / "host.py", "from nixlib import output\na = output('echo host > $out/x')\n")
    nw("run", str(host_only), env={"PATH": str(bare)}, check=True)
    assert Path("nix-workflow-output/a/x").read_text() == "host\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path

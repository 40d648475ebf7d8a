"""`nw run experiment.nix`: the Nix front door, through the real CLI and the real Nix."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixlib import dsl, nixfront
from nixlib import env as envmod
from nixlib.recipe import RunOptions
from tests import nixsets
from tests.helpers import REPO, nw, tree_snapshot
from tests.nixcheck import require_nix

pytestmark = pytest.mark.nix

SHOWCASE = REPO / "examples" / "showcase"
STEPS = 13  # steps that run (predict/eval_base_epoch2 use the checkpoint model_base publishes)
SERVED = STEPS + 1  # and model_base@epoch-2, counted as served once published
LIB = "inherit ((import <nixworkflow>).lib) output static;"


@pytest.fixture(autouse=True)
def fresh_memo() -> Iterator[None]:
    envmod.clear_memo()
    yield
    envmod.clear_memo()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_showcase_runs_offline_then_is_fully_cached(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    log = tmp_path / "nix-calls"
    shim = nixsets.nix_shim(tmp_path / "shim", log)
    first = nw("run", str(SHOWCASE / "experiment.nix"), "-j", "2", env=shim, check=True)
    assert f"done {STEPS} · cached 1" in first.stderr and "warning" not in first.stderr
    comparison = json.loads(Path("nix-workflow-output/comparison/comparison.json").read_text())
    assert len(comparison["results"]) == 3 and all(r["n"] == 500 for r in comparison["results"])

    seen = len(nixsets.calls(log))
    second = nw("run", str(SHOWCASE / "experiment.nix"), env=shim, check=True)
    assert f"cached {SERVED}" in second.stderr and "done 0" in second.stderr
    assert nixsets.calls(log)[seen:] == []  # evaluation cached, tools present and rooted: no Nix at all

    # `nw show` lists the exact store paths of the tools, as the real Nix computes them
    (drv,) = nixsets.instantiate(f"(import {SHOWCASE / 'nix'} {{}}).train")
    (out,) = nixsets.outputs(drv)
    shown = nw("show", "model_base", check=True).stdout
    assert drv in shown and f"{out}/bin/train" in shown

    # the Python version with the same tools through an Env keys every step the same: nothing re-runs
    py = nw("run", str(SHOWCASE / "experiment_env.py"), env=shim, check=True)
    assert f"cached {SERVED}" in py.stderr and "done 0" in py.stderr


def test_same_step_in_nix_and_python_has_the_same_recipe_key(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    src = nixsets.package_set(tmp_path / "pkgs", {"hello": "1.0", "greet": "1.0"})
    url, sha256 = nixsets.tarball(src, tmp_path / "pkgs.tar.gz")
    data = write(tmp_path / "data.csv", "x,y\n1,2\n")
    nix_hash = subprocess.run([require_nix("nix-hash"), "--type", "sha256", "--base32", str(data)],
                              capture_output=True, text=True, check=True).stdout.strip()
    py = write(tmp_path / "exp.py", f"""\
from nixlib import Env, output, static
tools = Env(packages=["hello", "greet"], nixpkgs={{"url": "{url}", "sha256": "{sha256}"}})
data = static("{data}")
first = output(f"{{tools['hello']}}/bin/hello --in={{data}} > $out/x")
second = output(f'''
  {{tools['greet']}}/bin/greet
    --lr=0.1 --from={{first}}/x
''', env=tools)
""")
    nix = write(tmp_path / "exp.nix", f"""\
let
  {LIB}
  pkgs = import (builtins.fetchTarball {{ url = "{url}"; sha256 = "{sha256}"; }}) {{ }};
  data = static {{ path = ./data.csv; hash = "{nix_hash}"; }};
in
rec {{
  first = output "${{pkgs.hello}}/bin/hello --in=${{data}} > $out/x";
  second = output {{
    cmd = ''
      ${{pkgs.greet}}/bin/greet --from=${{first}}/x --lr=0.1
    '';
    env = [ pkgs.hello pkgs.greet ];
  }};
}}
""")
    from_py, from_nix = dsl.load(py), nixfront.load(nix)
    assert set(from_py.recipes) == set(from_nix.recipes) == {"first", "second"}
    for name in ("first", "second"):
        assert from_py.recipes[name].key == from_nix.recipes[name].key, name
        assert from_py.recipes[name].env == from_nix.recipes[name].env
    pinned = f'builtins.fetchTarball {{ url = "{url}"; sha256 = "{sha256}"; }}'
    hello_drv = nixsets.instantiate(f"(import ({pinned}) {{}}).hello")
    assert from_nix.recipes["first"].env == {"kind": "nix", "drvs": hello_drv}


def test_options_names_groups_and_pins(tmp_path: Path, store_root: Path) -> None:
    require_nix("nix-instantiate")
    exp = write(tmp_path / "exp.nix", f"""\
let {LIB} in
rec {{
  base = output {{ cmd = "echo base > $out/v"; name = "the-base"; pure = true; sandbox = true; network = false; }};
  models = {{
    small = output "cat ${{base}}/v > $out/v; echo small >> $out/v";
    large = output "cat ${{base}}/v > $out/v; echo large >> $out/v";
  }};
  runs = [ (output "echo 0 > $out/v") (output "echo 1 > $out/v") ];
}}
""")
    workflow = nixfront.load(exp)
    assert workflow.named == ["the-base", "models.large", "models.small", "runs.0", "runs.1"]
    assert workflow.recipes["the-base"].options == RunOptions(pure=True, sandbox=True, network=False)
    assert [r.name for r in workflow.recipes["models.small"].upstream()] == ["the-base"]
    assert workflow.host_steps  # no tools interpolated: host env, which `nw run` warns about
    nw("run", str(exp), "models.small", check=True)
    produced = Path("nix-workflow-output/models.small/v").read_text()
    assert produced == "base\nsmall\n"
    h = Path("nix-workflow-output/models.small").resolve().name
    pinned = write(tmp_path / "pinned.nix", f"""\
let {LIB} in
rec {{
  model = output {{ cmd = "exit 1"; hash = "{h}"; }};
  use = output "cat ${{model}}/v > $out/copy";
}}
""")
    nw("run", str(pinned), check=True)
    assert Path("nix-workflow-output/use/copy").read_text() == produced


BAD = {
    "not a step": (f"let {LIB} in {{ a = output \"echo a > $out/a\"; helper = x: x; n = 3; }}\n",
                   ["'helper' (", "is a function", "'n' (", "is an int", "exp.nix:1"]),
    "syntax error": (f"let {LIB} in {{\n  a = output \"echo a\"\n  b = 1;\n}}\n",
                     ["syntax error", "exp.nix:3:"]),
    "channel": (f"let {LIB}\n  pkgs = import <nixpkgs> {{}};\nin {{ a = output \"${{pkgs.hello}}/bin/hello\"; }}\n",
                ["file 'nixpkgs' was not found in the Nix search path", "exp.nix:2:", "--allow-unpinned"]),
    "url without sha256": (f"let {LIB}\n  pkgs = import (fetchTarball \"{{url}}\") {{}};\n"
                           "in { a = output \"${pkgs.hello}/bin/hello\"; }\n",
                           ["is not pinned", "nix-prefetch-url --unpack file://", "exp.nix:2:", "--allow-unpinned"]),
    "tool fails to build": (f"let {LIB}\n  pkgs = import {{src}} {{{{}}}};\n"
                            "in { a = output \"echo fine > $out/x\";\n"
                            "     b = output \"${pkgs.greet}/bin/greet > $out/x\"; }\n",
                            ["step 'b'", "building the env", "compiling greet failed: missing header"]),
    "unknown output argument": (f"let {LIB} in {{ a = output {{ cmd = \"echo\"; gpus = true; }}; }}\n",
                                ["output got unknown argument(s) gpus", "exp.nix:1:"]),
    "bad static hash": (f"let {LIB}\n  d = static {{ path = ./exp.nix; hash = \"{'0' * 52}\"; }};\n"
                        "in { a = output \"cat ${d} > $out/x\"; }\n",
                        ["static input", "exp.nix has hash", f"but the experiment pins {'0' * 52}"]),
    "not a set": (f"let {LIB} in output \"echo\"\n", ["must evaluate to an attribute set of steps"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_experiment_is_a_clear_error_before_any_step(tmp_path: Path, store_root: Path, case: str) -> None:
    require_nix("nix-instantiate")
    src = nixsets.package_set(tmp_path / "pkgs", {"hello": "1.0", "greet": "1.0"}, broken=("greet",))
    url = f"file://{tmp_path / 'pkgs.tar.gz'}"
    if case == "url without sha256":
        nixsets.tarball(src, tmp_path / "pkgs.tar.gz")
    nw("run", str(write(tmp_path / "warm.py", "from nixlib import output\nw = output('echo w > $out/w')\n")),
       check=True)
    before = tree_snapshot(store_root)
    text, messages = BAD[case]
    exp = write(tmp_path / "exp.nix", text.replace("{url}", url).replace("{src}", str(src)).replace("{{}}", "{}"))
    proc = nw("run", str(exp))
    assert proc.returncode == 1, proc.stderr
    for message in messages:
        assert message in proc.stderr, (message, proc.stderr)
    assert "Traceback" not in proc.stderr and ": running" not in proc.stderr
    after = tree_snapshot(store_root)  # the (empty) directories for Nix GC roots may appear, nothing else
    assert ({k: v for k, v in after.items() if not (k.startswith("nix-gcroots") and v == "dir")}
            == {k: v for k, v in before.items() if not (k.startswith("nix-gcroots") and v == "dir")})


def test_nix_missing_for_an_experiment_nix(tmp_path: Path) -> None:
    bare = tmp_path / "bare-path"
    bare.mkdir()
    exp = write(tmp_path / "exp.nix", f"let {LIB} in {{ a = output \"echo\"; }}\n")
    proc = nw("run", str(exp), env={"PATH": str(bare)})
    assert proc.returncode == 1
    assert "evaluates the experiment with Nix" in proc.stderr and "apt-get install nix-bin" in proc.stderr
    assert "Experiments written in Python (experiment.py) with host envs still run without Nix" in proc.stderr


def test_allow_unpinned_runs_a_channel_experiment(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    src = nixsets.package_set(tmp_path / "pkgs", {"hello": "1.0"})
    exp = write(tmp_path / "exp.nix", f"let {LIB}\n  pkgs = import <nixpkgs> {{}};\n"
                "in { a = output \"${pkgs.hello}/bin/hello > $out/x\"; }\n")
    refused = nw("run", str(exp), env={"NIX_PATH": f"nixpkgs={src}"})
    assert refused.returncode == 1 and "--allow-unpinned" in refused.stderr
    nw("run", "--allow-unpinned", str(exp), env={"NIX_PATH": f"nixpkgs={src}"}, check=True)
    assert Path("nix-workflow-output/a/x").read_text() == "hello 1.0\n"

"""Wave 11 probe of the Nix front door (`nw run experiment.nix`): experiment.nix files as Nix users write them
(package-set helpers such as `lib.importJSON` and `callPackage`, symlinked configs, nested sweeps), each a
regression test that failed before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import nixsets
from tests.helpers import nw
from tests.nixcheck import require_nix

pytestmark = pytest.mark.nix

LIB = "inherit ((import <nixworkflow>).lib) output;"

# A package set's own helpers, as nixpkgs defines them: they read the user's files with the real builtins,
# because a package set is imported from the Nix store, where nw's tracing guard does not reach.
PKGS = """{ }:
rec {
  lib = {
    importJSON = p: builtins.fromJSON (builtins.readFile p);
    cleanSource = src: builtins.path { path = src; name = "source"; filter = _: _: true; };
    fileContents = p: builtins.readFile p;
  };
  callPackage = f: args: (if builtins.isFunction f then f else import f) ({ inherit lib; } // args);
}
"""


def run(exp: Path, env: dict[str, str] | None = None) -> str:
    """`nw run exp` must succeed; its stderr (the progress lines)."""
    return nw("run", str(exp), env=env, check=True).stderr


def out(name: str) -> str:
    return Path("nix-workflow-output", name, "x").read_text()


def test_files_a_package_sets_helpers_read_are_evaluation_dependencies(tmp_path: Path) -> None:
    """`pkgs.lib.importJSON ./config.json`, `pkgs.lib.cleanSource ./src` and a `callPackage ./tool.nix` whose file
    reads `./tool-data` read local files through the package set's code (imported from the Nix store, so not
    traced): after editing those files, every step was served from the store with its old output."""
    require_nix("nix-instantiate")
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    (pkgs / "default.nix").write_text(PKGS)
    url, sha256 = nixsets.tarball(pkgs, tmp_path / "pkgs.tar.gz")
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "src" / "a").write_text("src-1\n")
    (proj / "config.json").write_text('{"lr": 1}\n')
    (proj / "tool-data").write_text("tool-1")
    (proj / "tool.nix").write_text("{ lib }: { msg = builtins.readFile ./tool-data; }\n")
    (proj / "seed").write_text("7")
    exp = proj / "experiment.nix"
    exp.write_text(f"""let
  {LIB}
  pkgs = import (builtins.fetchTarball {{ url = "{url}"; sha256 = "{sha256}"; }}) {{ }};
  cfg = pkgs.lib.importJSON ./config.json;
  tool = pkgs.callPackage ./tool.nix {{ }};
in {{
  conf = output "echo lr=${{toString cfg.lr}} > $out/x";
  copy = output "cat ${{pkgs.lib.cleanSource ./src}}/a > $out/x";
  tool = output "echo ${{tool.msg}} > $out/x";
  seed = output "echo seed=${{pkgs.lib.fileContents ./seed}} > $out/x";
}}
""")
    assert "done 4" in run(exp)
    assert (out("conf"), out("copy"), out("tool"), out("seed")) == ("lr=1\n", "src-1\n", "tool-1\n", "seed=7\n")
    assert "cached 4" in run(exp)  # nothing changed: served
    (proj / "config.json").write_text('{"lr": 2}\n')
    (proj / "src" / "a").write_text("src-2\n")
    (proj / "tool-data").write_text("tool-2")
    (proj / "seed").write_text("8")
    assert "done 4" in run(exp)
    assert (out("conf"), out("copy"), out("tool"), out("seed")) == ("lr=2\n", "src-2\n", "tool-2\n", "seed=8\n")
    assert "cached 4" in run(exp)


def test_a_symlinked_config_and_import_are_followed_by_the_evaluation_cache(tmp_path: Path) -> None:
    """`builtins.readFile ./config.json` and `import ./steps.nix`, each a symlink into configs/: the cache
    recorded the symlinks only, so editing the files they point to served the old steps."""
    require_nix("nix-instantiate")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "v1.json").write_text('{"lr": 1}\n')
    (configs / "steps.nix").write_text('{ output }: { s = output "echo steps-1 > $out/x"; }\n')
    (tmp_path / "config.json").symlink_to("configs/v1.json")
    (tmp_path / "steps.nix").symlink_to("configs/steps.nix")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f"""let
  {LIB}
  cfg = builtins.fromJSON (builtins.readFile ./config.json);
  st = import ./steps.nix {{ inherit output; }};
in {{ a = output "echo lr=${{toString cfg.lr}} > $out/x"; inherit (st) s; }}
""")
    assert "done 2" in run(exp) and (out("a"), out("s")) == ("lr=1\n", "steps-1\n")
    (configs / "v1.json").write_text('{"lr": 2}\n')
    (configs / "steps.nix").write_text('{ output }: { s = output "echo steps-2 > $out/x"; }\n')
    assert "done 2" in run(exp) and (out("a"), out("s")) == ("lr=2\n", "steps-2\n")


def test_builtins_reached_by_their_double_underscore_names_are_traced(tmp_path: Path) -> None:
    """Nix also names every builtin `__name` (`__readFile`, `__getEnv`): those bypassed the guard, so a read
    through them was no dependency and an edit served the old step."""
    require_nix("nix-instantiate")
    (tmp_path / "c.txt").write_text("one")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f'let {LIB} in {{\n  a = output "echo ${{__readFile ./c.txt}} ${{__getEnv "LR"}} > $out/x";\n}}\n')
    assert "done 1" in run(exp, {"LR": "1"}) and out("a") == "one 1\n"
    (tmp_path / "c.txt").write_text("two")
    assert "done 1" in run(exp, {"LR": "1"}) and out("a") == "two 1\n"
    assert "done 1" in run(exp, {"LR": "2"}) and out("a") == "two 2\n"


def test_a_nested_sweep_of_steps_is_named_by_its_path(tmp_path: Path) -> None:
    """`grid.${lr}.${bs} = output …` (a set of sets of steps, as experiment.py's `grid[lr][bs]`) was refused as
    "'grid' is a set"; and a set mixing steps with other values named only the whole set, not the culprit."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f"""let
  {LIB}
  mk = lr: bs: output "echo ${{lr}} ${{bs}} > $out/x";
  sweep = f: xs: builtins.listToAttrs (map (x: {{ name = x; value = f x; }}) xs);
in rec {{
  grid = sweep (lr: sweep (bs: mk lr bs) [ "32" "64" ]) [ "0.1" "0.01" ];
  runs = [ (mk "a" "1") {{ extra = mk "b" "2"; }} ];
  report = output "cat ${{grid."0.1"."64"}}/x ${{builtins.elemAt runs 0}}/x > $out/x";
}}
""")
    assert "done 7" in run(exp)
    assert out("grid.0.01.32") == "0.01 32\n" and out("runs.1.extra") == "b 2\n"
    assert out("report") == "0.1 64\na 1\n"
    exp.write_text(f"""let {LIB} in {{
  train = {{ small = output "echo 1 > $out/x"; meta = {{ lr = 3; }}; }};
}}
""")
    proc = nw("run", str(exp))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "'train.meta.lr' (" in proc.stderr and "is an int" in proc.stderr, proc.stderr


def test_unpinned_fetchurl_by_its_double_underscore_name_is_refused(tmp_path: Path) -> None:
    """`__fetchurl "file://…"` without sha256 went around the pinning guard."""
    require_nix("nix-instantiate")
    (tmp_path / "c.txt").write_text("one")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f'let {LIB} f = __fetchurl "file://{tmp_path}/c.txt"; in {{ a = output "cat ${{f}} > $out/x"; }}\n')
    proc = nw("run", str(exp))
    assert proc.returncode == 1 and "is not pinned" in proc.stderr and "experiment.nix:1" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not Path("nix-workflow-output/a").exists()


def test_path_literals_are_found_outside_strings_and_comments() -> None:
    from nixlib.nixpaths import literals
    text = """# a comment ./c1
/* a block ./c2 */
let a = ./cfg.json; b = "./s1 ${./in-string} /usr/bin $${./s2} \\${./s3}";
  c = '' ./s4 ${toString ../up} ''${./s5} ''' '';
  d = ./data/${name}.json; e = ~/h/x; f = <nixpkgs>; g = https://x.org/a/b; h = x: x / 2;
  i = { ${n} = ./in/attr; }; j = /abs/p; k = sub/dir;
in a
"""
    assert literals(text) == ["./cfg.json", "./in-string", "../up", "./data", "~/h/x", "./in/attr", "/abs/p",
                              "sub/dir"]


def test_a_path_literal_is_checked_by_stat_without_the_run_s_own_writes(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluation cache's check of a path literal (`@PATH`): unchanged is equal, an edit, a new file or a
    removal is not; the out-link directory and the store inside the tree are not looked at."""
    import os

    from nixlib import evalcache
    monkeypatch.setattr(evalcache, "now_ns", lambda: 1 << 62)  # nothing counts as just changed
    root = tmp_path / "proj" / ".nw-store"
    root.mkdir(parents=True)
    cache = evalcache.EvalCache(root)
    proj = tmp_path / "proj"
    (proj / "src").mkdir()
    (proj / "src" / "a.py").write_text("one\n")
    links = proj / "nix-workflow-output"
    links.mkdir()
    (links / ".nw-last-run.json").write_text("{}")
    first = cache.stat(str(proj))
    assert first.startswith("stat:") and cache.stat(str(proj)) == first
    (links / ".nw-last-run.json").write_text('{"run": 2}')
    (links / "model").symlink_to(tmp_path)
    (root / "object").write_text("x")
    assert cache.stat(str(proj)) == first
    (proj / "src" / "a.py").write_text("two\n")
    os.utime(proj / "src" / "a.py", ns=(1, 1))
    assert cache.stat(str(proj)) != first
    second = cache.stat(str(proj))
    (proj / "src" / "b.py").write_text("")
    assert cache.stat(str(proj)) != second
    assert cache.stat(str(proj / "missing")) == evalcache.ABSENT

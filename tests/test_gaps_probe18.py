"""Known gaps closed by gaps18: a Makefile recipe running make in a sub-directory (`cd one && $(MAKE)`, `cd $(DIR);
make part`) and make's `-I DIR` / `--include-dir=DIR`: the sub-directory's Makefile, the scripts its recipes run
and the makefiles found through -I were not keyed; a namespace package beside a script (a directory without
__init__.py: `from mypkg import util`), and its portions on PYTHONPATH, were not keyed either. Each test failed
before its fix (the real Snakemake CLI with `--executor nixworkflow`, the real `nw run`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import nw
from tests.test_gaps_probe17 import counted_snakemake

# ---------------------------------------------------------------------------------------------------------------
# 1. make run by a recipe in a sub-directory; make's -I

# `cd one && $(MAKE)`, `$(MAKE) -C two`, `cd $(THREE); make part`: each sub-make's Makefile and the script it runs
RECURSIVE = {
    "build/Makefile": "THREE := three\nall:\n\tcd one && $(MAKE) OUT=$(OUT)\n\t$(MAKE) -C two OUT=$(OUT)\n"
                      "\tcd $(THREE); make part OUT=$(OUT)\n",
    "build/one/Makefile": "all:\n\tpython3 gen.py >> $(OUT)\n",
    "build/one/gen.py": "print('one')\n",
    "build/two/Makefile": "all:\n\tpython3 gen.py >> $(OUT)\n",
    "build/two/gen.py": "print('two')\n",
    "build/three/Makefile": "part:\n\tbash part.sh >> $(OUT)\n",
    "build/three/part.sh": "echo three\n",
    # (`-I mk`: make looks for `include rules.mk` there; rules.mk's recipe runs mk/tool.py)
    "incl/Makefile": "include rules.mk\n",
    "incl/mk/rules.mk": "MSG = inc\nall:\n\techo $(MSG) >> $(OUT)\n",
    # (not run by any of the makes: editing them re-runs nothing)
    "build/unused/Makefile": "all:\n\techo unused\n",
    "build/unused/gen.py": "print('unused')\n",
    "incl/rules.mk.orig": "MSG = old\n",
}
RECURSIVE_EDITS = [("build/one/Makefile", "all:\n\tpython3 gen.py >> $(OUT) && echo ONE >> $(OUT)\n"),
                   ("build/one/gen.py", "print('one!')\n"),
                   ("build/two/gen.py", "print('two!')\n"),
                   ("build/three/Makefile", "part:\n\tbash part.sh >> $(OUT) && echo 3 >> $(OUT)\n"),
                   ("build/three/part.sh", "echo three!\n"),
                   ("incl/mk/rules.mk", "MSG = inc!\nall:\n\techo $(MSG) >> $(OUT)\n")]
RECURSIVE_UNRELATED = [("build/unused/Makefile", "all:\n\techo unused!\n"), ("build/unused/gen.py", "print(2)\n"),
                       ("incl/rules.mk.orig", "MSG = older\n")]
RECURSIVE_RESULT = "one!\nONE\ntwo!\nthree!\n3\ninc!\n"


def _write(where: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_text(text)
    return where


def _check_nw_run(root: Path, edits: list[tuple[str, str]], unrelated: list[tuple[str, str]]) -> None:
    """Run root/experiment.py's one step: run, then cached; after each of `edits` run once more, then cached; after
    each of `unrelated`, still cached."""
    def run() -> str:
        return nw("run", str(root / "experiment.py"), cwd=root, check=True).stderr

    assert "done 1" in run()
    assert "cached 1" in run()
    for name, text in edits:
        (root / name).write_text(text)
        assert "done 1" in run(), f"stale after editing {name}"
        assert "cached 1" in run(), f"not served after editing {name}"
    for name, text in unrelated:
        (root / name).write_text(text)
        assert "cached 1" in run(), f"re-ran after editing {name}, which nothing reads"


@pytest.mark.long  # (~45 s: in `make test-long`; `make test` keeps the nw run variant)
def test_snakemake_keys_the_makefiles_and_scripts_of_sub_makes_and_include_dirs(tmp_path: Path, log: Path) -> None:
    """`make -C build` whose recipes run `cd one && $(MAKE)` and `cd $(THREE); make part`, and `make -I mk -C incl`
    (incl/Makefile: `include rules.mk`, found in incl/mk): one/Makefile, one/gen.py, three/Makefile, three/part.sh
    and mk/rules.mk were not keyed, so editing them served the old result."""
    pytest.importorskip("snakemake")
    where = _write(tmp_path / "wf", {**RECURSIVE, "Snakefile": '''
rule make:
    output: "out/make.txt"
    shell: "make -s -C build OUT=$PWD/{output} && make -s -I mk -C incl OUT=$PWD/{output} && echo make >> $NW_TEST_LOG"
'''})
    run = counted_snakemake(where, log, "make")
    assert run() == 1
    assert run() == 0, "an unchanged re-run must be restored from the store"
    for name, text in RECURSIVE_EDITS:
        (where / name).write_text(text)
        assert run() == 1, f"stale after editing {name}"
        assert run() == 0, f"not served after editing {name}"
    for name, text in RECURSIVE_UNRELATED:
        (where / name).write_text(text)
        assert run() == 0, f"re-ran after editing {name}, which no make reads"
    assert (where / "out/make.txt").read_text() == RECURSIVE_RESULT


def test_nw_run_keys_the_makefiles_and_scripts_of_sub_makes_and_include_dirs(tmp_path: Path) -> None:
    """The same makes run by an nw run step (`make -C {HERE}/build`, `make --include-dir={HERE}/incl/mk -C
    {HERE}/incl`): stale after editing a sub-make's Makefile or script, or the makefile found through -I."""
    root = _write(tmp_path / "proj", RECURSIVE)
    (root / "experiment.py").write_text(
        "from nixlib.dsl import output\n"
        f"step = output('make -s -C {root}/build OUT=$out/v && make -s --include-dir={root}/incl/mk -C {root}/incl "
        "OUT=$out/v')\n")
    out = root / "nix-workflow-output/step/v"
    _check_nw_run(root, RECURSIVE_EDITS, RECURSIVE_UNRELATED)
    assert out.read_text() == RECURSIVE_RESULT


def test_which_makefiles_sub_makes_and_include_dirs_read(tmp_path: Path) -> None:
    """Pure logic: the makefiles of_command finds through recipes changing directory and through -I, and no other."""
    from nixlib import makefiles
    root = _write(tmp_path / "p", {
        **RECURSIVE,
        "a/Makefile": "SUB = deep\nall:\n\t(cd b && cd $(SUB) && $(MAKE) x)\n\techo cd nowhere; make -C ../none\n",
        "a/b/deep/Makefile": "x:\n\ttrue\n",
        "c/Makefile": "include x.mk\n",
        "c/inc/x.mk": "\n",
        "inc/x.mk": "\n",
        "d/Makefile": "all:\n\t$(MAKE) -C sub\n",  # (a sub-make looks in its own inc/: make hands `-I inc` on)
        "d/sub/Makefile": "include x.mk\n",
        "d/sub/inc/x.mk": "\n",
        "d/inc/x.mk": "\n",
    })
    rel = lambda command, cds=(): sorted(os.path.relpath(p, root) for p in makefiles.of_command(command, cds))  # noqa: E731
    assert rel(f"make -C {root}/build") == ["build/Makefile", "build/one/Makefile", "build/three/Makefile",
                                             "build/two/Makefile"]
    assert rel(f"make -C {root}/a") == ["a/Makefile", "a/b/deep/Makefile"]
    assert rel("make -Iinc -C c", [str(root)]) == ["c/Makefile", "c/inc/x.mk"]  # (relative to -C's directory)
    assert rel(f"make --include-dir {root}/inc -C c", [str(root)]) == ["c/Makefile", "inc/x.mk"]
    assert rel("make -I inc", [str(root / "d")]) == ["d/Makefile", "d/sub/Makefile", "d/sub/inc/x.mk"]
    assert rel("make -C c", [str(root)]) == ["c/Makefile"]


# ---------------------------------------------------------------------------------------------------------------
# 2. Namespace packages beside a script (no __init__.py), with a portion on PYTHONPATH

NAMESPACE = {
    "scripts/fit.py": "import sys\nimport mypkg.util\nfrom mypkg import extra\n"
                      "open(sys.argv[1], 'w').write(f'{mypkg.util.scale(3)} {extra.WORD}\\n')\n",
    "scripts/mypkg/util.py": "from mypkg.sub import deep\n\ndef scale(x):\n    return x * deep.FACTOR\n",
    "scripts/mypkg/sub/deep.py": "FACTOR = 10\n",
    "lib/mypkg/extra.py": "WORD = 'lib'\n",
    # (no module of the namespace package, or none it can import: editing them re-runs nothing)
    "scripts/other/x.py": "X = 1\n",
    "scripts/mypkg/my-data/gen.py": "Y = 1\n",
    "lib/unused.py": "Z = 1\n",
}
NAMESPACE_EDITS = [("scripts/mypkg/util.py",
                    "from mypkg.sub import deep\n\ndef scale(x):\n    return x * deep.FACTOR + 1\n"),
                   ("scripts/mypkg/sub/deep.py", "FACTOR = 7\n"),
                   ("lib/mypkg/extra.py", "WORD = 'lib!'\n")]
NAMESPACE_UNRELATED = [("scripts/other/x.py", "X = 2\n"), ("scripts/mypkg/my-data/gen.py", "Y = 2\n"),
                       ("lib/unused.py", "Z = 2\n")]
NAMESPACE_RESULT = "22 lib!\n"


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_snakemake_keys_a_namespace_package_beside_a_script(tmp_path: Path, log: Path) -> None:
    """`PYTHONPATH=lib python3 scripts/fit.py` (a shell command) and `script: "scripts/fit.py"` importing
    `mypkg.util` and `from mypkg import extra`, mypkg a namespace package (scripts/mypkg/ and lib/mypkg/, no
    __init__.py): its modules were not keyed, so editing util.py, sub/deep.py or lib/mypkg/extra.py served the old
    result."""
    pytest.importorskip("snakemake")
    from tests.test_snakemake import ok, snakemake
    from tests.test_snakemake_semantics import wipe

    where = _write(tmp_path / "wf", {**NAMESPACE, "Snakefile": '''
rule shell:
    output: "out/shell.txt"
    shell: "PYTHONPATH=lib python3 scripts/fit.py {output} && echo shell >> $NW_TEST_LOG"

rule script:
    output: "out/script.txt"
    script: "scripts/run.py"
''', "scripts/run.py": '''import os, sys
sys.path.append(os.path.join(os.getcwd(), "lib"))
import mypkg.util
from mypkg import extra
open(snakemake.output[0], "w").write(f"{mypkg.util.scale(3)} {extra.WORD}\\n")
open(os.environ["NW_TEST_LOG"], "a").write("script\\n")
'''})

    def run() -> dict[str, int]:
        before = log.read_text().split() if log.exists() else []
        wipe(where, "out")
        ok(snakemake(where, "out/shell.txt", "out/script.txt"))
        after = log.read_text().split()
        return {k: after.count(k) - before.count(k) for k in ("shell", "script")}

    assert run() == {"shell": 1, "script": 1}
    assert run() == {"shell": 0, "script": 0}, "an unchanged re-run must be restored from the store"
    for name, text in NAMESPACE_EDITS:
        (where / name).write_text(text)
        assert run() == {"shell": 1, "script": 1}, f"stale after editing {name}"
        assert run() == {"shell": 0, "script": 0}, f"not served after editing {name}"
    for name, text in NAMESPACE_UNRELATED:
        (where / name).write_text(text)
        assert run() == {"shell": 0, "script": 0}, f"re-ran after editing {name}, which no module imports"
    assert (where / "out/shell.txt").read_text() == NAMESPACE_RESULT


def test_nw_run_keys_a_namespace_package_beside_a_script(tmp_path: Path) -> None:
    """The same script run by an nw run step (`PYTHONPATH={HERE}/lib python3 {HERE}/scripts/fit.py $out/v`)."""
    root = _write(tmp_path / "proj", NAMESPACE)
    (root / "experiment.py").write_text(
        "from nixlib.dsl import output\n"
        f"step = output('PYTHONPATH={root}/lib python3 {root}/scripts/fit.py $out/v')\n")
    out = root / "nix-workflow-output/step/v"
    _check_nw_run(root, NAMESPACE_EDITS, NAMESPACE_UNRELATED)
    assert out.read_text() == NAMESPACE_RESULT


def test_module_files_of_a_namespace_package(tmp_path: Path) -> None:
    """Pure logic: a directory without __init__.py is a namespace portion (its importable .py files), except in
    site-packages or for a standard library name; a regular package or a module file is found as before."""
    from nixlib import codefiles
    _write(tmp_path, {"p/ns/a.py": "", "p/ns/sub/b.py": "", "p/ns/my-data/c.py": "", "p/ns/.hidden/d.py": "",
                      "p/ns/not-a-module.py": "", "p/reg/__init__.py": "", "p/reg/x.py": "", "p/mod.py": "",
                      "p/json/e.py": "", "site-packages/ns/f.py": ""})
    rel = lambda d, n, **kw: sorted(os.path.relpath(p, tmp_path)  # noqa: E731
                                    for p in codefiles.module_files(str(tmp_path / d), n, **kw))
    assert rel("p", "ns") == ["p/ns/a.py", "p/ns/sub/b.py"]
    assert rel("p", "ns", namespace=False) == []
    assert rel("p", "reg") == ["p/reg/__init__.py", "p/reg/x.py"]
    assert rel("p", "mod") == ["p/mod.py"]
    assert rel("p", "json") == []  # (the standard library's json is a regular package: it wins)
    assert rel("site-packages", "ns") == []  # (installed code, not the project's)



def test_a_big_data_directory_named_like_an_import_is_not_walked_as_a_namespace_package(tmp_path: Path,
                                                                                      monkeypatch: pytest.MonkeyPatch
                                                                                      ) -> None:
    """`import datasets` (an installed library) beside a `datasets/` directory of data (class folders named like
    identifiers, thousands of files): it is no code of the project, and walking it at every evaluation costs seconds.
    Past a bound of entries the directory counts as data (not keyed), as before namespace packages were followed;
    a namespace package within the bound keeps every module (the bound is lowered here to keep the test small)."""
    from nixlib import codefiles
    monkeypatch.setattr(codefiles, "NAMESPACE_ENTRIES", 50, raising=False)
    for c in range(5):
        for i in range(12):
            (tmp_path / "p/datasets" / f"n0{c}" / f"img{i}.jpg").parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "p/datasets" / f"n0{c}" / f"img{i}.jpg").write_bytes(b"x")
    (tmp_path / "p/datasets/loader.py").write_text("")
    _write(tmp_path, {"p/ns/a.py": "", "p/ns/sub/b.py": ""})
    assert codefiles.module_files(str(tmp_path / "p"), "datasets") == []
    assert sorted(os.path.relpath(p, tmp_path) for p in codefiles.module_files(str(tmp_path / "p"), "ns")) == \
        ["p/ns/a.py", "p/ns/sub/b.py"]


# ---------------------------------------------------------------------------------------------------------------
# 3. Editable installs by hatchling (default and dev-mode-exact) and scikit-build-core

# What `pip install -e` writes into site-packages (checked against a real hatchling 1.x / editables 0.6 install:
# `_editable_impl_NAME.pth` holding the source directory; with dev-mode-exact, that .pth importing
# `_editable_impl_NAME.py`, which maps the package with editables' redirector), and scikit-build-core's redirect
# (`_editable_skbc_NAME.py` ending in `install({module: source file}, ...)`). The redirector and the redirect are
# stand-ins doing what theirs do (neither package is installed here).
REDIRECTOR = '''import importlib.util, sys
class RedirectingFinder:
    _redirections = {}
    @classmethod
    def map_module(cls, name, path):
        cls._redirections[name] = path
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if "." in fullname or path is not None or fullname not in cls._redirections:
            return None
        return importlib.util.spec_from_file_location(fullname, cls._redirections[fullname])
    @classmethod
    def install(cls):
        if cls not in sys.meta_path:
            sys.meta_path.append(cls)
'''
SKBC = '''import importlib.util, os, sys
class _Finder:
    def __init__(self, known):
        self.known = known
    def find_spec(self, fullname, path=None, target=None):
        where = self.known.get(fullname)
        if where is None:
            return None
        more = [os.path.dirname(where)] if where.endswith("__init__.py") else None
        return importlib.util.spec_from_file_location(fullname, where, submodule_search_locations=more)
def install(known_source_files, known_wheel_files, path, rebuild=False, verbose=False, build_options=(),
            install_options=(), install_dir=""):
    sys.meta_path.insert(0, _Finder(known_source_files))

install({sources!r}, {{}}, None, False, False, [], [], '')
'''


@pytest.mark.parametrize("kind", ["hatch", "hatch-exact", "scikit-build-core"])
def test_nw_run_keys_a_hatch_or_scikit_build_core_editable_install(tmp_path: Path, kind: str) -> None:
    """`python scripts/fit.py` importing `hpkg.util`, hpkg installed in development mode by hatchling (a .pth naming
    src/: already keyed) or with dev-mode-exact (editables' redirector mapping hpkg to src/hpkg/__init__.py), or by
    scikit-build-core (its redirect mapping each module to its source file): the last two were not keyed (no
    setuptools finder), so editing src/hpkg/util.py served the old result."""
    import subprocess
    import sys
    root = tmp_path / "proj"
    _write(root, {"src/hpkg/__init__.py": "", "src/hpkg/util.py": "def scale(x):\n    return x * 10\n",
                  "scripts/fit.py": "import sys\nfrom hpkg.util import scale\n"
                                    "open(sys.argv[1] + '/v', 'w').write(str(scale(3)))\n"})
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    site = next((root / ".venv/lib").glob("python3*/site-packages"))
    pkg = root / "src/hpkg"
    if kind == "hatch":
        (site / "_editable_impl_hproj.pth").write_text(f"{root / 'src'}")
    elif kind == "hatch-exact":
        _write(site, {"_editable_impl_hproj.pth": "import _editable_impl_hproj",
                      "_editable_impl_hproj.py": "from editables.redirector import RedirectingFinder as F\n"
                                                 f"F.install()\nF.map_module('hpkg', '{pkg}/__init__.py')",
                      "editables/__init__.py": "", "editables/redirector.py": REDIRECTOR})
    else:
        sources = {"hpkg": f"{pkg}/__init__.py", "hpkg.util": f"{pkg}/util.py"}
        _write(site, {"_editable_skbc_hproj.pth": "import _editable_skbc_hproj\n",
                      "_editable_skbc_hproj.py": SKBC.format(sources=sources)})
    py = root / ".venv/bin/python"
    (root / "experiment.py").write_text("from nixlib.dsl import output\n"
                                        f"step = output('{py} {root}/scripts/fit.py $out')\n")
    out = root / "nix-workflow-output/step/v"
    nw("run", str(root / "experiment.py"), cwd=root, check=True)
    assert out.read_text() == "30"
    (pkg / "util.py").write_text("def scale(x):\n    return x * 7\n")
    nw("run", str(root / "experiment.py"), cwd=root, check=True)
    assert out.read_text() == "21", "stale after editing the package's util.py"
    assert "cached 1" in nw("run", str(root / "experiment.py"), cwd=root, check=True).stderr

"""Known gaps of review17, closed (gaps17): an included makefile without a code suffix (`include Makefile.common`,
`config.mak`) keyed by the Snakemake executor and Luigi as by nw run; the modules of an editable install that renames
its package directory or maps a dotted name (a PEP 420 namespace package) keyed; a `.pth` edited in place seen by a
long-lived process; a notebook cell's `parameters` / `raises-exception` tags keyed. Each test failed before its fix."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.luigi_run import LUIGI
from tests.test_luigi_probe16b import build, write

# ---------------------------------------------------------------------------------------------------------------
# 1. Included makefiles without a code suffix

# (in the directory above the Makefile, through a variable: no data-word guess finds them)
MAKE_INCLUDES = {
    "build/sub/Makefile": "TOP := ..\ninclude $(TOP)/Makefile.common\n-include $(TOP)/config.mak\n"
                          "all:\n\techo $(MSG) $(LEVEL) > $(OUT)\n",
    "build/Makefile.common": "MSG = one\n",
    "build/config.mak": "LEVEL = low\n",
}
MAKE_INCLUDE_EDITS = [("build/Makefile.common", "MSG = two\n"), ("build/config.mak", "LEVEL = high\n")]


def counted_snakemake(where: Path, log: Path, word: str) -> Callable[[], int]:
    """A function that runs the real snakemake (`--executor nixworkflow`) in `where` after removing out/, and
    returns how many times the job that logs `word` to $NW_TEST_LOG ran."""
    from tests.test_snakemake import ok, snakemake
    from tests.test_snakemake_semantics import wipe

    def run() -> int:
        before = log.read_text().count(word) if log.exists() else 0
        wipe(where, "out")
        ok(snakemake(where))
        return log.read_text().count(word) - before
    return run


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_snakemake_keys_the_makefiles_a_makefile_includes_whatever_their_names(tmp_path: Path, log: Path) -> None:
    """`make -C build/sub` whose Makefile includes ../Makefile.common and ../config.mak: the Snakemake executor
    dropped both (no code suffix), and editing either served the old result."""
    pytest.importorskip("snakemake")
    from tests.test_snakemake_semantics import write as write_in

    where = write_in(tmp_path / "wf", {**MAKE_INCLUDES, "Snakefile": '''
rule make:
    output: "out/make.txt"
    shell: "make -C build/sub OUT=$PWD/{output} && echo make >> $NW_TEST_LOG"
'''})
    run = counted_snakemake(where, log, "make")
    assert run() == 1
    assert run() == 0, "an unchanged re-run must be restored from the store"
    for name, text in MAKE_INCLUDE_EDITS:
        (where / name).write_text(text)
        assert run() == 1, f"stale after editing {name}"
        assert run() == 0, f"not served after editing {name}"
    assert (where / "out/make.txt").read_text() == "two high\n"


def test_luigi_keys_the_makefiles_a_makefile_includes_whatever_their_names() -> None:
    """A command() running `make -C {HERE}/build/sub` and a run() calling `subprocess.run(["make", "-C",
    "build/sub"])`, whose Makefile includes ../Makefile.common and ../config.mak: both were dropped (no code suffix),
    editing either served the old result."""
    assert os.path.exists(LUIGI)
    from tests.test_luigi_probe16b import HEAD
    write({**MAKE_INCLUDES, "pipe.py": HEAD + '''
class T(NixTask):
    def output(self):
        return luigi.LocalTarget("out/made.txt")
    def run(self):
        self.output().makedirs()
        subprocess.run(["make", "-C", "build/sub", "OUT=" + os.path.abspath(self.output().path)], check=True)


class C(NixTask):
    def command(self):
        return f"make -C {HERE}/build/sub OUT={self.output()}/made.txt"
'''})
    for task in ("T", "C"):
        write(MAKE_INCLUDES)
        assert build(task) == "ran"
        assert build(task) == "served"
        for name, text in MAKE_INCLUDE_EDITS:
            Path(name).write_text(text)
            assert build(task) == "ran", f"{task}: stale after editing {name}"
            assert build(task) == "served", f"{task}: not served after editing {name}"
        if task == "T":
            assert Path("out/made.txt").read_text() == "two high\n"


def test_a_word_without_a_code_suffix_is_still_no_code_file(tmp_path: Path) -> None:
    """Only the makefiles make reads are code whatever their names: a data file named by a step is not."""
    from nixlib import codefiles, makefiles
    from nixlib.statmemo import StatMemo
    write_root = tmp_path / "p"
    (write_root / "build" / "sub").mkdir(parents=True)
    for name, text in MAKE_INCLUDES.items():
        (write_root / name).write_text(text)
    (write_root / "notes.txt").write_text("x\n")
    files = codefiles.CodeFiles(StatMemo(tmp_path / "memo"))
    read = makefiles.of_command(f"make -C {write_root}/build/sub", [])
    found = files.named([*read, str(write_root / "notes.txt"), str(write_root / "build" / "config.mak")],
                        [str(write_root)], set())
    assert sorted(os.path.relpath(p, write_root) for p in found) == ["build/Makefile.common", "build/config.mak",
                                                                     "build/sub/Makefile"]
    found = files.named([str(write_root / "notes.txt"), str(write_root / "build" / "config.mak")], [str(write_root)],
                        set())
    assert found == {}


# ---------------------------------------------------------------------------------------------------------------
# 2. Editable installs whose MAPPING renames a package's directory or maps a dotted name

FINDER = '''import sys, importlib.util
from importlib.machinery import ModuleSpec

MAPPING = {mapping!r}
NAMESPACES = {namespaces!r}
PATH_PLACEHOLDER = '__editable__.proj-0.1.finder'


class _Finder:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname in MAPPING:
            where = MAPPING[fullname]
            return importlib.util.spec_from_file_location(fullname, where + '/__init__.py',
                                                          submodule_search_locations=[where])
        if fullname in NAMESPACES:
            spec = ModuleSpec(fullname, None, is_package=True)
            spec.submodule_search_locations = list(NAMESPACES[fullname])
            return spec
        return None


def install():
    sys.meta_path.append(_Finder)
'''


def editable_project(tmp_path: Path, package: str, where: str, namespaces: dict[str, list[str]]) -> tuple[Path, Path]:
    """A project whose package `package` lives in `where` (relative), installed in its own venv by a setuptools
    editable finder as pip writes it; (project directory, the venv's python)."""
    import subprocess
    import sys
    root = tmp_path / "proj"
    pkg = root / where
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "util.py").write_text("def scale(x):\n    return x * 10\n")
    (root / "scripts").mkdir()
    (root / "scripts/fit.py").write_text(f"import sys\nfrom {package}.util import scale\n"
                                         "open(sys.argv[1] + '/v', 'w').write(str(scale(3)))\n")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    site = next((root / ".venv/lib").glob("python3*/site-packages"))
    (site / "__editable__.proj-0.1.pth").write_text(
        "import __editable___proj_0_1_finder; __editable___proj_0_1_finder.install()")
    namespaces = {k: [str(root / v) for v in vs] for k, vs in namespaces.items()}
    (site / "__editable___proj_0_1_finder.py").write_text(
        FINDER.format(mapping={package: str(pkg)}, namespaces=namespaces))
    return root, root / ".venv/bin/python"


@pytest.mark.parametrize(("package", "where", "namespaces"), [
    ("mlpkg", "lib", {}),  # package_dir={'mlpkg': 'lib'}
    ("ns.pkg", "src/ns/pkg", {"ns": ["src/ns"]}),  # a package under a PEP 420 namespace package
])
def test_nw_run_keys_an_editable_install_s_renamed_or_namespaced_package(tmp_path: Path, package: str, where: str,
                                                                          namespaces: dict[str, list[str]]) -> None:
    """`python scripts/fit.py` importing `mlpkg.util` (MAPPING {'mlpkg': '/p/lib'}) or `ns.pkg.util` (MAPPING
    {'ns.pkg': '/p/src/ns/pkg'}): the modules were not keyed (codefiles.module_files looked for mlpkg/__init__.py
    beside lib/, ns/__init__.py beside ns/), so editing util.py served the old result."""
    from tests.helpers import nw
    root, py = editable_project(tmp_path, package, where, namespaces)
    (root / "experiment.py").write_text("from nixlib.dsl import output\n"
                                        f"step = output('{py} {root}/scripts/fit.py $out')\n")
    out = root / "nix-workflow-output/step/v"
    nw("run", str(root / "experiment.py"), cwd=root, check=True)
    assert out.read_text() == "30"
    (root / where / "util.py").write_text("def scale(x):\n    return x * 7\n")
    nw("run", str(root / "experiment.py"), cwd=root, check=True)
    assert out.read_text() == "21", "stale after editing the package's util.py"
    again = nw("run", str(root / "experiment.py"), cwd=root, check=True)
    assert "cached 1" in again.stderr


def test_module_files_finds_mapped_packages_and_only_those() -> None:
    """Pure logic: a MappedDir maps a renamed package and a dotted name; another name is looked up as before."""
    import tempfile

    from nixlib import codefiles
    with tempfile.TemporaryDirectory() as d:
        for rel in ("lib/__init__.py", "lib/util.py", "src/ns/pkg/__init__.py", "src/ns/pkg/a.py", "plain.py",
                    "other/x.py"):
            Path(d, rel).parent.mkdir(parents=True, exist_ok=True)
            Path(d, rel).write_text("")
        mapped = codefiles.MappedDir(d, [("mlpkg", f"{d}/lib"), ("ns.pkg", f"{d}/src/ns/pkg")])
        assert mapped == d
        rel = lambda name: sorted(os.path.relpath(p, d) for p in codefiles.module_files(mapped, name))  # noqa: E731
        assert rel("mlpkg") == ["lib/__init__.py", "lib/util.py"]
        assert rel("ns") == ["src/ns/pkg/__init__.py", "src/ns/pkg/a.py"]
        assert rel("plain") == ["plain.py"]
        assert rel("other") == ["other/x.py"]  # (no __init__.py: a PEP 420 namespace package, gaps18)
        assert rel("lib") == ["lib/__init__.py", "lib/util.py"]
        assert codefiles.module_files(d, "mlpkg") == []


# ---------------------------------------------------------------------------------------------------------------
# 3. A .pth or finder edited in place, seen by a long-lived process


def test_a_pth_or_finder_edited_in_place_is_seen_by_a_long_lived_process(tmp_path: Path) -> None:
    """pyimports.editable_dirs was memoised by the site directory's mtime only: editing a .pth (or a finder) in place
    leaves that mtime as it was, and a long-lived process (a Luigi worker, the Snakemake executor) kept looking in
    the old directory (the modules it now imports from unkeyed: stale)."""
    from nixlib import pyimports
    site = tmp_path / "site-packages"
    site.mkdir()
    for d in ("src", "lib2", "proj/pkg", "proj/other"):
        (tmp_path / d).mkdir(parents=True)
    (site / "_proj.pth").write_text(f"{tmp_path / 'src'}\n")
    (site / "__editable__.p-0.1.pth").write_text(
        "import __editable___p_0_1_finder; __editable___p_0_1_finder.install()")
    finder = site / "__editable___p_0_1_finder.py"
    finder.write_text(f"MAPPING = {{'pkg': '{tmp_path / 'proj/pkg'}'}}\n")
    stamp = site.stat().st_mtime_ns
    assert set(pyimports.editable_dirs(str(site))) == {str(tmp_path / "src"), str(tmp_path / "proj")}
    with open(site / "_proj.pth", "r+") as f:  # in place: same file, the directory untouched
        f.write(f"{tmp_path / 'lib2'}\n")
        f.truncate()
    os.utime(site, ns=(stamp, stamp))
    assert set(pyimports.editable_dirs(str(site))) == {str(tmp_path / "lib2"), str(tmp_path / "proj")}
    with open(finder, "r+") as f:
        f.write(f"MAPPING = {{'other': '{tmp_path / 'proj/other'}', 'pkg': '{tmp_path / 'proj/pkg'}'}}\n")
        f.truncate()
    os.utime(site, ns=(stamp, stamp))
    (mapped,) = [d for d in pyimports.editable_dirs(str(site)) if d == str(tmp_path / "proj")]
    assert dict(getattr(mapped, "packages", ())) == {"other": str(tmp_path / "proj/other"),
                                                      "pkg": str(tmp_path / "proj/pkg")}


# ---------------------------------------------------------------------------------------------------------------
# 4. A notebook's cell tags that change what runs

# A stand-in for papermill (not installed here), doing what it does with the tags: the parameters (`-p NAME VALUE`)
# injected after the cell tagged `parameters` (at the top without one); an error stops the run unless its cell is
# tagged `raises-exception`.
PAPERMILL = '''import json, sys
nb, out = json.load(open(sys.argv[1])), sys.argv[2]
params = "".join(f"{n} = {v}\\n" for n, v in zip(sys.argv[4::3], sys.argv[5::3]))
cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
tagged = [i for i, c in enumerate(nb["cells"]) if "parameters" in c.get("metadata", {}).get("tags", [])]
where = len([c for c in nb["cells"][:tagged[0] + 1] if c["cell_type"] == "code"]) if tagged else 0
cells.insert(where, {"source": [params], "metadata": {}})
scope = {"OUT": out}
for c in cells:
    try:
        exec("".join(c["source"]), scope)
    except Exception:
        if "raises-exception" not in c.get("metadata", {}).get("tags", []):
            raise
'''


def tagged_notebook(cells: list[tuple[str, str, list[str]]]) -> str:
    return json.dumps({"cells": [{"cell_type": kind, "metadata": {"tags": tags} if tags else {}, "source": [source],
                                  **({"execution_count": None, "outputs": []} if kind == "code" else {})}
                                 for kind, source, tags in cells],
                       "metadata": {"kernelspec": {"language": "python", "name": "python3"}},
                       "nbformat": 4, "nbformat_minor": 5})


def test_a_notebook_s_parameters_and_raises_exception_tags_are_keyed(tmp_path: Path) -> None:
    """papermill injects its parameters after the cell tagged `parameters`: moving the tag to the next cell changes
    what the notebook computes, and a cell tagged `raises-exception` may fail without failing the run. Only the code
    cells' sources were keyed: moving the tag, or removing `raises-exception` from a failing cell, served the old
    result."""
    from tests.helpers import nw
    (tmp_path / "pm.py").write_text(PAPERMILL)
    nb = tmp_path / "nb.ipynb"
    cells = [("markdown", "# Scale\n", []), ("code", "x = 1\n", ["parameters"]), ("code", "y = x * 2\n", []),
             ("code", "assert y < 100\n", ["raises-exception"]), ("code", "open(OUT, 'w').write(str(y))\n", [])]
    nb.write_text(tagged_notebook(cells))
    (tmp_path / "experiment.py").write_text(
        "from nixlib.dsl import output\n"
        f"nb = output('python3 {tmp_path}/pm.py {tmp_path}/nb.ipynb $out/o -p x 500')\n")
    run = lambda check=True: nw("run", str(tmp_path / "experiment.py"), cwd=tmp_path, check=check)  # noqa: E731
    out = tmp_path / "nix-workflow-output/nb/o"
    assert "done 1" in run().stderr
    assert out.read_text() == "1000"
    assert "cached 1" in run().stderr
    cells[1], cells[2] = ("code", "x = 1\n", []), ("code", "y = x * 2\n", ["parameters"])  # injected after y = x * 2
    nb.write_text(tagged_notebook(cells))
    assert "done 1" in run().stderr, "stale after moving the parameters tag"
    assert out.read_text() == "2"
    assert "cached 1" in run().stderr
    cells[1], cells[2] = ("code", "x = 1\n", ["parameters"]), ("code", "y = x * 2\n", [])
    nb.write_text(tagged_notebook(cells))
    assert "cached 1" in run().stderr  # (as first run)
    assert out.read_text() == "1000"
    cells[3] = ("code", "assert y < 100\n", [])  # (y is 1000: the assertion fails, and now fails the run)
    nb.write_text(tagged_notebook(cells))
    failed = run(check=False)
    assert failed.returncode != 0, "served after removing raises-exception from a failing cell"


def test_which_cell_tags_key_a_notebook() -> None:
    """Pure logic: a behaviour tag on a markdown cell keys where it stands (papermill injects after it); other tags
    and an untagged notebook key as before (their sources alone)."""
    from nixlib import notebooks
    plain = [("markdown", "# A\n", []), ("code", "x = 1\n", [])]
    assert notebooks.cells(tagged_notebook(plain).encode()) == ["python", "python3", ["x = 1\n"]]
    other = [("markdown", "# A\n", ["hide-input"]), ("code", "x = 1\n", ["hide-output", "remove-cell"])]
    assert notebooks.cells(tagged_notebook(other).encode()) == ["python", "python3", ["x = 1\n"]]
    first = [("markdown", "# A\n", ["parameters"]), ("code", "x = 1\n", [])]
    after = [("markdown", "# A\n", []), ("code", "x = 1\n", []), ("markdown", "# B\n", ["parameters"])]
    assert notebooks.cells(tagged_notebook(first).encode()) != notebooks.cells(tagged_notebook(after).encode())
    junk = json.dumps({"cells": [{"cell_type": "code", "source": "x", "metadata": {"tags": [{}, ["parameters"], 3]}},
                                 {"cell_type": "code", "source": "y", "metadata": {"tags": "parameters"}}]})
    assert notebooks.cells(junk.encode()) == [None, None, "x", "y"]


def test_an_included_makefile_s_recipes_scripts_are_keyed_and_its_targets_are_no_data(tmp_path: Path) -> None:
    """`make -C {HERE}/build` whose Makefile includes Makefile.common, whose recipe runs gen.py and writes
    log/made.txt: gen.py was not keyed (Makefile.common, no code suffix, was keyed by content alone: editing gen.py
    served the old result), and log/made.txt, a rule target, was keyed as data the step reads (so the step ran
    again once it existed)."""
    from tests.helpers import nw
    build = tmp_path / "build"
    build.mkdir()
    (build / "Makefile").write_text("include Makefile.common\n")
    (build / "Makefile.common").write_text("all: log/made.txt\n\tpython3 gen.py > $(OUT)\n"
                                           "log/made.txt:\n\tmkdir -p log && touch log/made.txt\n")
    (build / "gen.py").write_text("print('one')\n")
    (tmp_path / "experiment.py").write_text("from nixlib.dsl import output\n"
                                            f"step = output('make -C {build} OUT=$out/o')\n")
    run = lambda: nw("run", str(tmp_path / "experiment.py"), cwd=tmp_path, check=True).stderr  # noqa: E731
    out = tmp_path / "nix-workflow-output/step/o"
    assert "done 1" in run()
    assert out.read_text() == "one\n" and (build / "log/made.txt").exists()
    assert "cached 1" in run(), "a target the included makefile writes was keyed as data"
    (build / "gen.py").write_text("print('two')\n")
    assert "done 1" in run(), "stale after editing the script an included makefile's recipe runs"
    assert out.read_text() == "two\n"

"""Known gaps closed by gaps20: a Makefile recipe running make in each of a list of sub-directories (`for d in
$(SUBDIRS); do $(MAKE) -C $$d; done`, `$(wildcard */)`, GNU make's manual's `$(SUBDIRS):` / `$(MAKE) -C $@`) did not
follow those sub-makes; a Luigi task's run() opening a path built in a loop over enumerate()/zip() or with tuple
unpacking, in a loop inside a helper it calls, or from a luigi.Config instance stored on self; and a meson-python
editable install. Each was served stale after an edit, and each test failed before its fix (the real `nw run`,
Snakemake CLI and `luigi` command)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_gaps_probe17 import counted_snakemake
from tests.test_gaps_probe18 import _check_nw_run, _write

# ---------------------------------------------------------------------------------------------------------------
# 1. make run in each of a list of sub-directories

SUBDIR_LOOPS = {
    "build/Makefile": "SUBDIRS = one\nSUBDIRS += two\nall:\n"
                      "\tfor d in $(SUBDIRS); do $(MAKE) -C $$d OUT=$(OUT) || exit 1; done\n"
                      "\t@for p in $(wildcard parts/*/); do \\\n\t  $(MAKE) -C \"$$p\" OUT=$(OUT); \\\n\tdone\n"
                      "\t$(MAKE) -C manual OUT=$(OUT)\n",
    "build/one/Makefile": "all:\n\tpython3 gen.py >> $(OUT)\n",
    "build/one/gen.py": "print('one')\n",
    "build/two/Makefile": "all:\n\tbash gen.sh >> $(OUT)\n",
    "build/two/gen.sh": "echo two\n",
    "build/parts/p1/Makefile": "all:\n\tpython3 x.py >> $(OUT)\n",
    "build/parts/p1/x.py": "print('p1')\n",
    # (GNU make's manual's recursive make: a phony target per directory, `$(MAKE) -C $@`)
    "build/manual/Makefile": "DIRS := $(wildcard */)\nall: $(DIRS)\n$(DIRS):\n\t$(MAKE) -C $@ OUT=$(OUT)\n"
                             ".PHONY: all $(DIRS)\n",
    "build/manual/m1/Makefile": "all:\n\tbash m1.sh >> $(OUT)\n",
    "build/manual/m1/m1.sh": "echo m1\n",
    # (no make runs these: editing them re-runs nothing)
    "build/unused/Makefile": "all:\n\techo unused\n",
    "build/unused/gen.py": "print('unused')\n",
}
SUBDIR_EDITS = [("build/one/Makefile", "all:\n\tpython3 gen.py >> $(OUT) && echo ONE >> $(OUT)\n"),
                ("build/one/gen.py", "print('one!')\n"),
                ("build/two/gen.sh", "echo two!\n"),
                ("build/parts/p1/Makefile", "all:\n\tpython3 x.py >> $(OUT) && echo P >> $(OUT)\n"),
                ("build/parts/p1/x.py", "print('p1!')\n"),
                ("build/manual/m1/Makefile", "all:\n\tbash m1.sh >> $(OUT) && echo M >> $(OUT)\n"),
                ("build/manual/m1/m1.sh", "echo m1!\n")]
SUBDIR_UNRELATED = [("build/unused/Makefile", "all:\n\techo unused!\n"), ("build/unused/gen.py", "print(2)\n")]
SUBDIR_RESULT = "one!\nONE\ntwo!\np1!\nP\nm1!\nM\n"


def test_nw_run_keys_the_sub_makes_a_recipe_runs_in_a_loop_over_directories(tmp_path: Path) -> None:
    """`make -C {HERE}/build` whose recipe runs `for d in $(SUBDIRS); do $(MAKE) -C $$d; done` (SUBDIRS set with `=`
    and `+=`), `for p in $(wildcard parts/*/); do $(MAKE) -C "$$p"; done`, and a sub-make written as GNU make's
    manual has it (`DIRS := $(wildcard */)`, `$(DIRS):` / `$(MAKE) -C $@`): those sub-directories' Makefiles and the
    scripts their recipes run were not keyed, so editing any of them served the old result."""
    root = _write(tmp_path / "proj", SUBDIR_LOOPS)
    (root / "experiment.py").write_text(
        "from nixlib.dsl import output\n"
        f"step = output('make -s -C {root}/build OUT=$out/v')\n")
    _check_nw_run(root, SUBDIR_EDITS, SUBDIR_UNRELATED)
    assert (root / "nix-workflow-output/step/v").read_text() == SUBDIR_RESULT


@pytest.mark.long  # (~45 s: in `make test-long`; `make test` keeps the nw run variant)
def test_snakemake_keys_the_sub_makes_a_recipe_runs_in_a_loop_over_directories(tmp_path: Path, log: Path) -> None:
    """The same make run by a Snakemake rule's shell command (`make -s -C build`), through the real Snakemake CLI:
    stale after editing a sub-make's Makefile or script."""
    pytest.importorskip("snakemake")
    where = _write(tmp_path / "wf", {**SUBDIR_LOOPS, "Snakefile": '''
rule make:
    output: "out/make.txt"
    shell: "make -s -C build OUT=$PWD/{output} && echo make >> $NW_TEST_LOG"
'''})
    run = counted_snakemake(where, log, "make")
    assert run() == 1
    assert run() == 0, "an unchanged re-run must be restored from the store"
    for name, text in SUBDIR_EDITS:
        (where / name).write_text(text)
        assert run() == 1, f"stale after editing {name}"
        assert run() == 0, f"not served after editing {name}"
    for name, text in SUBDIR_UNRELATED:
        (where / name).write_text(text)
        assert run() == 0, f"re-ran after editing {name}, which no make reads"
    assert (where / "out/make.txt").read_text() == SUBDIR_RESULT


def test_which_sub_makes_loops_over_directories_run(tmp_path: Path) -> None:
    """Pure logic: the makefiles of_command finds through shell loops (in a recipe, `$${x}` too, over a shell glob
    `mod*/`, and in the command itself), `$(foreach ...)`, `$(SUBDIRS):` / `$(MAKE) -C $@`, and make's functions
    naming directories; a loop over words it cannot know (`$(shell ...)`) follows every makefile below (session 22:
    it followed nothing, and an edit there was served stale), and no other directory's Makefile is found."""
    from nixlib import makefiles
    root = _write(tmp_path / "p", {
        "a/Makefile": "SUBDIRS = x\nSUBDIRS += y\nall:\n\tfor d in $(SUBDIRS); do $(MAKE) -C $$d; done\n",
        "a/x/Makefile": "all:\n\tfor s in deep; do (cd $${s} && $(MAKE)); done\n",
        "a/x/deep/Makefile": "all:\n\ttrue\n",
        "a/y/Makefile": "all:\n\ttrue\n",
        "a/z/Makefile": "all:\n\ttrue\n",
        "b/Makefile": "L = s t\nall:\n\t$(foreach d,$(L),$(MAKE) -C $(d) &&) true\n",
        "b/s/Makefile": "", "b/t/Makefile": "", "b/u/Makefile": "",
        "c/Makefile": "DIRS := $(patsubst %/,%,$(dir $(wildcard */Makefile)))\n$(DIRS):\n\t$(MAKE) -C $@\n",
        "c/m/Makefile": "", "c/n/Makefile": "", "c/o/README": "",
        "d/Makefile": "all:\n\tfor d in $(shell ls); do $(MAKE) -C $$d; done\n",
        "d/k/Makefile": "",
        "e/f/Makefile": "", "e/g/Makefile": "", "e/h/Makefile": "",
        "g/Makefile": "all:\n\tfor d in mod*/; do $(MAKE) -C $$d; done\n",
        "g/mod1/Makefile": "", "g/mod2/Makefile": "", "g/other/Makefile": "",
    })
    rel = lambda command, cds=(): sorted(os.path.relpath(p, root) for p in makefiles.of_command(command, cds))  # noqa: E731
    assert rel(f"make -C {root}/a") == ["a/Makefile", "a/x/Makefile", "a/x/deep/Makefile", "a/y/Makefile"]
    assert rel(f"make -C {root}/b") == ["b/Makefile", "b/s/Makefile", "b/t/Makefile"]
    assert rel(f"make -C {root}/c") == ["c/Makefile", "c/m/Makefile", "c/n/Makefile"]
    assert rel(f"make -C {root}/d") == ["d/Makefile", "d/k/Makefile"]
    assert rel("for d in f g; do make -C $d; done", [str(root / "e")]) == ["e/f/Makefile", "e/g/Makefile"]
    assert rel(f"make -C {root}/g") == ["g/Makefile", "g/mod1/Makefile", "g/mod2/Makefile"]  # (a shell glob)


# ---------------------------------------------------------------------------------------------------------------
# 2. Luigi: paths built in a loop over enumerate()/zip() or with unpacking, in a helper's loop, from a luigi.Config
#    instance stored on self

LOOPS = '''
import os
from pathlib import Path
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Paths(luigi.Config):
    root = luigi.Parameter(default="data")


def read_notes(task):
    """A module-level helper handed the task: a loop over its parameter."""
    text = ""
    for n in task.names:
        with open(f"notes/{n}.md") as f:
            text += f.read()
    return text


def gather(names):
    return "".join(Path("extra", n + ".txt").read_text() for n in names)


class Enum(NixTask):
    names = luigi.ListParameter()

    def output(self):
        return luigi.LocalTarget("out/enum.txt")

    def run(self):
        note("Enum")
        text = ""
        for i, name in enumerate(self.names):
            text += f"{i} " + open(f"data/{name}.csv").read()
        with self.output().open("w") as f:
            f.write(text)


class Zipped(NixTask):
    names = luigi.ListParameter()
    days = luigi.ListParameter()

    def output(self):
        return luigi.LocalTarget("out/zipped.txt")

    def run(self):
        note("Zipped")
        text = ""
        for name, day in zip(self.names, self.days):
            text += open(os.path.join("data", name, day + ".txt")).read()
        with self.output().open("w") as f:
            f.write(text)


class Pairs(NixTask):
    pairs = luigi.ListParameter()

    def output(self):
        return luigi.LocalTarget("out/pairs.txt")

    def run(self):
        note("Pairs")
        text = "".join(open("data/%s_%s.txt" % (a, b)).read() for a, b in self.pairs)
        with self.output().open("w") as f:
            f.write(text)


class Helped(NixTask):
    names = luigi.ListParameter()

    def output(self):
        return luigi.LocalTarget("out/helped.txt")

    def load(self, names):
        out = ""
        for n in names:
            out += open(f"data/{n}.csv").read()
        return out

    def run(self):
        note("Helped")
        with self.output().open("w") as f:
            f.write(self.load(self.names) + read_notes(self) + gather(self.names))


class OnSelf(NixTask):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.paths = Paths()
        self.base = Paths().root

    def output(self):
        return luigi.LocalTarget("out/onself.txt")

    def run(self):
        note("OnSelf")
        with self.output().open("w") as f:
            f.write(open(f"{self.paths.root}/lookup.csv").read() + (Path(self.base) / "base.csv").read_text())


class OnClass(NixTask):
    paths = Paths()

    def output(self):
        return luigi.LocalTarget("out/onclass.txt")

    def run(self):
        note("OnClass")
        with self.output().open("w") as f:
            f.write(open(os.path.join(self.paths.root, "lookup.csv")).read())


class Native(NixTask):
    names = luigi.ListParameter()

    def produce(self, out):
        note("Native")
        for i, name in enumerate(self.names, 1):
            (out / f"{i}.txt").write_text(Path("data", f"{name}.csv").read_text())
'''


@pytest.mark.long  # (~45 s of real `luigi` runs: `make test-long`; test_luigi_probe21.py and 22 run in `make test`)
def test_luigi_keys_paths_of_unpacked_loops_helper_loops_and_config_instances_on_self() -> None:
    """`for i, name in enumerate(self.names): open(f"data/{name}.csv")`, `for name, day in zip(self.names,
    self.days)`, `for a, b in self.pairs`, a loop in a method the task calls with its parameter
    (`self.load(self.names)`) or in a module-level function handed the task (`read_notes(self)`) or the parameter
    (`gather(self.names)`), and a luigi.Config instance stored on self (`self.paths = Paths()` in __init__, `paths =
    Paths()` in the class, `self.base = Paths().root`): none of these files was keyed, so editing one served the old
    result. Each is keyed now, in a produce(out) task too; a file of a pair zip() does not make, and an unrelated
    file, are not; a changed `[Paths] root` keys the files of the new directory."""
    from tests.luigi_run import luigi_cli, runs
    Path("loops.py").write_text(LOOPS)
    files = {"data/a.csv": "a\n", "data/b.csv": "b\n", "data/c.csv": "c\n", "data/a/d1.txt": "a1\n",
             "data/a/d2.txt": "a2\n", "data/b/d2.txt": "b2\n", "data/a_x.txt": "ax\n", "data/b_y.txt": "by\n",
             "notes/a.md": "na\n", "notes/b.md": "nb\n", "extra/a.txt": "ea\n", "extra/b.txt": "eb\n",
             "data/lookup.csv": "look\n", "data/base.csv": "base\n", "data2/lookup.csv": "look2\n",
             "data2/base.csv": "base2\n"}
    _write(Path.cwd(), files)

    def everything() -> None:
        luigi_cli("--module", "loops", "Enum", "--names", '["a", "b"]')
        luigi_cli("--module", "loops", "Zipped", "--names", '["a", "b"]', "--days", '["d1", "d2"]')
        luigi_cli("--module", "loops", "Pairs", "--pairs", '[["a", "x"], ["b", "y"]]')
        luigi_cli("--module", "loops", "Helped", "--names", '["a", "b"]')
        luigi_cli("--module", "loops", "OnSelf")
        luigi_cli("--module", "loops", "OnClass")
        luigi_cli("--module", "loops", "Native", "--names", '["a", "b"]')

    count = {"Enum": 1, "Zipped": 1, "Pairs": 1, "Helped": 1, "OnSelf": 1, "OnClass": 1, "Native": 1}
    everything()
    everything()
    assert runs() == count
    for name, text, again in [("data/c.csv", "c!\n", ()),  # (no task's names hold c)
                              ("data/a/d2.txt", "a2!\n", ()),  # (zip makes (a, d1) and (b, d2) only)
                              ("data/b.csv", "b!\n", ("Enum", "Helped", "Native")),
                              ("data/b/d2.txt", "b2!\n", ("Zipped",)),
                              ("data/b_y.txt", "by!\n", ("Pairs",)),
                              ("notes/b.md", "nb!\n", ("Helped",)),
                              ("extra/a.txt", "ea!\n", ("Helped",)),
                              ("data/lookup.csv", "look!\n", ("OnSelf", "OnClass")),
                              ("data/base.csv", "base!\n", ("OnSelf",))]:
        Path(name).write_text(text)
        everything()
        count.update({task: count[task] + 1 for task in again})
        assert runs() == count, f"after editing {name}"
    assert Path("out/enum.txt").read_text() == "0 a\n1 b!\n"
    assert Path("out/zipped.txt").read_text() == "a1\nb2!\n"
    assert Path("out/pairs.txt").read_text() == "ax\nby!\n"
    assert Path("out/helped.txt").read_text() == "a\nb!\nna\nnb!\nea!\neb\n"
    assert Path("out/onself.txt").read_text() == "look!\nbase!\n"
    Path("luigi.cfg").write_text("[Paths]\nroot = data2\n")
    everything()
    count.update({task: count[task] + 1 for task in ("OnSelf", "OnClass")})
    assert runs() == count
    Path("data2/lookup.csv").write_text("look2!\n")
    everything()
    count.update({task: count[task] + 1 for task in ("OnSelf", "OnClass")})
    assert runs() == count
    assert Path("out/onclass.txt").read_text() == "look2!\n"


# ---------------------------------------------------------------------------------------------------------------
# 3. A meson-python editable install

# What `pip install -e .` with meson-python writes into site-packages (checked against meson-python's source,
# mesonpy/__init__.py's _EditableWheelBuilder and mesonpy/_editable.py): `NAME-editable.pth` holding `import
# _NAME_editable_loader`, and that loader: mesonpy/_editable.py followed by `install(package, top-level modules,
# build directory, build command, verbose)`. The loader imports the sources meson's install plan
# (BUILD/meson-info/intro-install_plan.json, written by `meson setup`) installs into {py_purelib}/{py_platlib}; the
# stand-in below does that (without rebuilding: there is nothing to compile), as meson-python's MesonpyMetaFinder does.
MESON_LOADER = '''import importlib.util, json, os, sys
class MesonpyMetaFinder:
    def __init__(self, package, names, path, cmd, verbose=False):
        self._top_level_modules, self._build_path = names, path
    def _tree(self):
        with open(os.path.join(self._build_path, "meson-info", "intro-install_plan.json")) as f:
            plan = json.load(f)
        tree = {}
        for key, data in plan.items():
            for src, target in data.items():
                parts = target["destination"].split("/")
                if parts[0] not in ("{py_platlib}", "{py_purelib}"):
                    continue
                if os.path.isdir(src):
                    for root, _, files in os.walk(src):
                        for name in files:
                            rel = os.path.relpath(os.path.join(root, name), src).split(os.sep)
                            tree["/".join(parts[1:] + rel)] = os.path.join(root, name)
                else:
                    tree["/".join(parts[1:])] = src
        return tree
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] not in self._top_level_modules:
            return None
        tree, rel = self._tree(), fullname.replace(".", "/")
        if rel + "/__init__.py" in tree:
            src = tree[rel + "/__init__.py"]
            return importlib.util.spec_from_file_location(fullname, src,
                                                          submodule_search_locations=[os.path.dirname(src)])
        if rel + ".py" in tree:
            return importlib.util.spec_from_file_location(fullname, tree[rel + ".py"])
        return None
def install(package, names, path, cmd, verbose):
    sys.meta_path.insert(0, MesonpyMetaFinder(package, names, path, cmd, verbose))
'''


def _meson_editable(root: Path, site: Path) -> None:
    """A meson-python editable install of project `root` (mpkg: py.install_sources of src/mpkg/__init__.py and
    util.py, install_subdir of src/mpkg/sub, an extension module built in build/) into `site`."""
    import json
    build = root / "build/cp311"
    plan = {
        "targets": {f"{build}/mpkg/_ext.so": {"destination": "{py_platlib}/mpkg/_ext.so", "tag": "runtime",
                                              "subproject": None, "install_rpath": None}},
        "python": {f"{root}/src/mpkg/{name}": {"destination": f"{{py_purelib}}/mpkg/{name}", "tag": "python-runtime",
                                               "subproject": None} for name in ("__init__.py", "util.py")},
        "install_subdirs": {f"{root}/src/mpkg/sub": {"destination": "{py_purelib}/mpkg/sub", "tag": "python-runtime",
                                                     "subproject": None, "exclude_dirs": [], "exclude_files": []}},
    }
    _write(root, {"build/cp311/meson-info/intro-install_plan.json": json.dumps(plan, indent=4)})
    _write(site, {"mpkg-editable.pth": "import _mpkg_editable_loader",
                  "_mpkg_editable_loader.py": MESON_LOADER + f"\ninstall('mpkg', {{'mpkg'}}, {str(build)!r}, "
                                                                 "['/usr/bin/ninja'], False)\n"})


def test_nw_run_keys_a_meson_python_editable_install(tmp_path: Path) -> None:
    """`python scripts/fit.py` importing `mpkg.util` and `mpkg.sub.deep`, mpkg installed in development mode by
    meson-python (its loader imports the sources meson's install plan names, from src/): the modules were not keyed
    (the loader was not read), so editing src/mpkg/util.py or src/mpkg/sub/deep.py served the old result; a module
    of src/ the plan does not install is not keyed."""
    import subprocess
    import sys
    root = tmp_path / "proj"
    _write(root, {"src/mpkg/__init__.py": "", "src/mpkg/util.py": "from mpkg.sub import deep\n\ndef scale(x):\n"
                                                                   "    return x * deep.FACTOR\n",
                  "src/mpkg/sub/__init__.py": "", "src/mpkg/sub/deep.py": "FACTOR = 10\n",
                  "src/other/x.py": "X = 1\n",
                  "scripts/fit.py": "import sys\nfrom mpkg.util import scale\n"
                                    "open(sys.argv[1] + '/v', 'w').write(str(scale(3)))\n"})
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    _meson_editable(root, next((root / ".venv/lib").glob("python3*/site-packages")))
    py = root / ".venv/bin/python"
    (root / "experiment.py").write_text("from nixlib.dsl import output\n"
                                        f"step = output('{py} {root}/scripts/fit.py $out')\n")
    out = root / "nix-workflow-output/step/v"
    edits = [("src/mpkg/util.py", "from mpkg.sub import deep\n\ndef scale(x):\n    return x * deep.FACTOR + 1\n"),
             ("src/mpkg/sub/deep.py", "FACTOR = 7\n")]
    _check_nw_run(root, edits, [("src/other/x.py", "X = 2\n")])
    assert out.read_text() == "22"


def test_the_sources_a_meson_python_editable_loader_maps(tmp_path: Path) -> None:
    """Pure logic: the loader's install plan gives the package's parent directory with each installed module's
    source; a loader written before meson-python 0.16 (no package argument) is read too, and a loader whose build
    directory has no plan (not configured yet) adds nothing."""
    from nixlib import pyimports
    root = tmp_path / "proj"
    for name in ("__init__.py", "util.py", "sub/__init__.py", "sub/deep.py"):
        _write(root, {f"src/mpkg/{name}": ""})
    _meson_editable(root, tmp_path / "site")
    [mapped] = pyimports.editable_dirs(str(tmp_path / "site"))
    assert mapped == str(root / "src")
    assert sorted(mapped.packages) == [("mpkg", str(root / "src/mpkg")), ("mpkg.sub", str(root / "src/mpkg/sub")),
                                       ("mpkg.util", str(root / "src/mpkg/util.py"))]
    old = tmp_path / "old"
    _write(old, {"_mpkg_editable_loader.py": f"def install(names, path, cmd, verbose):\n    pass\n\n"
                                            f"install({{'mpkg'}}, {str(root / 'build/cp311')!r}, ['ninja'], False)\n",
                 "mpkg-editable.pth": "import _mpkg_editable_loader"})
    assert pyimports.editable_dirs(str(old)) == (str(root / "src"),)
    (root / "build/cp311/meson-info/intro-install_plan.json").unlink()
    assert pyimports.editable_dirs(str(tmp_path / "site")) == ()


SHAPES = '''
import os
import luigi


class Shapes(luigi.Task):
    pairs = luigi.ListParameter()
    mapping = luigi.DictParameter()
    names = luigi.ListParameter()
    root = "raw"

    def run(self):
        for i, (a, b) in enumerate(self.pairs, 1):
            open(f"pairs/{i}_{a}_{b}.csv")
        for key, value in self.mapping.items():
            open(f"map/{key}={value}.txt")
        names = self.names
        texts = [open(f"alias/{n}.txt").read() for n in sorted(names)]
        for first, *rest in self.pairs:       # (a starred target: its names are not known)
            open(f"star/{first}.txt")
        for n in self.names:
            open(os.path.join(self.root, n + ".csv"))
'''


def test_which_paths_loops_over_enumerate_zip_and_unpacking_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pure logic (a real Luigi task class): the paths keying.template_data formats for nested unpacking over
    `enumerate(..., 1)`, a DictParameter's `.items()`, a local naming a parameter and a string class attribute; a
    starred target names none."""
    import importlib
    import sys

    from luigi_nixworkflow import keying, templates
    Path("shapes.py").write_text(SHAPES)
    monkeypatch.syspath_prepend(str(Path.cwd()))
    sys.modules.pop("shapes", None)
    task = importlib.import_module("shapes").Shapes(pairs=[["a", "x"], ["b", "y"]], mapping={"k": "v", "j": "w"},
                                                     names=["n", "m"])
    found = sorted(p for pieces in keying.param_templates(type(task)) for p in templates.paths(task, pieces))
    assert found == ["alias/m.txt", "alias/n.txt", "map/j=w.txt", "map/k=v.txt", "pairs/1_a_x.csv", "pairs/2_b_y.csv",
                     "raw/m.csv", "raw/n.csv"]

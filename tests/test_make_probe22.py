"""Sub-makes whose directories the Makefile alone does not tell: a variable set on make's command line
(`make -C build SUBDIRS="one two"`, which make hands on to every sub-make), and a loop over `$(shell ...)` or over a
variable nobody sets in a file (`for d in $(DIRS)`, `$(DIRS):` / `$(MAKE) -C $@` with DIRS from the environment).
Their Makefiles and the scripts their recipes run were not keyed, so an edit to one served the old result. A
directory only make's run can tell is now answered by every sub-directory Makefile (over-keying: an unrelated
sub-make's edit re-runs the step, never a stale result). Through the real `nw run`; each test failed before the fix."""

from __future__ import annotations

from pathlib import Path

from nixlib import makefiles
from tests.test_gaps_probe18 import _check_nw_run, _write

ON_COMMAND_LINE = {
    "build/Makefile": "all:\n\tfor d in $(SUBDIRS); do $(MAKE) -C $$d OUT=$(OUT) || exit 1; done\n",
    "build/one/Makefile": "all:\n\tpython3 gen.py >> $(OUT)\n",
    "build/one/gen.py": "print('one')\n",
    "build/two/Makefile": "all:\n\tbash gen.sh >> $(OUT)\n",
    "build/two/gen.sh": "echo two\n",
    "build/unused/Makefile": "all:\n\techo unused\n",
    "build/unused/gen.py": "print('unused')\n",
}


def test_a_variable_set_on_makes_command_line_names_the_sub_makes(tmp_path: Path) -> None:
    """`make -C build SUBDIRS="one two"`: the loop's words come from the command line, so one/ and two/ (and only
    they: unused/ stays unkeyed) are followed."""
    root = _write(tmp_path / "proj", ON_COMMAND_LINE)
    (root / "experiment.py").write_text(
        "from nixlib.dsl import output\n"
        f"step = output('make -s -C {root}/build SUBDIRS=\"one two\" OUT=$out/v')\n")
    _check_nw_run(root, [("build/one/gen.py", "print('one!')\n"), ("build/two/gen.sh", "echo two!\n"),
                         ("build/two/Makefile", "all:\n\tbash gen.sh >> $(OUT); echo T >> $(OUT)\n")],
                  [("build/unused/gen.py", "print(2)\n")])
    assert (root / "nix-workflow-output/step/v").read_text() == "one!\ntwo!\nT\n"


UNKNOWN_WORDS = {
    "build/Makefile": "DIRS := $(shell ls -d */ | grep -v manual)\n"
                      "all:\n\tfor d in $(DIRS); do $(MAKE) -C $$d OUT=$(OUT) || exit 1; done\n"
                      "\t$(MAKE) -C manual OUT=$(OUT)\n",
    "build/one/Makefile": "all:\n\tpython3 gen.py >> $(OUT)\n",
    "build/one/gen.py": "print('one')\n",
    # GNU make's manual's recursive make over a list from the environment (`PARTS=p1 make`)
    "build/manual/Makefile": "all: $(PARTS)\n$(PARTS):\n\t$(MAKE) -C $@ OUT=$(OUT)\n.PHONY: all $(PARTS)\n",
    "build/manual/p1/Makefile": "all:\n\tbash p1.sh >> $(OUT)\n",
    "build/manual/p1/p1.sh": "echo p1\n",
}


def test_sub_makes_over_words_only_make_can_tell_key_every_sub_directory_makefile(tmp_path: Path) -> None:
    """`DIRS := $(shell ls -d */)` and `$(PARTS):` / `$(MAKE) -C $@` with PARTS from the environment: which
    directories run is known only when make runs, so every Makefile below the directory make runs in is keyed, with
    the scripts its recipes run."""
    root = _write(tmp_path / "proj", UNKNOWN_WORDS)
    (root / "experiment.py").write_text(
        "from nixlib.dsl import output\n"
        f"step = output('PARTS=p1 make -s -C {root}/build OUT=$out/v')\n")
    _check_nw_run(root, [("build/one/gen.py", "print('one!')\n"), ("build/manual/p1/p1.sh", "echo p1!\n"),
                         ("build/manual/p1/Makefile", "all:\n\tbash p1.sh >> $(OUT); echo P >> $(OUT)\n")], [])
    assert (root / "nix-workflow-output/step/v").read_text() == "one!\np1!\nP\n"


def test_command_line_variables_reach_sub_makes_and_override_the_makefile(tmp_path: Path) -> None:
    """make hands command-line variables to every sub-make (MAKEFLAGS), over what a makefile assigns."""
    root = _write(tmp_path, {"Makefile": "SUBDIRS = a\nall:\n\t$(MAKE) -C mid\n",
                             "mid/Makefile": "SUBDIRS = a\nall:\n\tfor d in $(SUBDIRS); do $(MAKE) -C $$d; done\n",
                             "mid/a/Makefile": "all:\n", "mid/b/Makefile": "all:\n"})
    found = makefiles.of_command(f"make -C {root} SUBDIRS=b")
    assert str(root / "mid/b/Makefile") in found
    assert str(root / "mid/a/Makefile") not in found

"""Wave 17 probes of `snakemake --executor nixworkflow`: stale results in realistic Snakefiles, with the real
snakemake CLI, make, bash and python3. Each edit must re-run exactly the rules that depend on it (stale otherwise),
and an unchanged re-run is restored from the store. Each test failed before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_probe16c import NOTE, check, edit
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow

RELATIVE_CD = {
    "Snakefile": '''
rule all:
    input: "out/inline.txt", "out/prep.txt", "out/make.txt", "out/words.txt"

rule inline:
    output: "out/inline.txt"
    shell: "cd scripts && python3 -c 'import helpers; helpers.main(\\"../{output}\\")'"

rule prep:
    output: "out/prep.txt"
    shell: "cd tools && python3 prep.py ../{output}"

rule make:
    output: "out/make.txt"
    shell: "cd sub && make OUT=../{output}"

rule words:
    output: "out/words.txt"
    shell: "cd tables && echo words >> $NW_TEST_LOG && sort codes.tsv > ../{output}"
''',
    "scripts/helpers.py": NOTE.format(name="inline") + "def main(o):\n    open(o, 'w').write('v1')\n",
    "tools/prep.py": NOTE.format(name="prep") + "import sys\n"
                     "open(sys.argv[1], 'w').write(open('lookup.tsv').read() + 'v1')\n",
    "tools/lookup.tsv": "l1\n",
    "sub/Makefile": "all:\n\techo make >> $$NW_TEST_LOG; cat in.txt > $(OUT)\n",
    "sub/in.txt": "m1\n",
    "tables/codes.tsv": "b\na\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_shell_rules_changing_into_a_relative_directory_key_what_they_run_and_read_there(tmp_path: Path, log: Path
                                                                                          ) -> None:
    """A `shell:` command starts in the working directory, so `cd tools && python3 prep.py` runs tools/prep.py (with
    what it reads there), `cd sub && make` reads sub/Makefile and `cd scripts && python3 -c 'import helpers'` imports
    scripts/helpers.py: all were left out of the key (a relative first `cd` was not resolved), so editing them served
    the old result."""
    where = write(tmp_path / "wf", RELATIVE_CD)
    check(where, log, {"inline", "prep", "make", "words"}, [
        ("scripts/helpers.py", edit("scripts/helpers.py", "v1", "v2"), {"inline"}),
        ("tools/prep.py", edit("tools/prep.py", "v1", "v2"), {"prep"}),
        ("tools/lookup.tsv", edit("tools/lookup.tsv", "l1", "l2"), {"prep"}),
        ("sub/Makefile", edit("sub/Makefile", "cat in.txt", "cat in.txt in.txt"), {"make"}),
        ("sub/in.txt", edit("sub/in.txt", "m1", "m2"), {"make"}),
        ("tables/codes.tsv", edit("tables/codes.tsv", "a", "c"), {"words"}),
    ])
    assert (where / "out/prep.txt").read_text() == "l2\nv2"
    assert (where / "out/words.txt").read_text() == "b\nc\n"


RUN_BLOCKS = {
    "Snakefile": '''
rule all:
    input: "out/prep.txt", "out/chain.txt", "out/inline.txt", "out/make.txt", "out/cd.txt"

rule prep:
    input: "data/in.csv"
    output: "out/prep.txt"
    run:
        shell("python3 scripts/prep.py {input} {output}")

rule chain:
    output: "out/chain.txt"
    run:
        shell("bash scripts/run.sh {output}")

rule inline:
    output: "out/inline.txt"
    run:
        shell("python3 -c 'import helpers; helpers.main(\\"{output}\\")'")

rule make:
    output: "out/make.txt"
    run:
        shell("make -C sub OUT=$PWD/{output}")

rule cd:
    output: "out/cd.txt"
    run:
        shell("cd tools && python3 fit.py ../{output}")
''',
    "data/in.csv": "x,1\n",
    "scripts/prep.py": NOTE.format(name="prep") + "import sys\n"
                       "names = dict(l.split() for l in open('data/lookup.tsv'))\n"
                       "k, v = open(sys.argv[1]).read().strip().split(',')\n"
                       "open(sys.argv[2], 'w').write(names[k] + v)\n",
    "data/lookup.tsv": "x X1\n",
    "scripts/run.sh": "python3 scripts/post.py > \"$1\"\n",
    "scripts/post.py": NOTE.format(name="chain") + "print(open('data/codes.txt').read().strip())\n",
    "data/codes.txt": "c1\n",
    "helpers.py": NOTE.format(name="inline") + "def main(o):\n    open(o, 'w').write('v1')\n",
    "sub/Makefile": "all:\n\techo make >> $$NW_TEST_LOG; cat in.txt > $(OUT)\n",
    "sub/in.txt": "m1\n",
    "tools/fit.py": NOTE.format(name="cd") + "import sys\nopen(sys.argv[1], 'w').write(open('w.txt').read())\n",
    "tools/w.txt": "w1\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_run_blocks_key_the_makefiles_modules_and_data_of_what_their_shell_calls_run(tmp_path: Path, log: Path
                                                                                     ) -> None:
    """A `run:` block's `shell("python3 scripts/prep.py ...")` keyed prep.py but not the table it opens; `bash
    scripts/run.sh` running post.py, `python3 -c 'import helpers'`, `make -C sub` and `cd tools && python3 fit.py`
    left what they run or read out of the key, as a `shell:` rule's command no longer does: editing it served the
    old result."""
    where = write(tmp_path / "wf", RUN_BLOCKS)
    check(where, log, {"prep", "chain", "inline", "make", "cd"}, [
        ("data/lookup.tsv", edit("data/lookup.tsv", "X1", "X2"), {"prep"}),
        ("data/codes.txt", edit("data/codes.txt", "c1", "c2"), {"chain"}),
        ("helpers.py", edit("helpers.py", "v1", "v2"), {"inline"}),
        ("sub/Makefile", edit("sub/Makefile", "cat in.txt", "cat in.txt in.txt"), {"make"}),
        ("sub/in.txt", edit("sub/in.txt", "m1", "m2"), {"make"}),
        ("tools/fit.py", edit("tools/fit.py", ".read())", ".read() + 'v2')"), {"cd"}),
        ("tools/w.txt", edit("tools/w.txt", "w1", "w2"), {"cd"}),
    ])
    assert (where / "out/prep.txt").read_text() == "X21"
    assert (where / "out/make.txt").read_text() == "m2\nm2\n"


VARIABLES = {
    "Snakefile": '''
rule all:
    input: "out/shell.txt", "out/block.txt", "out/loop.txt"

rule shell:
    output: "out/shell.txt"
    shell: "echo shell >> $NW_TEST_LOG; echo scale=$SCALE build=${{GENOME_BUILD:-hg19}} > {output}"

rule block:
    output: "out/block.txt"
    run:
        shell("echo block >> $NW_TEST_LOG; echo $SCALE > {output}")

rule loop:
    output: "out/loop.txt"
    shell: "echo loop >> $NW_TEST_LOG; for x in a b; do echo $x; done > {output}"
''',
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_host_variable_a_shell_command_expands_is_keyed(tmp_path: Path, log: Path) -> None:
    """Snakemake hands its environment to every job, so `SCALE=3 snakemake` writes `scale=3` where `SCALE=2
    snakemake` wrote `scale=2`; the variable was keyed only when the Snakefile declared it under `envvars:`, so the
    result made with SCALE=2 was served (as nw run and Luigi key such variables, the executor now does)."""
    where = write(tmp_path / "wf", VARIABLES)

    def run(**variables: str) -> set[str]:
        before = executions(log)
        wipe(where, "out")
        ok(snakemake(where, env=variables))
        return set((executions(log) - before).elements())

    assert run(SCALE="2") == {"shell", "block", "loop"}
    assert run(SCALE="2") == set()
    assert run(SCALE="3") == {"shell", "block"}
    assert (where / "out/shell.txt").read_text() == "scale=3 build=hg19\n"
    assert (where / "out/block.txt").read_text() == "3\n"
    assert run(SCALE="3", GENOME_BUILD="hg38") == {"shell"}
    assert (where / "out/shell.txt").read_text() == "scale=3 build=hg38\n"
    assert run(SCALE="2") == set(), "the results of SCALE=2 are still in the store"
    assert (where / "out/shell.txt").read_text() == "scale=2 build=hg19\n"

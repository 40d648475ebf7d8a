"""Wave 17b probes of `snakemake --executor nixworkflow`: an environment variable a job's code reads by name
(`os.environ["SCALE"]`, `os.getenv`, a bash script's `$SCALE`, R's `Sys.getenv`) is keyed by its value, as a
variable a shell command expands is; with the real snakemake CLI, bash and python3. Each test failed before its fix:
the result made under SCALE=2 was served under SCALE=3."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

LOG = "import os\nopen(os.environ['NW_TEST_LOG'], 'a').write('{name}\\n')\n"

CODE_READS = {
    "Snakefile": '''
import os

def scale():
    return os.environ.get("SCALE", "1")

rule all:
    input: expand("out/{name}.txt", name=["script", "module", "bash", "block", "helper", "command", "plain"])

rule script:
    output: "out/script.txt"
    script: "scripts/scale.py"

rule module:
    output: "out/module.txt"
    script: "scripts/factor.py"

rule bash:
    output: "out/bash.txt"
    script: "scripts/scale.sh"

rule block:
    output: "out/block.txt"
    run:
        open(os.environ["NW_TEST_LOG"], "a").write("block\\n")
        open(output[0], "w").write(os.getenv("SCALE", "1") + "\\n")

rule helper:
    output: "out/helper.txt"
    run:
        shell("echo helper >> $NW_TEST_LOG")
        open(output[0], "w").write(scale() + "\\n")

rule command:
    output: "out/command.txt"
    shell: "python3 scripts/prep.py {output}"

rule plain:
    output: "out/plain.txt"
    script: "scripts/plain.py"
''',
    "scripts/scale.py": LOG.format(name="script") +
    "open(snakemake.output[0], 'w').write(os.environ['SCALE'] + '\\n')\n",
    "scripts/factor.py": LOG.format(name="module") + "from common import factor\n"
    "open(snakemake.output[0], 'w').write(factor() + '\\n')\n",
    "scripts/common.py": "import os\n\ndef factor():\n    return os.getenv('FACTOR', '1')\n",
    "scripts/scale.sh": "echo bash >> \"$NW_TEST_LOG\"\n# it's the host's scale\necho \"${SCALE:-1}\" > "
    "\"${snakemake_output[0]}\"\n",
    "scripts/prep.py": LOG.format(name="command") + "import sys\n"
    "open(sys.argv[1], 'w').write(os.environ.get('SCALE', '1') + '\\n')\n",
    "scripts/plain.py": LOG.format(name="plain") + "open(snakemake.output[0], 'w').write('plain\\n')\n",
}
READERS = {"script", "bash", "block", "helper", "command"}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_variable_code_reads_by_name_is_keyed(tmp_path: Path, log: Path) -> None:
    """Snakemake hands its environment to every job: a `script:` reading `os.environ["SCALE"]` (or a module it
    imports reading `os.getenv("FACTOR")`), a bash script's `${SCALE:-1}`, a `run:` block's `os.getenv("SCALE")`
    (or a Snakefile helper's `os.environ.get`) and a project script a `shell:` command runs all write another
    result under SCALE=3 than under SCALE=2. Only variables a shell command expands or `envvars:` declares were
    keyed, so the SCALE=2 results were served under SCALE=3 (stale)."""
    where = write(tmp_path / "wf", CODE_READS)

    def run(**variables: str) -> set[str]:
        before = executions(log)
        wipe(where, "out")
        ok(snakemake(where, env=variables))
        return set((executions(log) - before).elements())

    assert run(SCALE="2", FACTOR="4") == READERS | {"module", "plain"}
    assert run(SCALE="2", FACTOR="4") == set(), "an unchanged re-run must be restored from the store"
    assert run(SCALE="3", FACTOR="4") == READERS
    for name in READERS:
        assert (where / f"out/{name}.txt").read_text() == "3\n", name
    assert run(SCALE="3", FACTOR="5") == {"module"}
    assert (where / "out/module.txt").read_text() == "5\n"
    assert run(SCALE="2", FACTOR="4") == set(), "the SCALE=2 results are still in the store"
    assert (where / "out/script.txt").read_text() == "2\n"
    assert (where / "out/module.txt").read_text() == "4\n"


def test_an_unset_variable_keys_apart_from_a_set_one(tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    """A script's `os.environ.get("SCALE", "1")` writes 1 without SCALE: the result made with SCALE=2 must not be
    served to a run where SCALE is unset."""
    monkeypatch.delenv("SCALE", raising=False)
    where = write(tmp_path / "wf", {
        "Snakefile": 'rule all:\n    output: "out/a.txt"\n    shell: "python3 scripts/prep.py {output}"\n',
        "scripts/prep.py": CODE_READS["scripts/prep.py"],
    })

    def run(**variables: str) -> set[str]:
        before = executions(log)
        wipe(where, "out")
        ok(snakemake(where, env=variables))
        return set((executions(log) - before).elements())

    assert run(SCALE="2") == {"command"}
    assert run() == {"command"}
    assert (where / "out/a.txt").read_text() == "1\n"
    assert run(SCALE="2") == set()
    assert (where / "out/a.txt").read_text() == "2\n"


@pytest.mark.parametrize(("name", "text", "wanted"), [
    ("scale.R", 'x <- as.numeric(Sys.getenv("SCALE", unset = "1"))\nv <- Sys.getenv(c("A_B", \'CD\'))\n',
     {"SCALE", "A_B", "CD"}),
    ("scale.jl", 'x = parse(Int, get(ENV, "SCALE", "1"))\ny = ENV["DEPTH"]\n', {"SCALE", "DEPTH"}),
    ("Makefile", "all:\n\ttool --scale $(SCALE) ${DEPTH} > $@\n", {"SCALE", "DEPTH"}),
])
def test_other_languages_name_the_variables_they_read(tmp_path: Path, name: str, text: str, wanted: set[str]
                                                      ) -> None:
    """R's `Sys.getenv`, Julia's `ENV` and a Makefile's `$(SCALE)` (make reads the environment) name the variables
    a script reads (no R or Julia here to run one with snakemake: the scan itself)."""
    from nixlib.envreads import read_variables

    assert read_variables(str(tmp_path / name), text.encode()) >= wanted

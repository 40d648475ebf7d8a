"""Wave 17 of `nw run`: realistic ML/science project shapes that served a stale result; each a regression test that
failed before its fix, and checks that an unchanged re-run is served."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import nw
from tests.test_nwrun_probe16 import _run, _state

_HEAD = "from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"


def test_a_data_file_a_project_module_the_script_imports_opens_is_keyed(tmp_path: Path) -> None:
    """train.py does `from mypkg.data import load`; mypkg/data.py opens `HERE / "vocab.txt"` (beside the module) and
    `"data/labels.csv"` (relative to the working directory). The module was keyed as code, but editing either data file
    served the old result. A file the module writes into the project (results/stats.json) keys nothing. The same for a
    script that imports a package from a `PYTHONPATH=` directory (src/feats/table.py opens `HERE / "table.tsv"`)."""
    proj = tmp_path / "proj"
    (proj / "mypkg").mkdir(parents=True)
    (proj / "data").mkdir()
    (proj / "src" / "feats").mkdir(parents=True)
    (proj / "scripts").mkdir()
    (proj / "mypkg" / "__init__.py").write_text("")
    (proj / "mypkg" / "vocab.txt").write_text("a b c\n")
    (proj / "data" / "labels.csv").write_text("l1\n")
    (proj / "mypkg" / "data.py").write_text(
        "from pathlib import Path\nHERE = Path(__file__).parent\n"
        "def load():\n"
        "    vocab = open(HERE / 'vocab.txt').read().split()\n"
        "    labels = open('data/labels.csv').read().strip()\n"
        "    Path('results').mkdir(exist_ok=True)\n"
        "    Path('results/stats.json').write_text(str(len(vocab)))\n"
        "    return vocab, labels\n")
    (proj / "train.py").write_text("from mypkg.data import load\nv, l = load()\nprint(len(v), l)\n")
    (proj / "src" / "feats" / "__init__.py").write_text("from feats.table import rows\n")
    (proj / "src" / "feats" / "table.tsv").write_text("t1\n")
    (proj / "src" / "feats" / "table.py").write_text(
        "import os\nHERE = os.path.dirname(__file__)\n"
        "def rows():\n    return open(os.path.join(HERE, 'table.tsv')).read().strip()\n")
    (proj / "scripts" / "fit.py").write_text("import feats\nprint(feats.rows())\n")
    exp = proj / "experiment.py"
    exp.write_text(_HEAD + "model = output(f'cd {HERE} && python3 train.py > $out/o')\n"
                           "fit = output(f'PYTHONPATH={HERE}/src python3 {HERE}/scripts/fit.py > $out/o')\n")
    out = tmp_path / "nix-workflow-output"
    _run(exp, tmp_path)
    assert (out / "model" / "o").read_text() == "3 l1\n"
    assert (out / "fit" / "o").read_text() == "t1\n"
    assert (proj / "results" / "stats.json").exists()
    assert _state(exp, tmp_path) == {"model": "cached", "fit": "cached"}  # (results/stats.json written: not keyed)
    (proj / "mypkg" / "vocab.txt").write_text("a b c d\n")
    assert _state(exp, tmp_path) == {"model": "to run", "fit": "cached"}
    why = nw("why", "-f", str(exp), "model", cwd=tmp_path)
    assert "./mypkg/vocab.txt" in why.stdout, why.stdout + why.stderr
    _run(exp, tmp_path)
    assert (out / "model" / "o").read_text() == "4 l1\n"
    assert _state(exp, tmp_path) == {"model": "cached", "fit": "cached"}
    (proj / "data" / "labels.csv").write_text("l2\n")
    assert _state(exp, tmp_path) == {"model": "to run", "fit": "cached"}
    _run(exp, tmp_path)
    assert (out / "model" / "o").read_text() == "4 l2\n"
    (proj / "src" / "feats" / "table.tsv").write_text("t2\n")
    assert _state(exp, tmp_path) == {"model": "cached", "fit": "to run"}
    _run(exp, tmp_path)
    assert (out / "fit" / "o").read_text() == "t2\n"
    assert _state(exp, tmp_path) == {"model": "cached", "fit": "cached"}


def test_snakemake_a_data_file_a_module_its_shell_or_script_imports_opens_is_keyed(tmp_path: Path) -> None:
    """The same shared walk (nixlib.codefiles.CodeFiles.chain_reads) in the Snakemake executor: `shell: "python3
    scripts/train.py > {output}"` and `script: "scripts/s2.py"`, both importing scripts/mypkg/data.py, which opens
    `HERE / "vocab.txt"`. After editing vocab.txt and deleting the outputs both were restored with the old text."""
    import re

    import pytest
    pytest.importorskip("snakemake")
    from tests.test_snakemake import ok, snakemake
    from tests.test_snakemake_semantics import wipe, write

    snakefile = ('rule all:\n    input: "out/a.txt", "out/b.txt"\n'
                 'rule a:\n    output: "out/a.txt"\n    shell: "python3 scripts/train.py > {output}"\n'
                 'rule b:\n    output: "out/b.txt"\n    script: "scripts/s2.py"\n')
    module = ("from pathlib import Path\nHERE = Path(__file__).parent\n"
              "def load():\n    return open(HERE / 'vocab.txt').read().strip()\n")
    wf = write(tmp_path / "wf", {
        "Snakefile": snakefile, "scripts/mypkg/__init__.py": "", "scripts/mypkg/data.py": module,
        "scripts/mypkg/vocab.txt": "v1\n", "scripts/train.py": "from mypkg.data import load\nprint(load())\n",
        "scripts/s2.py": "import sys\nsys.path.insert(0, 'scripts')\nfrom mypkg.data import load\n"
                         "open(snakemake.output[0], 'w').write(load())\n"})
    outs = ["out/a.txt", "out/b.txt"]
    ok(snakemake(wf))
    assert [(wf / o).read_text() for o in outs] == ["v1\n", "v1"]
    (wf / "scripts/mypkg/vocab.txt").write_text("v2\n")
    wipe(wf, *outs)
    proc = ok(snakemake(wf))
    assert not re.findall(r"restored the outputs of rule (\w+)\b", proc.stdout + proc.stderr), proc.stderr
    assert [(wf / o).read_text() for o in outs] == ["v2\n", "v2"]
    wipe(wf, *outs)
    proc = ok(snakemake(wf))
    assert set(re.findall(r"restored the outputs of rule (\w+)\b", proc.stdout + proc.stderr)) == {"a", "b"}


LUIGI_PIPE = '''
import os, subprocess, sys
import luigi
from luigi_nixworkflow import NixTask
HERE = os.path.dirname(os.path.abspath(__file__))
class A(NixTask):
    def command(self):
        return f"python3 {HERE}/scripts/train.py > $out/o"
class B(NixTask):
    def produce(self, out):
        with open(out / "o", "w") as f:
            subprocess.run([sys.executable, "scripts/train.py"], stdout=f, check=True)
class All(luigi.WrapperTask):
    def requires(self):
        return [A(), B()]
'''


def test_luigi_a_data_file_a_module_its_scripts_import_opens_is_keyed() -> None:
    """The same shared walk in Luigi: a command() and a produce() running scripts/train.py, which imports
    scripts/mypkg/data.py, which opens `HERE / "vocab.txt"`. After editing vocab.txt, both tasks counted as complete
    and their old outputs stayed."""
    from tests.luigi_run import luigi_cli

    Path("scripts/mypkg").mkdir(parents=True)
    Path("scripts/mypkg/__init__.py").write_text("")
    Path("scripts/mypkg/data.py").write_text("from pathlib import Path\nHERE = Path(__file__).parent\n"
                                             "def load():\n    return open(HERE / 'vocab.txt').read().strip()\n")
    Path("scripts/mypkg/vocab.txt").write_text("v1\n")
    Path("scripts/train.py").write_text("from mypkg.data import load\nprint(load())\n")
    Path("pipe.py").write_text(LUIGI_PIPE)
    luigi_cli("--module", "pipe", "All")
    outs = sorted(Path("nix-workflow-output").iterdir())
    assert [(p / "o").read_text() for p in outs] == ["v1\n", "v1\n"]
    Path("scripts/mypkg/vocab.txt").write_text("v2\n")
    luigi_cli("--module", "pipe", "All")
    assert [(p / "o").read_text() for p in sorted(Path("nix-workflow-output").iterdir())] == ["v2\n", "v2\n"]
    assert "3 ran successfully" not in luigi_cli("--module", "pipe", "All")  # (unchanged: complete)


LUIGI_PYTHONPATH_PIPE = '''
import os
import luigi
from luigi_nixworkflow import NixTask
HERE = os.path.dirname(os.path.abspath(__file__))
class C(NixTask):
    def command(self):
        return f"PYTHONPATH={HERE}/src python3 {HERE}/scripts/fit.py > $out/o"
'''


def test_luigi_a_data_file_a_module_found_on_pythonpath_opens_is_keyed() -> None:
    """A command() whose script imports the project package from PYTHONPATH=src (not beside the script): the package is
    keyed as code, and now the vocab file its module opens is keyed too (Luigi's script_data passes the import
    directories on to the shared walk). Before, editing src/mypkg/vocab.txt left the task complete with v1."""
    from tests.luigi_run import luigi_cli

    Path("src/mypkg").mkdir(parents=True)
    Path("src/mypkg/__init__.py").write_text("")
    Path("src/mypkg/data.py").write_text("from pathlib import Path\nHERE = Path(__file__).parent\n"
                                         "def load():\n    return open(HERE / 'vocab.txt').read().strip()\n")
    Path("src/mypkg/vocab.txt").write_text("v1\n")
    Path("scripts").mkdir()
    Path("scripts/fit.py").write_text("from mypkg.data import load\nprint(load())\n")
    Path("pp.py").write_text(LUIGI_PYTHONPATH_PIPE)
    luigi_cli("--module", "pp", "C")
    out = Path("nix-workflow-output/C__99914b932b/o")  # (Luigi's task_id of C())
    assert out.read_text() == "v1\n"
    Path("src/mypkg/vocab.txt").write_text("v2\n")
    luigi_cli("--module", "pp", "C")
    assert out.read_text() == "v2\n"


def test_snakemake_a_data_file_a_module_found_on_pythonpath_opens_is_keyed(tmp_path: Path) -> None:
    """`shell: "PYTHONPATH=src python3 scripts/fit.py > {output}"`, fit.py importing src/mypkg/data.py, which opens
    `HERE / "vocab.txt"`: the package was keyed as code, but the executor did not hand the import directories to the
    shared walk, so after editing src/mypkg/vocab.txt and deleting the output the old text was restored."""
    import re

    import pytest
    pytest.importorskip("snakemake")
    from tests.test_snakemake import ok, snakemake
    from tests.test_snakemake_semantics import wipe, write

    module = ("from pathlib import Path\nHERE = Path(__file__).parent\n"
              "def load():\n    return open(HERE / 'vocab.txt').read().strip()\n")
    wf = write(tmp_path / "wf", {
        "Snakefile": 'rule a:\n    output: "out/a.txt"\n'
                     '    shell: "PYTHONPATH=src python3 scripts/fit.py > {output}"\n',
        "src/mypkg/__init__.py": "", "src/mypkg/data.py": module, "src/mypkg/vocab.txt": "v1\n",
        "scripts/fit.py": "from mypkg.data import load\nprint(load())\n"})
    ok(snakemake(wf))
    assert (wf / "out/a.txt").read_text() == "v1\n"
    (wf / "src/mypkg/vocab.txt").write_text("v2\n")
    wipe(wf, "out/a.txt")
    proc = ok(snakemake(wf))
    assert not re.findall(r"restored the outputs of rule (\w+)\b", proc.stdout + proc.stderr), proc.stderr
    assert (wf / "out/a.txt").read_text() == "v2\n"
    (wf / "src/mypkg/data.py").write_text(module.replace(".strip()", ".strip().upper()"))  # the package's code
    wipe(wf, "out/a.txt")
    proc = ok(snakemake(wf))
    assert not re.findall(r"restored the outputs of rule (\w+)\b", proc.stdout + proc.stderr), proc.stderr
    assert (wf / "out/a.txt").read_text() == "V2\n"

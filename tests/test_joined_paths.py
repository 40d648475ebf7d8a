"""A data file code names by joining constants, `HERE / "data" / "a.txt"` or `os.path.join(HERE, "data", "b.txt")`
(the usual spelling in ML scripts), is keyed by content like one named as "data/a.txt": editing it served the old
result (stale), for a project script `nw run` runs and for a Luigi task's own run(). A path built so that the code
writes (`open(OUT / "results" / "m.csv", "a")`, `torch.save(m, HERE / "ckpt" / "m.pt")`) stays unkeyed, so the step
is still served from the store. Real `nw`, real `luigi`."""

from __future__ import annotations

from pathlib import Path

from nixlib import pycode
from tests.helpers import nw
from tests.luigi_run import luigi_cli

SCRIPT = '''import os, sys
from pathlib import Path
HERE = Path(__file__).resolve().parent
a = (HERE / "data" / "a.txt").read_text()
b = open(os.path.join(os.path.dirname(__file__), "data", "b.txt")).read()
with open(os.path.join(HERE, "results", "runs.csv"), "a") as log:
    log.write("one more run\\n")
(HERE / "results" / "last.txt").write_text(a + b)
open(sys.argv[1] + "/v", "w").write(a + b)
'''


def test_nw_run_keys_data_files_a_script_names_by_joined_constants(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "results").mkdir()
    for name in ("a", "b"):
        (tmp_path / f"data/{name}.txt").write_text(f"{name}1\n")
    (tmp_path / "fit.py").write_text(SCRIPT)
    (tmp_path / "experiment.py").write_text(
        f"from nixlib.dsl import output\ns = output('python3 {tmp_path}/fit.py $out')\n")
    run = lambda: nw("run", str(tmp_path / "experiment.py"), cwd=tmp_path, check=True)  # noqa: E731
    run()
    result = tmp_path / "nix-workflow-output/s/v"
    assert result.read_text() == "a1\nb1\n"
    assert "cached 1" in run().stderr  # what it appends to and writes in the project keys nothing
    (tmp_path / "data/a.txt").write_text("a2\n")
    run()
    assert result.read_text() == "a2\nb1\n"
    (tmp_path / "data/b.txt").write_text("b2\n")
    run()
    assert result.read_text() == "a2\nb2\n"


PIPELINE = '''
import luigi
from pathlib import Path
from luigi_nixworkflow import NixTask

HERE = Path(__file__).resolve().parent


class Scaled(NixTask):
    def output(self):
        return luigi.LocalTarget("out/scaled.txt")

    def run(self):
        factor = (HERE / "data" / "factor.txt").read_text().strip()
        with self.output().open("w") as f:
            f.write(factor + "\\n")
'''


def test_a_luigi_run_reading_a_joined_path_is_keyed_by_its_content() -> None:
    Path("data").mkdir()
    Path("data/factor.txt").write_text("3\n")
    Path("joined.py").write_text(PIPELINE)
    luigi_cli("--module", "joined", "Scaled")
    assert Path("out/scaled.txt").read_text() == "3\n"
    Path("data/factor.txt").write_text("4\n")
    luigi_cli("--module", "joined", "Scaled")
    assert Path("out/scaled.txt").read_text() == "4\n"


def test_joined_constants_and_what_is_written() -> None:
    code = compile('import os\nH = 1\nopen(H / "out" / "x.csv", "w")\nopen(os.path.join(H, "r", "m.csv"), mode="a")\n'
                   'read(os.path.join(H, "data", "t.csv"), sep="a")\nsave(m, H / "ckpt" / "m.pt")\n'
                   'load(H / "in" / "y.csv")\n', "s.py", "exec")
    assert {"out/x.csv", "r/m.csv", "data/t.csv", "ckpt/m.pt", "in/y.csv"} <= set(pycode.strings(code))
    written = pycode.written_strings(code)
    assert {"out/x.csv", "r/m.csv"} <= written
    assert not {"data/t.csv", "in/y.csv"} & written

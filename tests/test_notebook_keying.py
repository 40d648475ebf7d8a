"""A notebook a step executes is keyed by its code cells (and its kernel's language), not its whole JSON: run in
place (`jupyter nbconvert --execute --inplace {HERE}/nb.ipynb`, papermill writing back) it rewrites its outputs and
execution counts, and keyed whole, that step ran again at every `nw run`, never served. Editing a code cell re-runs
it; editing a markdown cell does not. Real `nw`; the executor is a stand-in that runs the code cells and writes
their outputs back as nbconvert does (jupyter is not installed here)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import nw

RUNNER = ("import io, json, sys, contextlib; p = sys.argv[1]; nb = json.load(open(p)); n = 0\n"
          "for c in nb['cells']:\n"
          "    if c['cell_type'] != 'code': continue\n"
          "    n += 1; buf = io.StringIO()\n"
          "    with contextlib.redirect_stdout(buf): exec(''.join(c['source']))\n"
          "    c['execution_count'] = n; c['outputs'] = [{'output_type': 'stream', 'name': 'stdout', 'text': "
          "buf.getvalue()}]\n"
          "    print(buf.getvalue(), end='')\n"
          "json.dump(nb, open(p, 'w'))\n")


def notebook(code: str, note: str) -> str:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": [note]},
             {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": [code]}]
    return json.dumps({"cells": cells, "metadata": {"kernelspec": {"language": "python", "name": "python3"}},
                       "nbformat": 4, "nbformat_minor": 5})


def test_a_notebook_run_in_place_is_served_and_reruns_only_when_its_code_changes(tmp_path: Path) -> None:
    (tmp_path / "run_nb.py").write_text(RUNNER)
    (tmp_path / "nb.ipynb").write_text(notebook("print(6 * 7)\n", "# Notes\n"))
    (tmp_path / "experiment.py").write_text(
        "from nixlib.dsl import output\n"
        f"nb = output('python3 {tmp_path}/run_nb.py {tmp_path}/nb.ipynb > $out/o')\n")
    run = lambda: nw("run", str(tmp_path / "experiment.py"), cwd=tmp_path, check=True).stderr  # noqa: E731
    assert "done 1" in run()
    assert json.loads((tmp_path / "nb.ipynb").read_text())["cells"][1]["execution_count"] == 1  # (written back)
    assert "cached 1" in run()  # (before: done 1, at every run)
    data = json.loads((tmp_path / "nb.ipynb").read_text())
    data["cells"][0]["source"] = ["# Other notes\n"]
    (tmp_path / "nb.ipynb").write_text(json.dumps(data))
    assert "cached 1" in run()  # a markdown edit changes nothing it computes
    data["cells"][1]["source"] = ["print(6 * 8)\n"]
    (tmp_path / "nb.ipynb").write_text(json.dumps(data))
    assert "done 1" in run()
    assert (tmp_path / "nix-workflow-output/nb/o").read_text() == "48\n"

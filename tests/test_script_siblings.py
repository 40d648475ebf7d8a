"""A script the step runs keys the code files beside it that it names, however it names them relative to its own
location: `source "$(dirname "$0")/lib.sh"`, `source "$DIR/lib.sh"`, `"${BASH_SOURCE%/*}/lib.sh"`, Perl's
`"$FindBin::Bin/lib.pl"`, R's `source(file.path(here, "utils.R"))`, Julia's `include("utils.jl")`. Each of these
edits served the old result (stale): only a bare relative name in a shell script was followed. Real `nw`, real bash
and perl; the R and Julia cases through CodeFiles.digest (neither interpreter is installed here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixlib.codefiles import CodeFiles
from nixlib.statmemo import StatMemo
from tests.helpers import nw

RUN = """#!/bin/bash
set -e
source "$(dirname "$0")/lib1.sh"
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$DIR/lib2.sh"
source "${BASH_SOURCE%/*}/lib3.sh"
perl "$DIR/main.pl" > "$1/p"
echo "$(one)$(two)$(three)" > "$1/v"
"""
MAIN_PL = 'use FindBin;\nrequire "$FindBin::Bin/lib.pl";\nprint val(), "\\n";\n'


@pytest.mark.parametrize(("sibling", "edit", "output", "expected"), [
    ("lib1.sh", "one() { echo X; }\n", "v", "X23\n"),
    ("lib2.sh", "two() { echo X; }\n", "v", "1X3\n"),
    ("lib3.sh", "three() { echo X; }\n", "v", "12X\n"),
    ("lib.pl", 'sub val { return "X"; } 1;\n', "p", "X\n"),
])
def test_editing_a_file_a_script_sources_beside_itself_reruns_the_step(tmp_path: Path, sibling: str, edit: str,
                                                                       output: str, expected: str) -> None:
    (tmp_path / "run.sh").write_text(RUN)
    for i, name in enumerate(("one", "two", "three"), 1):
        (tmp_path / f"lib{i}.sh").write_text(f"{name}() {{ echo {i}; }}\n")
    (tmp_path / "main.pl").write_text(MAIN_PL)
    (tmp_path / "lib.pl").write_text('sub val { return "P"; } 1;\n')
    (tmp_path / "experiment.py").write_text(
        f"from nixlib.dsl import output\ns = output('bash {tmp_path}/run.sh $out')\n")
    nw("run", str(tmp_path / "experiment.py"), cwd=tmp_path, check=True)
    result = tmp_path / "nix-workflow-output/s" / output
    assert result.read_text() == {"v": "123\n", "p": "P\n"}[output]
    (tmp_path / sibling).write_text(edit)
    nw("run", str(tmp_path / "experiment.py"), cwd=tmp_path, check=True)
    assert result.read_text() == expected


@pytest.mark.parametrize(("script", "text", "sibling"), [
    ("analysis.R", 'here <- dirname(sys.frame(1)$ofile)\nsource(file.path(here, "utils.R"))\n', "utils.R"),
    ("main.jl", 'include("utils.jl")\nprintln(f(1))\n', "utils.jl"),
    ("tool", '#!/usr/bin/env Rscript\nsource(file.path(Sys.getenv("HERE"), "helpers.R"))\n', "helpers.R"),
])
def test_a_scripts_digest_covers_the_code_files_it_names_beside_it(tmp_path: Path, script: str, text: str,
                                                                    sibling: str) -> None:
    path = tmp_path / script
    path.write_text(text)
    (tmp_path / sibling).write_text("f <- function(x) x\n")
    files = CodeFiles(StatMemo(tmp_path / "memo"))
    before = files.digest(str(path))
    (tmp_path / sibling).write_text("f <- function(x) x + 1\n")
    assert CodeFiles(StatMemo(tmp_path / "memo2")).digest(str(path)) != before


def test_a_data_file_a_shell_script_reads_through_its_own_location_is_keyed(tmp_path: Path) -> None:
    """`cut -f2 "$DIR/data/ref.tsv"`, `wc -l < "$(dirname "$0")/data/ref.tsv"` in run.sh: editing the table served
    the old result."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data/ref.tsv").write_text("a\t1\nb\t2\n")
    (tmp_path / "run.sh").write_text('#!/bin/bash\nDIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"\n'
                                     'cut -f2 "$DIR/data/ref.tsv" > "$1/v"\nwc -l < "$(dirname "$0")/data/ref.tsv" '
                                     '>> "$1/v"\n')
    (tmp_path / "experiment.py").write_text(
        f"from nixlib.dsl import output\ns = output('bash {tmp_path}/run.sh $out')\n")
    nw("run", str(tmp_path / "experiment.py"), cwd=tmp_path, check=True)
    result = tmp_path / "nix-workflow-output/s/v"
    assert result.read_text() == "1\n2\n2\n"
    (tmp_path / "data/ref.tsv").write_text("a\t5\n")
    nw("run", str(tmp_path / "experiment.py"), cwd=tmp_path, check=True)
    assert result.read_text() == "5\n1\n"

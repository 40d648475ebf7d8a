"""`nw hash`, `show`, `lineage`, `log`, `gc` and `verify` through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import nw
from tests.nixcheck import require_nix

EXPERIMENT = """from pathlib import Path
from nixlib import output, static
Path('raw.csv').write_text('a,b\\n1,2\\n')
raw = static(Path.cwd() / 'raw.csv')
clean = output(f'sort {raw} > $out/clean.csv; echo cleaned')
model = output(f'wc -l {clean}/clean.csv > $out/model.txt')
"""


@pytest.fixture
def ran(tmp_path: Path) -> Path:
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT)
    nw("run", str(exp), check=True)
    return exp


@pytest.mark.nix
def test_hash_prints_what_nix_hash_prints(tmp_path: Path) -> None:
    nix_hash = require_nix("nix-hash")
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_text("x" * 9)
    os.symlink("nowhere", d / "dangling")
    expected = subprocess.run([nix_hash, "--type", "sha256", "--base32", str(d)], capture_output=True, text=True,
                              check=True).stdout
    assert nw("hash", str(d), check=True).stdout == expected


def test_hash_of_missing_path_is_an_error() -> None:
    proc = nw("hash", "nope")
    assert proc.returncode == 1 and "cannot hash nope: no such file" in proc.stderr


def test_show_names_command_env_inputs_and_timing(ran: Path) -> None:
    out = nw("show", "model", check=True).stdout
    clean_obj = os.readlink("nix-workflow-output/clean")
    assert "step:         model" in out
    assert f"wc -l {clean_obj}/clean.csv" in out
    assert "env:          host" in out
    assert f"clean: {clean_obj}" in out
    doc = json.loads(nw("show", "model", "--json", check=True).stdout)
    assert doc["outputs"]["out"] == os.readlink("nix-workflow-output/model").rsplit("/", 1)[1]
    assert doc["end"] >= doc["start"]


def test_show_accepts_an_output_path_and_a_file_inside_it(ran: Path) -> None:
    by_path = json.loads(nw("show", "nix-workflow-output/clean/clean.csv", "--json", check=True).stdout)
    assert by_path["name"] == "clean"


def test_lineage_reaches_static_inputs(ran: Path) -> None:
    out = nw("lineage", "model", check=True).stdout.splitlines()
    assert out[0].startswith("model ")
    assert any("clean" in line and "└──" in line for line in out)
    assert any("(static)" in line for line in out)
    tree = json.loads(nw("lineage", "model", "--json", check=True).stdout)
    assert tree["inputs"][0]["name"] == "clean"
    assert tree["inputs"][0]["inputs"][0]["kind"] == "static"


def test_log_prints_the_step_output(ran: Path) -> None:
    assert "cleaned" in nw("log", "clean", check=True).stdout


def test_unknown_name_is_a_clear_error(ran: Path) -> None:
    proc = nw("show", "ghost")
    assert proc.returncode == 1 and "no step or path named 'ghost'" in proc.stderr


def test_gc_keeps_roots_and_their_lineage_and_removes_the_rest(ran: Path, tmp_path: Path, store_root: Path) -> None:
    other = tmp_path / "other.py"
    other.write_text("from nixlib import output\nunrooted = output('echo u > $out/u')\n")
    nw("run", str(other), "--out-link", str(tmp_path / "elsewhere"), check=True)
    os.unlink(tmp_path / "elsewhere" / "unrooted")
    unrooted_count = len(os.listdir(store_root / "store"))
    recent = nw("gc", check=True)  # by default, just-stored results of a possibly running pipeline stay
    assert len(os.listdir(store_root / "store")) == unrooted_count, recent.stdout
    dry = nw("gc", "--dry-run", "--min-age", "0", check=True)
    assert len(os.listdir(store_root / "store")) == unrooted_count  # dry run removes nothing
    assert "would remove" in dry.stdout
    nw("gc", "--min-age", "0", check=True)
    kept = set(os.listdir(store_root / "store"))
    assert len(kept) == unrooted_count - 1
    for name in ("clean", "model"):
        assert os.readlink(f"nix-workflow-output/{name}").rsplit("/", 1)[1] in kept
    assert "(static)" in nw("lineage", "model", check=True).stdout  # lineage survives collection
    assert len(os.listdir(store_root / "realisations")) == 2


def test_verify_finds_and_quarantines_a_corrupt_object(ran: Path, store_root: Path) -> None:
    assert nw("verify").returncode == 0
    obj = Path(os.readlink("nix-workflow-output/model"))
    obj.chmod(0o755)
    (obj / "model.txt").chmod(0o644)
    (obj / "model.txt").write_text("tampered\n")
    proc = nw("verify")
    assert proc.returncode == 1 and f"corrupt: {obj.name}" in proc.stdout
    assert not obj.exists()
    again = nw("run", str(ran), check=True)  # the corrupt result is rebuilt, not served
    assert "done 1" in again.stderr
    assert "tampered" not in Path("nix-workflow-output/model/model.txt").read_text()

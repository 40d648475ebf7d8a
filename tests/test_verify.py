"""`nw verify` checks everything (objects, records, indexes, caches, permissions); `--repair` fixes it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nixlib.statmemo import StatMemo
from tests.helpers import nw

EXPERIMENT = """from pathlib import Path
from nixlib import output, static
raw = static(Path.cwd() / 'raw.txt')
a = output(f'cat {raw} > $out/a.txt')
"""


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    Path("raw.txt").write_text("raw\n")
    path = tmp_path / "exp.py"
    path.write_text(EXPERIMENT)
    nw("run", str(path), check=True)
    assert nw("verify").returncode == 0
    return path


def _repair_then_clean(expected: str) -> str:
    found = nw("verify")
    assert found.returncode == 1 and expected in found.stdout, found.stdout + found.stderr
    fixed = nw("verify", "--repair")
    assert fixed.returncode == 0 and "repaired: " in fixed.stdout, fixed.stdout + fixed.stderr
    clean = nw("verify")
    assert clean.returncode == 0, clean.stdout
    return fixed.stdout


def test_a_lying_memo_entry_is_found_and_dropped(exp: Path, store_root: Path) -> None:
    memo = StatMemo.for_store(store_root)
    wrong = os.readlink("nix-workflow-output/a").rsplit("/", 1)[1]  # some other valid hash
    memo.remember(Path("raw.txt").absolute(), wrong, sealed=True)  # what a lying entry looks like
    entry = memo.memo_file(Path("raw.txt").absolute())
    assert json.loads(entry.read_text())["nar_hash"] == wrong
    out = _repair_then_clean(f"invalid memo entry {entry}: claims")
    assert f"removed memo entry {entry}" in out


def test_a_missing_origins_entry_is_rebuilt_from_the_records(exp: Path, store_root: Path) -> None:
    obj = os.readlink("nix-workflow-output/a").rsplit("/", 1)[1]
    (entry,) = (store_root / "origins" / obj).iterdir()
    entry.unlink()
    out = _repair_then_clean(f"missing index entry {entry}")
    assert f"rebuilt index entry {entry}" in out and entry.exists()


def test_a_writable_object_is_made_read_only(exp: Path) -> None:
    obj = Path(os.readlink("nix-workflow-output/a"))
    (obj / "a.txt").chmod(0o644)
    _repair_then_clean(f"writable object {obj / 'a.txt'}: mode 0o644")
    assert (obj / "a.txt").stat().st_mode & 0o777 == 0o444


def test_a_stale_recipe_index_entry_and_a_bad_cache_entry_are_removed(exp: Path, store_root: Path) -> None:
    (rec,) = (store_root / "realisations").iterdir()
    rec.unlink()
    (idx,) = (store_root / "recipes").iterdir()
    evals = StatMemo.for_store(store_root).directory.parent / "nix-eval"
    evals.mkdir(exist_ok=True)
    (evals / "bogus.json").write_text("[]")
    out = _repair_then_clean(f"stale index entry {idx}")
    assert f"removed stale index entry {idx}" in out and f"removed evaluation-cache entry {evals / 'bogus.json'}" in out


def test_a_sealed_record_naming_a_missing_object_is_dangling(exp: Path, store_root: Path) -> None:
    obj = Path(os.readlink("nix-workflow-output/a"))
    obj.chmod(0o755)
    (obj / "a.txt").chmod(0o644)
    (obj / "a.txt").unlink()
    obj.rmdir()
    (rec,) = (store_root / "realisations").iterdir()
    _repair_then_clean(f"dangling record {rec}")
    assert not rec.exists()

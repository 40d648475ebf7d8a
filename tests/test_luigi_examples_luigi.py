"""Luigi's own example pipelines (top_artists, wordcount, foo, dynamic_requirements), written afresh in
examples/luigi/ and migrated by changing base classes only, run by the real `luigi` command: with
--local-scheduler, and through a real luigid with 3 workers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from luigi.task_register import Register

import luigi_nixworkflow
from tests.helpers import REPO
from tests.test_luigi_processes import LUIGI, STRICT, Processes, luigid, procs  # noqa: F401 - fixtures

EXAMPLES = REPO / "examples" / "luigi"
INTERVAL = "2024-01-01-2024-01-03"
RUNS = {
    "top_artists": ["Top10Artists", "--date-interval", INTERVAL],
    "wordcount": ["WordCount", "--date-interval", INTERVAL],
    "foo": ["examples.Foo"],
    "dynamic_requirements": ["Dynamic", "--seed", "3"],
}


@pytest.fixture
def env() -> dict[str, str]:
    for day, text in (("01", "a b a\n"), ("02", "b c\n")):
        Path("data/text").mkdir(parents=True, exist_ok=True)
        Path(f"data/text/2024-01-{day}.txt").write_text(text)
    return dict(os.environ, PYTHONPATH=f"{EXAMPLES}{os.pathsep}{REPO}")


def luigi(module: str, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([LUIGI, "--module", module, *RUNS[module], *STRICT, *args], env=env, text=True,
                          capture_output=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "This progress looks :)" in out, out[-3000:]
    return out


def ran(out: str) -> str:
    """The execution summary's "ran successfully" part (empty when nothing ran)."""
    summary = out.split("===== Luigi Execution Summary =====")[1]
    return summary.split("ran successfully:")[1].split("\n*")[0] if "ran successfully:" in summary else ""


def data() -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(Path("data").rglob("*")) if p.is_file()}


def test_examples_with_the_local_scheduler(env: dict[str, str], store_root: Path) -> None:
    for module in RUNS:
        first = luigi(module, env, "--local-scheduler", "--workers", "3")
        assert ran(first), first
    top = Path(f"data/top_artists_{INTERVAL}.tsv").read_text().splitlines()
    assert len(top) == 10 and all(line.startswith("2024-01-01\t2024-01-03\t") for line in top)
    assert Path(f"data/text-count/{INTERVAL}").read_text() == "a\t2\nb\t2\nc\t1\n"
    assert sorted(os.listdir("data/bar")) == [str(i) for i in range(10)]
    assert Path("data/dynamic/dynamic_3.txt").read_text().startswith("Tada! ")
    produced = data()

    for p in Path("data").rglob("*"):  # every result deleted (the external texts kept): all served
        if p.is_file() and "text/" not in str(p):
            p.unlink()
    for module in RUNS:
        again = luigi(module, env, "--local-scheduler")
        assert not ran(again), again
    assert data() == produced  # random streams included: the stored results, byte for byte

    Path("data/text/2024-01-02.txt").write_text("b c c\n")  # an input edited: only its counts run again
    out = luigi("wordcount", env, "--local-scheduler")
    assert "WordCount" in ran(out) and Path(f"data/text-count/{INTERVAL}").read_text() == "a\t2\nb\t2\nc\t2\n"


def test_examples_through_luigid_with_three_workers(env: dict[str, str], luigid: int,  # noqa: F811
                                                    store_root: Path) -> None:
    central = ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid), "--workers", "3"]
    for module in RUNS:
        assert ran(luigi(module, env, *central))
    assert len(os.listdir("data/bar")) == 10 and Path(f"data/top_artists_{INTERVAL}.tsv").exists()
    for module in RUNS:
        assert not ran(luigi(module, env, *central))


@pytest.fixture
def importable() -> Iterator[None]:
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield
    finally:
        sys.path.remove(str(EXAMPLES))


def test_streams_hdfs_subclass_imports_and_runs_as_plain_luigi(importable: None, store_root: Path) -> None:
    import datetime

    import top_artists

    day = datetime.date(2024, 1, 1)
    assert top_artists.Streams(day).nix_managed()
    assert not top_artists.StreamsHdfs(day).nix_managed()  # an HdfsTarget: plain Luigi, warned

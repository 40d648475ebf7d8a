"""Copying a Slurm job's output into the step's log (nixlib.slurm._Follower): a job that prints a lot between two
polls must not cost that much memory in `nw run`, and no byte or line may be lost or split at a chunk boundary.
Pure logic: the file is an ordinary file, as the job's output file is on the shared filesystem."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

from nixlib.runner import Build
from nixlib.slurm import _Follower


def follower(tmp_path: Path, echoed: list[str]) -> tuple[_Follower, io.BytesIO, Path]:
    out = tmp_path / "job.out"
    build = Build(name="s", out=tmp_path / "o", state=None, tmp=tmp_path, log=tmp_path / "log",
                  store_root=tmp_path, echo=lambda name, line: echoed.append(line))
    log = io.BytesIO()
    return _Follower(out, build, log), log, out


class Sink(io.RawIOBase):
    """A log that counts what it is given and keeps none of it (so the copy's own memory is what is measured)."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.size += len(data)
        return len(data)


def test_a_large_output_is_copied_in_bounded_memory_and_whole(tmp_path: Path) -> None:
    lines = []
    out = tmp_path / "job.out"
    build = Build(name="s", out=tmp_path / "o", state=None, tmp=tmp_path, log=tmp_path / "log", store_root=tmp_path,
                  echo=lambda name, line: lines.append(len(line)) if line != "x" * 99 else None)
    sink = Sink()
    f = _Follower(out, build, sink)  # type: ignore[arg-type]
    out.write_bytes((b"x" * 99 + b"\n") * 400_000)  # 40 MB printed between two polls
    tracemalloc.start()
    try:
        f.copy()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.size == 40_000_000 and lines == []  # every byte logged, every line echoed whole
    assert peak < 16 * (1 << 20)  # reading it at once held 40 MB and its 400,000 split lines


def test_lines_across_polls_and_chunks_are_echoed_whole(tmp_path: Path, monkeypatch) -> None:
    import nixlib.slurm

    monkeypatch.setattr(nixlib.slurm, "CHUNK", 12)
    echoed: list[str] = []
    f, log, out = follower(tmp_path, echoed)
    out.write_bytes(b"first line\nsecond ")
    f.copy()
    with open(out, "ab") as w:
        w.write(b"half\nthird one\nno newline")
    f.copy()
    f.close()
    assert echoed == ["first line", "second half", "third one", "no newline"]
    assert log.getvalue() == b"first line\nsecond half\nthird one\nno newline"

"""Luigi adapter overhead against plain Luigi, measured in one run (ratios are what matter).

    .venv/bin/python bench/bench_luigi.py [--tasks 1000] [--cold-tasks 300] [--runs 7]

1. All cached: a 1,000-task graph (100 `Data` tasks, 900 `Work` tasks each requiring one of
   them, under a WrapperTask), once as plain tasks with LocalTargets and once as NixTasks.
   Each run is a fresh interpreter timing `luigi.build([All()], local_scheduler=True)` only
   (imports and class definitions excluded), so no in-process memo helps.
2. Cold: N independent tasks each writing 1 kB (distinct contents), from an empty store / output directory:
   plain `run()` vs NixTask `produce(out)` (the adapter and engine overhead), and a plain task
   running a shell command with subprocess vs a NixTask `command()` running the same one.
   Each run starts in an empty directory of its own, and all of them are removed at the end: on ext4
   without a journal (this VM's root filesystem) the inode allocator skips every inode deleted in the last
   60 s (up to 360 s while its block is dirty; the kernel's recently_deleted()), so deleting the previous
   run's thousands of files right before a run charges each file created after it, and the side that
   creates more files pays more. `--delete-between` measures that way too.

Plain and NixTask runs alternate, so a busy machine slows both alike. Medians are reported.
Results and the exact command go to bench/README-luigi.md by hand; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import luigi

REPO = Path(__file__).resolve().parent.parent
KB = "x" * 1024
CPU: dict[str, list[float]] = {}  # CPU seconds (user + system) of this process per timed run, by kind: on a shared
# machine, wall time includes waiting for a core; CPU time does not


# ---- the graphs (imported by the child processes) ------------------------------------------


def define(kind: str, n: int) -> type[luigi.Task]:
    """The wrapper task of graph `kind` with `n` tasks."""
    from luigi_nixworkflow import NixTask

    if kind == "plain-cached":
        class Data(luigi.Task):
            i = luigi.IntParameter()

            def output(self):
                return luigi.LocalTarget(f"out/data{self.i}")

            def run(self):
                with self.output().open("w") as f:
                    f.write(KB)

        class Work(luigi.Task):
            i = luigi.IntParameter()

            def requires(self):
                return Data(self.i % 100)

            def output(self):
                return luigi.LocalTarget(f"out/work{self.i}")

            def run(self):
                with self.input().open() as src, self.output().open("w") as dst:
                    dst.write(src.read())

    elif kind == "nix-cached":
        class Data(NixTask):
            i = luigi.IntParameter()

            def produce(self, out):
                (out / "data").write_text(KB + str(self.i))

        class Work(NixTask):
            i = luigi.IntParameter()

            def requires(self):
                return Data(self.i % 100)

            def command(self):
                return f"cat {self.input()}/data > {self.output()}/work"

    elif kind == "plain-python":
        class Work(luigi.Task):
            i = luigi.IntParameter()

            def output(self):
                return luigi.LocalTarget(f"out/work{self.i}")

            def run(self):
                with self.output().open("w") as f:
                    f.write(f"{self.i:<1024}")

    elif kind == "nix-python":
        class Work(NixTask):
            i = luigi.IntParameter()

            def produce(self, out):
                (out / "v").write_text(f"{self.i:<1024}")

    elif kind == "plain-shell":
        class Work(luigi.Task):
            i = luigi.IntParameter()

            def output(self):
                return luigi.LocalTarget(f"out/work{self.i}")

            def run(self):
                with self.output().temporary_path() as path:
                    subprocess.run(["/bin/sh", "-c", f"head -c 1020 /dev/zero > {path}; echo {self.i} >> {path}"],
                                   check=True)

    elif kind == "nix-shell":
        class Work(NixTask):
            i = luigi.IntParameter()

            def command(self):
                return f"head -c 1020 /dev/zero > {self.output()}/v; echo {self.i} >> {self.output()}/v"

    first = 100 if kind.endswith("cached") else 0

    class All(luigi.WrapperTask):
        def requires(self):
            return [Work(i) for i in range(n - first)]

    return All


def child(kind: str, n: int) -> None:
    """Run one timed luigi.build in this (fresh) interpreter and print its duration."""
    import logging

    logging.disable(logging.WARNING)
    if kind == "nix-breakdown":
        breakdown(n)
        return
    if kind == "nix-cold-breakdown":
        cold_breakdown(n)
        return
    wrapper = define(kind, n)
    start, cpu = time.perf_counter(), time.process_time()
    ok = luigi.build([wrapper()], local_scheduler=True, log_level="ERROR")
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    if not ok:
        raise SystemExit(f"{kind}: luigi.build failed")
    print(json.dumps({"seconds": took, "cpu": cpu}))


def breakdown(n: int) -> None:
    """Where a cached complete() goes, outside Luigi: computing recipes vs asking the store."""
    from luigi.task import flatten

    from luigi_nixworkflow import settings

    tasks = flatten(define("nix-cached", n)().requires())
    start = time.perf_counter()
    recipes = [t.nix_recipe() for t in tasks]
    keyed = time.perf_counter()
    engine = settings.engine()
    assert all(engine.lookup(r) is not None for r in recipes)
    looked = time.perf_counter()
    print(json.dumps({"recipes": keyed - start, "lookups": looked - keyed}))


def cold_breakdown(n: int) -> None:
    """Where a cold NixTask's time goes: wall time inside the adapter's and the engine's main calls
    (instrumented by wrapping them; nested calls are also counted in their callers)."""
    import collections

    from luigi_nixworkflow import present, steps, task
    from nixlib import engine, store

    spent: collections.Counter[str] = collections.Counter()

    def wrap(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed_call(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                spent[label] += time.perf_counter() - start

        setattr(owner, name, timed_call)

    for owner, name, label in (
        (task.NixTask, "complete", "adapter: complete() (recipe + lookup)"),
        (task.NixTask, "run", "adapter: run() in all"),
        (steps, "in_step", "adapter: produce() with env and log"),
        (present, "link_output", "adapter: output link"),
        (engine.Engine, "realise", "engine: realise() in all"),
        (store.Store, "ingest", "engine: ingest (seal, hash, rename)"),
        (store.Store, "record_realisation", "engine: realisation + recipe records"),
    ):
        wrap(owner, name, label)
    wrapper = define("nix-python", n)
    start = time.perf_counter()
    luigi.build([wrapper()], local_scheduler=True, log_level="ERROR")
    spent["luigi.build in all"] = time.perf_counter() - start
    print(json.dumps({k: v / n * 1000 for k, v in spent.items()}))


def fs_costs(directory: Path, runs: int = 100) -> tuple[float, float]:
    """Median ms of (write 1 kB + fsync) and of (mkdir + rmdir) on the benchmark's filesystem."""
    fsync, dirs = [], []
    for i in range(runs):
        path = directory / f"f{i}"
        start = time.perf_counter()
        with open(path, "w") as f:
            f.write(KB)
            f.flush()
            os.fsync(f.fileno())
        fsync.append(time.perf_counter() - start)
        start = time.perf_counter()
        (directory / f"d{i}").mkdir()
        (directory / f"d{i}").rmdir()
        dirs.append(time.perf_counter() - start)
    return statistics.median(fsync) * 1000, statistics.median(dirs) * 1000


# ---- the driver ----------------------------------------------------------------------------


WORK = ""  # every run's directory is made in here; removed at the end (main)
DELETE_BETWEEN = False  # --delete-between: remove the previous run's files right before a fresh run (see cold_part)


def timed(kind: str, n: int, work: Path, fresh: bool) -> Any:
    if fresh and DELETE_BETWEEN:
        for sub in ("out", "store"):
            if (work / sub).exists():
                subprocess.run(["chmod", "-R", "u+w", str(work / sub)], check=True)
                shutil.rmtree(work / sub)
    elif fresh:  # an empty directory of its own; every run's files are removed together at the end
        work = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    env = dict(os.environ, NIX_WORKFLOW_STORE=str(work / "store"), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, __file__, "--child", kind, str(n)], cwd=work, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "seconds" in result:
        CPU.setdefault(kind, []).append(result["cpu"])
        return result["seconds"]
    return result


def compare(pair: tuple[str, ...], n: int, runs: int, fresh: bool, prepare: str | None = None) -> dict[str, list[Any]]:
    """Time each kind `runs` times, alternating; all-cached runs (not `fresh`) are built once first."""
    times: dict[str, list[Any]] = {k: [] for k in pair}
    # (every run's files stay until the whole benchmark ends: main() removes WORK)
    tmp = tempfile.mkdtemp(prefix="compare-", dir=WORK)
    dirs = {k: Path(tmp) / k for k in pair}
    for d in dirs.values():
        d.mkdir()
    if not fresh:  # build once, then time the all-cached runs
        for k in pair:  # (into the empty directory the timed runs then use)
            timed(prepare or k, n, dirs[k], fresh=False)
        time.sleep(2.5)  # past the stat memo's racy window: objects this new are re-hashed, not trusted
    for _ in range(runs):
        for k in pair:
            times[k].append(timed(k, n, dirs[k], fresh))
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=1000, help="tasks in the cached graph")
    p.add_argument("--cold-tasks", type=int, default=300, help="tasks in each cold run")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--only", choices=("cached", "cold"), help="run one of the two parts")
    p.add_argument("--delete-between", action="store_true",
                   help="cold runs: delete the previous run's store and outputs right before each run (the old "
                        "method; on ext4 without a journal every inode created then pays for the deleted ones)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    global DELETE_BETWEEN, WORK
    DELETE_BETWEEN = args.delete_between
    WORK = tempfile.mkdtemp(prefix="nw-bench-luigi-")
    try:
        if args.only != "cold":
            cached_part(args)
        if args.only != "cached":
            cold_part(args)
    finally:  # removed only now: deleting one part's files before the next part would slow it (see the docstring)
        subprocess.run(["chmod", "-R", "u+w", WORK], check=False)  # store objects are read-only
        shutil.rmtree(WORK, ignore_errors=True)


def spread(times: list[float]) -> str:
    return f"(min {min(times):.3f}, max {max(times):.3f})"


def cached_part(args: argparse.Namespace) -> None:
    med = statistics.median
    cached = compare(("plain-cached", "nix-cached"), args.tasks, args.runs, fresh=False)
    plain, nix = med(cached["plain-cached"]), med(cached["nix-cached"])
    print(f"## all cached, {args.tasks} tasks, luigi.build, median of {args.runs}")
    print(f"plain Luigi (LocalTarget):  {plain:.3f} s  {spread(cached['plain-cached'])}")
    print(f"NixTask:                    {nix:.3f} s  {spread(cached['nix-cached'])}   ratio {nix / plain:.2f}x  "
          "(goal <= 1.5x)")
    cpu_plain, cpu_nix = med(CPU["plain-cached"]), med(CPU["nix-cached"])
    print(f"CPU time (user + system):   plain {cpu_plain:.3f} s, NixTask {cpu_nix:.3f} s   ratio "
          f"{cpu_nix / cpu_plain:.2f}x")
    parts = compare(("nix-breakdown",), args.tasks, args.runs, fresh=False, prepare="nix-cached")["nix-breakdown"]
    print(f"  of which, outside Luigi: computing {args.tasks} recipes {med(p['recipes'] for p in parts):.3f} s, "
          f"store lookups {med(p['lookups'] for p in parts):.3f} s")


def cold_part(args: argparse.Namespace) -> None:
    med = statistics.median
    n = args.cold_tasks
    cold_runs = max(3, args.runs // 2)
    print(f"\n## cold, {n} independent tasks writing 1 kB, median of {cold_runs}, "
          + ("the previous run's files deleted right before each run" if DELETE_BETWEEN else
             "each run in an empty directory of its own (all removed at the end)"))
    for a, b in (("plain-python", "nix-python"), ("plain-shell", "nix-shell")):
        t = compare((a, b), n, cold_runs, fresh=True)
        pa, pb = med(t[a]) / n * 1000, med(t[b]) / n * 1000
        ca, cb = med(CPU[a][-cold_runs:]) / n * 1000, med(CPU[b][-cold_runs:]) / n * 1000
        print(f"{a:13s} {pa:6.2f} ms/task   {b:11s} {pb:6.2f} ms/task   overhead {pb - pa:+.2f} ms/task "
              f"(goal <= +5 ms; CPU time {cb - ca:+.2f} ms/task)")
    parts = compare(("nix-cold-breakdown",), n, 1, fresh=True)["nix-cold-breakdown"][0]
    print("where a cold NixTask (produce) goes, ms/task, one instrumented run:")
    for label, ms in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {ms:6.2f}  {label}")
    fsync, dirs = fs_costs(Path(tempfile.mkdtemp(prefix="fs-", dir=WORK)))  # (after the runs: it removes directories)
    print(f"this filesystem: write 1 kB + fsync {fsync:.2f} ms, mkdir + rmdir {dirs:.2f} ms (the store fsyncs an "
          "output file only where no boot id can be read; a process reuses its build directory from one task to "
          "the next)")


if __name__ == "__main__":
    main()

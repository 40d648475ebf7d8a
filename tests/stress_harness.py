"""A randomized stress harness for one store: `nw run`, Luigi and Snakemake pipelines running at once, `nw gc
--min-age 0` looping beside them, random SIGKILL/SIGTERM; then the store's invariants (tests/test_stress_probe8.py).

Every step command appends `S <label> <token> <time>` when it starts and `E <label> <token> <time>` when it
ends to a side file outside the store, so executions are counted without trusting the store. A label names
one resolved recipe (the same label is always the same command on the same input bytes).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import REPO

__all__ = ["REPO"]

RECORD_SECONDS = 5.0  # an execution is recorded within this long after its command ends (generous: a loaded machine)
STATS: Counter[str] = Counter()  # how each re-execution was explained (printed by the test)
NW = [sys.executable, "-m", "nixlib.cli"]
LUIGI = str(Path(sys.executable).with_name("luigi"))


def rec(label: str, body: str, log: Path) -> str:
    """A shell step that logs its start and end (with a token telling executions apart) around `body`."""
    return (f't=$RANDOM$RANDOM; echo "S {label} $t $(date +%s.%N)" >> {log}; {body}; '
            f'echo "E {label} $t $(date +%s.%N)" >> {log}')


def experiment(which: int, log: Path, flag: Path) -> str:
    """Two overlapping experiment.py graphs: shared src and slow steps, an early cutoff (cut_a and cut_b differ
    but produce the same bytes, so `after` is one resolved recipe), a step that fails while `flag` exists."""
    cut = "cut_a" if which == 1 else "cut_b"
    lines = [
        "from nixlib import output",
        f"src = output({rec('n-src', 'seq 1 30 > $out/v', log)!r}, name='src')",
        f"slow = output({rec('n-slow', 'sleep 0.4; tac {src}/v > $out/v', log)!r}.format(src=src), name='slow')",
        f"{cut} = output({rec('n-' + cut, f'echo {cut} > /dev/null; echo same > $out/v', log)!r}, name='{cut}')",
        f"after = output({rec('n-after', 'cat {c}/v {s}/v > $out/v', log)!r}.format(c={cut}, s=slow), name='after')",
    ]
    if which == 1:
        flaky = f'if [ -e {flag} ]; then exit 3; fi; echo ok > $out/v'
        lines += [
            f"flaky = output({rec('n-flaky', flaky, log)!r}, name='flaky')",
            f"top1 = output({rec('n-top1', 'cat {a}/v {f}/v > $out/v', log)!r}.format(a=after, f=flaky), "
            "name='top1')",
        ]
    else:
        many = 'mkdir -p $out/d/e; for i in $(seq 300); do echo $i > $out/d/e/$i; done; cp {s}/v $out/v'
        lines += [
            f"mid2 = output({rec('n-mid2', 'sleep 0.2; head -5 {s}/v > $out/v', log)!r}.format(s=src), name='mid2')",
            f"many = output({rec('n-many', many, log)!r}.format(s=src), name='many')",
            f"top2 = output({rec('n-top2', 'cat {a}/v {m}/v {n}/d/e/7 > $out/v', log)!r}.format(a=after, m=mid2, "
            "n=many), name='top2')",
        ]
    return "\n".join(lines) + "\n"


def luigi_module(log: Path, flag: Path) -> str:
    def r(label: str, body: str) -> str:
        return rec(label, body, log).replace("{", "{{").replace("}", "}}").replace("[[", "{").replace("]]", "}")

    return f'''
import luigi
from luigi_nixworkflow import NixTask


class Src(NixTask):
    def command(self):
        return f"""{r("l-src", "seq 1 30 > [[self.output()]]/v")}"""


class Part(NixTask):
    i = luigi.IntParameter()

    def requires(self):
        return Src()

    def command(self):
        return f"""{r("l-part[[self.i]]", "sleep 0.3; sed -n [[self.i + 1]]p [[self.input()]]/v > "
                      "[[self.output()]]/v")}"""


class Flaky(NixTask):
    def command(self):
        return f"""{r("l-flaky", f"if [ -e {flag} ]; then exit 3; fi; echo ok > [[self.output()]]/v")}"""


class Top(NixTask):
    def requires(self):
        return [Part(i=i) for i in range(4)] + [Flaky()]

    def command(self):
        files = " ".join(f"{{t}}/v" for t in self.input())
        return f"""{r("l-top", "cat [[files]] > [[self.output()]]/v")}"""
'''


def snakefile(log: Path, flag: Path) -> str:
    def r(label: str, body: str) -> str:
        return rec(label, body, log).replace("[[", "{").replace("]]", "}")

    return f'''
rule all:
    input: "top.txt"

rule src:
    output: "src.txt"
    shell: """{r("s-src", "seq 1 30 > [[output]]")}"""

rule part:
    input: "src.txt"
    output: "part{{i}}.txt"
    shell: """{r("s-part[[wildcards.i]]", "sleep 0.3; sed -n [[wildcards.i]]p [[input]] > [[output]]")}"""

rule flaky:
    output: "flaky.txt"
    shell: """{r("s-flaky", f"if [ -e {flag} ]; then exit 3; fi; echo ok > [[output]]")}"""

rule top:
    input: expand("part{{i}}.txt", i=[1, 2, 3]), "flaky.txt"
    output: "top.txt"
    shell: """{r("s-top", "cat [[input]] > [[output]]")}"""
'''


@dataclass
class Pipeline:
    """One way to run a pipeline: its argv and cwd maker, and which labels it may execute."""

    name: str
    argv: list[str]
    labels: set[str]
    cwd: Callable[[], Path]
    fresh_cwd: bool = False


@dataclass
class Launch:
    pipeline: str
    proc: subprocess.Popen[str]
    cwd: Path
    started: float
    killed: tuple[float, str] | None = None
    fault: str = ""
    output: str = ""
    ended: float | None = None

    def window(self) -> tuple[float, float] | None:
        """When a kill may have hit it: the signal's time, or (a fault point fired) its whole life."""
        if self.killed:
            return self.killed[0], self.killed[0]
        if self.fault and self.proc.returncode == -9:
            return self.started, self.ended or time.time()
        return None


@dataclass
class Scenario:
    """The files of one stress run: a store, pipelines, the side log of executions, the failing steps' flag."""

    base: Path
    store: Path
    log: Path
    flag: Path
    env: dict[str, str]
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    counter: int = 0

    @classmethod
    def make(cls, base: Path, store: Path, only: set[str] | None = None) -> Scenario:
        """The files of a scenario under `base`, and its pipelines (`only` these, if given)."""
        base.mkdir(parents=True, exist_ok=True)
        mods = base / "mods"
        mods.mkdir(exist_ok=True)
        log, flag = base / "executions.log", base / "FAIL"
        env = dict(os.environ, NIX_WORKFLOW_STORE=str(store), PYTHONPATH=f"{mods}{os.pathsep}{REPO}")
        s = cls(base, store, log, flag, env)
        for which in (1, 2):
            (base / f"exp{which}.py").write_text(experiment(which, log, flag))
        (mods / "stressluigi.py").write_text(luigi_module(log, flag))
        (base / "Snakefile").write_text(snakefile(log, flag))
        s._pipelines()
        s.pipelines = {n: p for n, p in s.pipelines.items() if only is None or n in only}
        return s

    def _dir(self, name: str) -> Callable[[], Path]:
        def make() -> Path:
            d = self.base / name
            d.mkdir(exist_ok=True)
            return d
        return make

    def _fresh(self) -> Path:
        self.counter += 1
        d = self.base / f"sm-{self.counter}"
        d.mkdir()
        shutil.copy(self.base / "Snakefile", d / "Snakefile")
        return d

    def _pipelines(self) -> None:
        nw = [sys.executable, "-m", "nixlib.cli", "run", "-k", "-j", "2"]
        luigi = [LUIGI, "--module", "stressluigi", "Top", "--local-scheduler", "--no-lock", "--retcode-task-failed",
                 "3", "--retcode-scheduling-error", "4", "--retcode-unhandled-exception", "5"]
        n1 = {"n-src", "n-slow", "n-cut_a", "n-after", "n-flaky", "n-top1"}
        n2 = {"n-src", "n-slow", "n-cut_b", "n-after", "n-mid2", "n-many", "n-top2"}
        lu = {"l-src", "l-flaky", "l-top"} | {f"l-part{i}" for i in range(4)}
        snakemake = [sys.executable, "-m", "snakemake", "-c", "2", "--nocolor", "--executor", "nixworkflow"]
        sm = {"s-src", "s-flaky", "s-top"} | {f"s-part{i}" for i in (1, 2, 3)}
        for p in (
            Pipeline("nw1", [*nw, str(self.base / "exp1.py")], n1, self._dir("nw1")),
            Pipeline("nw1b", [*nw, "-j", "1", str(self.base / "exp1.py")], n1, self._dir("nw1b")),
            Pipeline("nw2", [*nw, str(self.base / "exp2.py")], n2, self._dir("nw2")),
            Pipeline("luigi1", luigi, lu, self._dir("lu1")),
            Pipeline("luigi3", [*luigi, "--workers", "3"], lu, self._dir("lu3")),
            Pipeline("snakemake", [*snakemake], sm, self._fresh, fresh_cwd=True),
            Pipeline("snakemake-hardlink", [*snakemake, "--nixworkflow-link-mode", "hardlink"], sm, self._fresh,
                     fresh_cwd=True),
        ):
            self.pipelines[p.name] = p

    def start(self, name: str, cwd: Path | None = None, env: dict[str, str] | None = None, fault: str = "") -> Launch:
        """Start a pipeline; `fault` arms a nixlib.faults point (a SIGKILL at that phase of storing a step)."""
        p = self.pipelines[name]
        d = cwd or p.cwd()
        full = dict(env or self.env, NIX_WORKFLOW_FAULT=fault) if fault else (env or self.env)
        proc = subprocess.Popen(p.argv, cwd=d, env=full, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        return Launch(name, proc, d, time.time(), fault=fault)

    def run(self, name: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
        launch = self.start(name, cwd, env)
        out, _ = launch.proc.communicate(timeout=300)
        return launch.proc.returncode, out


@dataclass
class GcEvent:
    start: float
    end: float
    removed_names: set[str]  # step names of removed realisations ("?" for one not seen before)
    rc: int | None
    killed: bool
    output: str


class GcLoop:
    """`nw gc --min-age 0` again and again; each run is preceded by a scan mapping realisation keys to step names
    (so the analysis knows which recipes a collection removed). Some runs are killed (`kill_rate`)."""

    def __init__(self, scenario: Scenario, rng: random.Random, kill_rate: float) -> None:
        self.s = scenario
        self.rng = rng
        self.kill_rate = kill_rate
        self.events: list[GcEvent] = []
        self.names: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)

    def scan(self) -> None:
        d = self.s.store / "realisations"
        for name in os.listdir(d) if d.exists() else []:
            key = name.split(".")[0]
            if key in self.names:
                continue
            try:
                self.names[key] = json.loads((d / name).read_text()).get("name", "?")
            except (OSError, ValueError):
                pass

    def _loop(self) -> None:
        argv = [sys.executable, "-m", "nixlib.cli", "gc", "--min-age", "0"]
        while not self._stop.is_set():
            self.scan()
            start = time.time()
            proc = subprocess.Popen(argv, env=self.s.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            killed = False
            if self.rng.random() < self.kill_rate:
                time.sleep(self.rng.uniform(0, 0.6))
                if proc.poll() is None:
                    proc.send_signal(self.rng.choice([signal.SIGKILL, signal.SIGTERM]))
                    killed = True
            out, err = proc.communicate(timeout=120)
            removed = set()
            for line in out.splitlines():
                if line.startswith("removed ") and "/realisations/" in line:
                    key = line.rsplit("/", 1)[1].split(".")[0]
                    removed.add(self.names.get(key, "?"))
            self.events.append(GcEvent(start, time.time(), removed, proc.returncode, killed, out + err))
            time.sleep(self.rng.uniform(0, 0.05))


@dataclass
class Execution:
    label: str
    start: float
    end: float | None


def executions(log: Path) -> list[Execution]:
    starts: dict[str, Execution] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        parts = line.split()
        if len(parts) != 4:
            continue
        kind, label, token, when = parts
        if kind == "S":
            starts[token + label] = Execution(label, float(when), None)
        elif token + label in starts:
            starts[token + label].end = float(when)
    return sorted(starts.values(), key=lambda e: e.start)


def label_matches(label: str, step_name: str) -> bool:
    """Whether a realisation's step name may be the recipe of `label` (names differ per front door)."""
    if step_name == "?":
        return True
    core = label.split("-", 1)[1]
    flat = step_name.lower().replace("_", "")
    return core.replace("_", "") in flat or flat in core.replace("_", "")


def unexplained_reruns(execs: list[Execution], gcs: list[GcEvent], launches: list[Launch],
                       pipelines: dict[str, Pipeline], skip: set[str]) -> list[str]:
    """Executions of a recipe after another one of it completed, with no collection that removed it in between
    and no kill of a process that may have run it (before it was recorded)."""
    problems = []
    by_label: dict[str, list[Execution]] = {}
    for e in execs:
        by_label.setdefault(e.label, []).append(e)
    for label, es in by_label.items():
        if label in skip:
            continue
        for i, later in enumerate(es):
            for earlier in es[:i]:
                if earlier.end is None:
                    continue
                if later.start < earlier.end:
                    explained = any((w := la.window()) and label in pipelines[la.pipeline].labels
                                    and w[0] <= earlier.end and w[1] >= earlier.start for la in launches)
                    if not explained:
                        problems.append(f"{label}: overlapping executions at {earlier.start:.3f} and {later.start:.3f}")
                    continue
                gc = any(g.end >= earlier.end and g.start <= later.start
                         and any(label_matches(label, n) for n in g.removed_names) for g in gcs)
                kill = any((w := la.window()) and label in pipelines[la.pipeline].labels
                           and earlier.start <= w[1] and w[0] <= min(later.start, earlier.end + RECORD_SECONDS)
                           for la in launches)
                STATS["gc" if gc else "kill" if kill else "unexplained"] += 1
                if not (gc or kill):
                    problems.append(f"{label}: executed again at {later.start:.3f} after completing at "
                                    f"{earlier.end:.3f}, with no gc removing it and no kill in between")
    return problems

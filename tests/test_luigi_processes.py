"""The Luigi adapter across processes: the `luigi` command line, a real `luigid`, and several workers
sharing one store. Every command appends a line to $NW_TEST_LOG, so "ran exactly once" is counted
from side effects. Every process started here is stopped by a finalizer, whatever the outcome."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO

LUIGI = str(Path(sys.executable).with_name("luigi"))
LUIGID = str(Path(sys.executable).with_name("luigid"))
STRICT = ["--retcode-task-failed", "3", "--retcode-scheduling-error", "4", "--retcode-unhandled-exception", "5",
          "--retcode-missing-data", "6"]

GRAPH = '''
import os
import luigi
from luigi_nixworkflow import NixTask


def note(what):
    with open(os.environ["NW_TEST_LOG"], "a") as log:
        log.write(what + "\\n")


class Source(luigi.Task):
    """Plain, with a LocalTarget: its content becomes a hashed input of the NixTasks."""

    def output(self):
        return luigi.LocalTarget("source.txt")

    def run(self):
        note("source")
        with self.output().open("w") as f:
            f.write("3\\n")


class Square(NixTask):
    i = luigi.IntParameter()

    def requires(self):
        return Source()

    def command(self):
        return (f'echo square-{self.i} >> "$NW_TEST_LOG"; sleep 0.3; '
                f'echo $(( $(cat {self.input()}) * {self.i} )) > {self.output()}/v')


class Total(NixTask):
    def requires(self):
        return [Square(i) for i in range(4)]

    def command(self):
        return 'echo total >> "$NW_TEST_LOG"; cat ' + " ".join(f"{t}/v" for t in self.input()) + \\
            f" > {self.output()}/all"


class Publish(luigi.Task):
    """Plain, reading the NixTask's store path."""

    def requires(self):
        return Total()

    def output(self):
        return luigi.LocalTarget("published.txt")

    def run(self):
        note("publish")
        with open(os.path.join(self.input().path, "all")) as src, self.output().open("w") as dst:
            dst.write(src.read())
'''

NIX_LINES = {"square-0": 1, "square-1": 1, "square-2": 1, "square-3": 1, "total": 1}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Environment of worker processes: the graph module and the checkout importable, a side-effect log."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "nwgraph.py").write_text(GRAPH)
    log = tmp_path / "side-effects.log"
    log.touch()
    return dict(os.environ, PYTHONPATH=f"{modules}{os.pathsep}{REPO}", NW_TEST_LOG=str(log))


def lines(env: dict[str, str]) -> Counter[str]:
    return Counter(Path(env["NW_TEST_LOG"]).read_text().split())


class Processes:
    """Processes started by a test, each in its own session; all stopped at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], env: dict[str, str], **kwargs: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, env=env, text=True, start_new_session=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def procs() -> Iterator[Processes]:
    p = Processes()
    try:
        yield p
    finally:
        p.stop_all()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def luigid(procs: Processes, tmp_path: Path, env: dict[str, str]) -> int:
    """A real central scheduler on 127.0.0.1, with its own state and logs; returns its port."""
    port = free_port()
    state = tmp_path / "luigid"
    state.mkdir()
    proc = procs.start([LUIGID, "--address", "127.0.0.1", "--port", str(port), "--state-path",
                        str(state / "state.pickle"), "--logdir", str(state)], env, cwd=state)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"luigid exited: {proc.communicate()[0]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return port
        time.sleep(0.05)
    raise AssertionError("luigid did not start listening within 20 s")


def run_workers(procs: Processes, env: dict[str, str], count: int, *args: str, task: str = "Publish") -> list[str]:
    """Start `count` `luigi` processes on the same graph at once; each must exit 0. Returns their output."""
    argv = [LUIGI, "--module", "nwgraph", task, "--workers", "2", "--no-lock", *STRICT, *args]
    started = [procs.start(argv, env, cwd=Path.cwd()) for _ in range(count)]
    outputs = []
    for proc in started:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        # ":)" or, for a worker whose tasks another worker ran, ":|" ("not granted run permission")
        assert "This progress looks :)" in out or "This progress looks :|" in out, out
        assert "failed" not in out.split("This progress looks")[0].split("Execution Summary")[-1], out
        outputs.append(out)
    return outputs


def test_three_workers_on_a_central_scheduler_run_each_task_once(procs: Processes, env: dict[str, str],
                                                                  luigid: int) -> None:
    central = ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid), "--worker-keep-alive",
               "--worker-wait-interval", "0.1"]
    run_workers(procs, env, 3, *central)
    assert lines(env) == {**NIX_LINES, "source": 1, "publish": 1}
    assert Path("published.txt").read_text() == "0\n3\n6\n9\n"
    outs = run_workers(procs, env, 3, *central, task="Total")  # all cached: the store answers, nothing runs
    assert lines(env) == {**NIX_LINES, "source": 1, "publish": 1}
    assert all("1 complete ones were encountered" in out for out in outs)


def test_three_local_schedulers_share_the_store_lock(procs: Processes, env: dict[str, str]) -> None:
    """No luigid: each process schedules every task itself; the store's per-key lock runs each recipe once."""
    Path("source.txt").write_text("3\n")
    run_workers(procs, env, 3, "--local-scheduler")
    counted = lines(env)
    assert {k: v for k, v in counted.items() if k in NIX_LINES} == NIX_LINES
    assert Path("published.txt").read_text() == "0\n3\n6\n9\n"
    # no build directory outlives its process (a worker process Luigi forks per task ends with os._exit)
    assert os.listdir(Path(env["NIX_WORKFLOW_STORE"]) / "tmp") == []


CODE = '''
import os
import luigi
from luigi_nixworkflow import NixTask


class Work(NixTask):
    def produce(self, out):
        with open(os.environ["NW_TEST_LOG"], "a") as log:
            log.write("{tag}\\n")  # {comment}
        (out / "v").write_text("{value}")


class Next(NixTask):
    def requires(self):
        return Work()

    def command(self):
        return f'echo next >> "$NW_TEST_LOG"; cat {{self.input()}}/v > {{self.output()}}/w'
'''


def test_code_change_reruns_the_task_and_equal_output_cuts_off(procs: Processes, env: dict[str, str],
                                                                tmp_path: Path) -> None:
    module = tmp_path / "modules" / "nwcode.py"

    def run(tag: str, value: str, comment: str = "") -> None:
        module.write_text(CODE.format(tag=tag, value=value, comment=comment))
        proc = procs.start([LUIGI, "--module", "nwcode", "Next", "--local-scheduler", *STRICT], env)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out

    run("v1", "1")
    run("v1", "1", comment="a comment changes no code")
    assert lines(env) == {"v1": 1, "next": 1}
    run("v2", "2")  # a new body and a new value: both run
    assert lines(env) == {"v1": 1, "v2": 1, "next": 2}
    run("v3", "2")  # a new body with the same value: Work runs, Next is served (early cutoff)
    assert lines(env) == {"v1": 1, "v2": 1, "v3": 1, "next": 2}


def test_luigi_cfg_section_names_store_config_and_default_env(procs: Processes, env: dict[str, str],
                                                              tmp_path: Path) -> None:
    """`[nixworkflow]` in luigi.cfg (each key overridden by its NIX_WORKFLOW_* variable): store, config, env."""
    other, config, cfg = tmp_path / "other-store", tmp_path / "envs.yaml", tmp_path / "luigi.cfg"
    config.write_text("envs:\n  legacy: host\n")
    cfg.write_text(f"[nixworkflow]\nstore = {other}\nconfig = {config}\nenv = legacy\n")
    with_cfg = dict(env, LUIGI_CONFIG_PATH=str(cfg))

    def luigi(**variables: str) -> tuple[int, str]:
        proc = procs.start([LUIGI, "--module", "nwgraph", "Total", "--local-scheduler", *STRICT],
                           dict(with_cfg, **variables))
        out, _ = proc.communicate(timeout=60)
        return proc.returncode, out

    code, out = luigi(NIX_WORKFLOW_ENV="gpu")  # the environment overrides luigi.cfg
    assert code == 4 and "no env named 'gpu' (envs: legacy)" in out, out  # 4: --retcode-scheduling-error
    assert not (other / "realisations").exists() or not any((other / "realisations").iterdir())
    code, out = luigi()
    assert code == 0 and "This progress looks :)" in out, out
    assert len(list((other / "realisations").iterdir())) == 5
    assert f"env 'legacy' of {config}" in out  # the host warning names where the env came from
    assert not (Path(env["NIX_WORKFLOW_STORE"]) / "realisations").exists()

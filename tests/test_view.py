"""`nw view`: the real server (started by the real CLI) over real runs of a small pipeline.

What is proved here: the JSON API draws a run from the store's records and the run journal (nodes,
edges, identical outputs, commands, logs, file previews); a run's steps go from running to done while
it runs and a killed run reads as interrupted; nothing outside the store is ever served (`..`, encoded
`%2e%2e`, absolute paths, symlinks inside objects, planted log symlinks, bogus names, a foreign Host);
a corrupt object is not served; and serving changes nothing in the store. The journal itself is written in
batches (at most once per flusher pass, never once per step), a rewrite never lets a reader replay an older
state, a forked worker keeps one descriptor for its events, and an unwritable journal never fails a run.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixlib.view import history
from tests.helpers import REPO, nw, tree_snapshot

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005ff02fea7d6a3a50000000049454e44ae426082")).decode()

PIPELINE = f"""\
from nixlib import output

raw = output('printf "a,b\\\\n1,2\\\\n3,4\\\\n" > $out/data.csv; echo \\'{{"k": [1, 2]}}\\' > $out/meta.json; '
             'mkdir $out/sub; echo hello > $out/sub/note.txt; echo {PNG} | base64 -d > $out/plot.png; '
             'ln -s /etc/passwd $out/passwd.png; ln -s / $out/root; echo made raw', name="raw")
left = output(f'cut -d, -f1 {{raw}}/data.csv > $out/col.txt', name="left")
right = output(f'cut -d, -f1 < {{raw}}/data.csv > $out/col.txt', name="right")
report = output(f'cat {{left}}/col.txt {{right}}/col.txt > $out/report.txt; echo reported', name="report")
"""


def write_pipeline(cwd: Path, extra: str = "") -> Path:
    exp = cwd / "experiment.py"
    exp.write_text(PIPELINE + extra)
    return exp


@contextlib.contextmanager
def view_server(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`nw view --no-browser --port 0` as a real process; yields the URL it prints on its first line."""
    env = dict(env or os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "view", "--no-browser", "--port", "0", *args],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("nw view: serving http://127.0.0.1:"), (line, proc.poll())
        yield line.split()[3]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers) of a GET; urllib does not normalise `..` or `%2e%2e` in the path."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def api(url: str) -> object:
    status, body, _ = get(url)
    assert status == 200, (url, status, body)
    return json.loads(body)


def graph(base: str, run_id: str) -> dict[str, dict]:
    return {n["name"]: n for n in api(f"{base}api/run?id={run_id}")["nodes"]}


@pytest.fixture
def ran(isolated: Path) -> Path:
    """The working directory after a real `nw run` of the 4-step pipeline."""
    cwd = Path.cwd()
    write_pipeline(cwd)
    nw("run", "experiment.py", cwd=cwd, check=True)
    return cwd


def test_graph_of_a_finished_run(ran: Path) -> None:
    with view_server(ran) as base:
        status, page, headers = get(base)
        assert status == 200 and b"<title>nw view</title>" in page and "script-src" not in headers.get("X", "")
        assert get(base + "vendor/cytoscape.min.js")[0] == 200 and get(base + "vendor/LICENSE")[0] == 200
        runs = api(base + "api/runs")
        assert [r["id"] for r in runs][-1] == "store"
        assert runs[0]["steps"] == 4 and runs[0]["counts"] == {"done": 4} and runs[0]["live"] is False
        nodes = graph(base, runs[0]["id"])
    assert set(nodes) == {"raw", "left", "right", "report"}
    assert {n: sorted(v["upstream"]) for n, v in nodes.items()} == {
        "raw": [], "left": ["raw"], "right": ["raw"], "report": ["left", "right"]}
    assert all(v["status"] == "done" for v in nodes.values())
    assert nodes["left"]["outputs"] == nodes["right"]["outputs"] != nodes["raw"]["outputs"]  # identical bytes


def test_rerun_is_cached_and_store_view_covers_every_record(ran: Path) -> None:
    nw("run", "experiment.py", cwd=ran, check=True)
    with view_server(ran) as base:
        runs = api(base + "api/runs")
        assert len(runs) == 3 and runs[0]["counts"] == {"cached": 4} and runs[1]["counts"] == {"done": 4}
        store = graph(base, "store")  # from realisation records alone, as for Snakemake and Luigi runs
    assert set(store) == {"raw", "left", "right", "report"}
    by_key = {v["resolved_key"]: k for k, v in store.items()}
    assert sorted(by_key[k] for k in store["report"]["upstream"]) == ["left", "right"]


def test_step_details_log_and_file_previews(ran: Path) -> None:
    with view_server(ran) as base:
        nodes = graph(base, api(base + "api/runs")[0]["id"])
        left = api(f"{base}api/step?key={nodes['left']['resolved_key']}")
        assert left["command"].startswith("cut -d, -f1 ") and "/store/" in left["command"]
        assert left["canonical"].startswith("cut -d, -f1 @{step:")
        assert [i["step"] for i in left["inputs"]] == ["raw"] and left["user"] and left["host"]
        log = api(f"{base}api/log?key={nodes['report']['resolved_key']}")
        assert "reported" in log["text"]
        obj = nodes["raw"]["outputs"]["out"]
        listing = api(f"{base}api/files?object={obj}&path=")
        assert [(e["name"], e["type"]) for e in listing["entries"]] == [
            ("sub", "dir"), ("data.csv", "file"), ("meta.json", "file"), ("passwd.png", "symlink"),
            ("plot.png", "file"), ("root", "symlink")]
        table = api(f"{base}api/files?object={obj}&path=data.csv")
        assert table["preview"] == "table" and table["rows"] == [["a", "b"], ["1", "2"], ["3", "4"]]
        meta = api(f"{base}api/files?object={obj}&path=meta.json")
        assert meta["preview"] == "json" and json.loads(meta["text"]) == {"k": [1, 2]}
        note = api(f"{base}api/files?object={obj}&path=sub/note.txt")
        assert note == {"type": "file", "size": 6, "preview": "text", "text": "hello\n", "more": False}
        status, png, headers = get(f"{base}api/raw?object={obj}&path=plot.png")
        assert status == 200 and png == base64.b64decode(PNG) and headers["Content-Type"] == "image/png"
        assert "sandbox" in headers["Content-Security-Policy"]


TRAVERSALS = ["..", "../..", "../../../../etc/passwd", "sub/../../x", "%2e%2e/%2e%2e/etc/passwd", "sub/./note.txt",
              "root/etc/passwd", "passwd.png/x"]


def test_nothing_outside_the_store_is_served(ran: Path) -> None:
    secret = ran / "secret.txt"
    secret.write_text("TOP-SECRET")
    root = Path(os.environ["NIX_WORKFLOW_STORE"])
    before = tree_snapshot(root)
    with view_server(ran) as base:
        nodes = graph(base, api(base + "api/runs")[0]["id"])
        obj = nodes["raw"]["outputs"]["out"]
        rk = nodes["left"]["resolved_key"]
        answers = []
        for path in TRAVERSALS:
            answers.append(get(f"{base}api/files?object={obj}&path={path}"))
            answers.append(get(f"{base}api/raw?object={obj}&path={path}"))
        for bad in ["..", "../store", "/etc/passwd", str(secret), "%2e%2e%2f%2e%2e", obj[:-1] + "!", obj + "/.."]:
            answers.append(get(f"{base}api/files?object={bad}&path="))
            answers.append(get(f"{base}api/step?key={bad}"))
            answers.append(get(f"{base}api/log?key={bad}"))
        for run_id in ["../../../etc/passwd", "..%2f..%2fsecret", str(secret), "1-1/../../x", "planted"]:
            answers.append(get(f"{base}api/run?id={run_id}"))
        for url_path in ["static/../server.py", "static/%2e%2e/server.py", "%2e%2e/%2e%2e/etc/passwd",
                         "vendor/../../../etc/passwd", "/etc/passwd", "static/", "api/../static/app.js"]:
            answers.append(get(base + url_path))
        for status, body, _ in answers:
            assert 400 <= status < 500, (status, body[:200])
            assert b"root:" not in body and b"TOP-SECRET" not in body and b"import " not in body
        link = api(f"{base}api/files?object={obj}&path=passwd.png")  # a symlink is shown, never followed
        assert link == {"type": "symlink", "target": "/etc/passwd"}
        assert get(f"{base}api/raw?object={obj}&path=passwd.png")[0] == 400
        assert get(f"{base}api/files?object={obj}&path=/sub/note.txt")[0] == 200  # absolute = inside the object
        # a journal planted as a symlink to a file outside is not read
        (ran / "nix-workflow-output" / ".nw-runs" / "1-1.json").symlink_to(secret)
        assert get(f"{base}api/run?id=1-1")[0] == 404 and len(api(base + "api/runs")) == 2
        # a log planted as a symlink to a file outside the store is not read
        planted = root / "logs" / f"{rk[:-1]}{'0' if rk[-1] != '0' else '1'}.log"
        planted.symlink_to(secret)
        assert api(f"{base}api/log?key={planted.stem}")["missing"] is True
        planted.unlink()
        # another site's page (DNS rebinding) cannot read the API; nothing but GET and HEAD exists
        assert get(base + "api/runs", headers={"Host": "evil.example:80"})[0] == 403
        req = urllib.request.Request(base + "api/runs", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 405
    assert tree_snapshot(root) == before  # serving wrote nothing to the store


def test_corrupt_object_is_not_served(ran: Path) -> None:
    root = Path(os.environ["NIX_WORKFLOW_STORE"])
    with view_server(ran) as base:
        obj = graph(base, api(base + "api/runs")[0]["id"])["report"]["outputs"]["out"]
        target = root / "store" / obj / "report.txt"
        os.chmod(root / "store" / obj, 0o755)
        os.chmod(target, 0o644)
        target.write_text("forged\n")
        status, body, _ = get(f"{base}api/files?object={obj}&path=report.txt")
    assert status == 404 and b"forged" not in body and b"re-hash" in body


def wait_for(check, timeout: float = 30.0):  # noqa: ANN001, ANN201 - a tiny polling helper
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


WAITING = """
gate = output(f'echo waiting; while [ ! -e {flag} ]; do sleep 0.05; done; cat {{report}}/report.txt > $out/r',
              name="gate")
"""


def start_waiting_run(cwd: Path, flag: Path) -> subprocess.Popen:
    """A real `nw run` whose last step waits until `flag` exists."""
    write_pipeline(cwd, WAITING.format(flag=flag))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", "experiment.py", "-j", "2"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_live_run_goes_from_running_to_done(isolated: Path) -> None:
    cwd, flag = Path.cwd(), Path.cwd() / "go"
    run = start_waiting_run(cwd, flag)
    try:
        with view_server(cwd) as base:
            run_id = wait_for(lambda: next((r["id"] for r in api(base + "api/runs") if r.get("live")), None))
            nodes = wait_for(lambda: (g := graph(base, run_id))["gate"]["status"] == "running" and g)
            assert nodes["report"]["status"] == "done" and nodes["gate"]["upstream"] == ["report"]
            assert "waiting" in wait_for(lambda: api(f"{base}api/log?key={nodes['gate']['resolved_key']}")["text"])
            flag.touch()
            assert run.wait(30) == 0, run.stderr.read()
            final = graph(base, run_id)
            assert final["gate"]["status"] == "done" and api(f"{base}api/run?id={run_id}")["live"] is False
    finally:
        flag.touch()
        run.wait(30)


def test_killed_run_reads_as_interrupted(isolated: Path) -> None:
    cwd, flag = Path.cwd(), Path.cwd() / "never"
    run = start_waiting_run(cwd, flag)
    with view_server(cwd) as base:
        run_id = wait_for(lambda: next((r["id"] for r in api(base + "api/runs") if r.get("live")), None))
        wait_for(lambda: graph(base, run_id)["gate"]["status"] == "running")
        os.kill(run.pid, signal.SIGKILL)
        run.wait(10)
        nodes = graph(base, run_id)
        assert nodes["gate"]["status"] == "interrupted" and nodes["report"]["status"] == "done"
        assert api(f"{base}api/run?id={run_id}")["live"] is False
    flag.touch()  # the step's own process group outlives a SIGKILLed nw: let it end


def test_port_in_use_is_a_clear_error(isolated: Path) -> None:
    with view_server(Path.cwd()) as base:
        port = base.rsplit(":", 1)[1].strip("/")
        proc = nw("view", "--no-browser", "--port", port, timeout=20)
    assert proc.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr


def test_only_the_newest_runs_are_kept(ran: Path) -> None:
    runs = ran / "nix-workflow-output" / ".nw-runs"
    for n in range(25):
        (runs / f"{n + 1}-1.json").write_text('{"steps": {}, "ended": 1}')
    nw("run", "experiment.py", cwd=ran, check=True)
    kept = {p.name for p in runs.iterdir()}
    real = {name for name in kept if not name.endswith("-1.json")}
    assert len(real) == 2 and kept == real | {f"{n}-1.json" for n in range(8, 26)}  # the oldest 7 went


def test_failed_and_skipped_steps_with_the_failure_log(isolated: Path) -> None:
    cwd = Path.cwd()
    write_pipeline(cwd, "bad = output(f'echo boom; cat {report}/report.txt; exit 3', name='bad')\n"
                        "after = output(f'cat {bad}/x > $out/y', name='after')\n")
    assert nw("run", "experiment.py", cwd=cwd).returncode == 1
    with view_server(cwd) as base:
        run = api(base + "api/runs")[0]
        assert run["counts"] == {"done": 4, "failed": 1, "skipped": 1}
        nodes = graph(base, run["id"])
        assert nodes["bad"]["status"] == "failed" and "bad" in nodes["bad"]["error"]
        assert nodes["after"]["status"] == "skipped" and nodes["after"]["upstream"] == ["bad"]
        assert "boom" in api(f"{base}api/log?key={nodes['bad']['resolved_key']}")["text"]


# ---- the journal's own cost: batched writes, not one per step ---------------------------------------------------


def steps_of(path: Path) -> dict[str, str]:
    doc = history.read_journal(path)
    assert doc is not None, path
    return {name: entry["status"] for name, entry in doc["steps"].items()}


def test_journal_is_not_rewritten_per_step_yet_readers_see_every_state(isolated: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """200 quick steps (listed up front like Snakemake's jobs, then running and done like `nw run`'s): the journal
    is replaced at most once per flusher pass plus once at the end, where it used to be replaced on every start;
    a reader still sees every step done while the run is live, and the final journal stands alone."""
    runs = Path.cwd() / "runs"
    replaced: list[str] = []
    real_replace = os.replace

    def counting_replace(src: object, dst: object) -> None:
        replaced.append(str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", counting_replace)
    passes = history.flush_passes()
    journal = history.RunJournal(Path.cwd(), isolated, tool="test", runs_dir=runs)
    names = [f"s{i}" for i in range(200)]
    for i, name in enumerate(names):
        journal.add(name, names[i - 1:i], "k" * 52)
    for name in names:
        journal.note(name, "running")
        journal.note(name, "done")
    # the flusher alone makes the run's state visible: wait until a pass begun after the loop has ended
    after = history.flush_passes()
    wait_for(lambda: history.flush_passes() >= after + 2, 5)
    live = history.read_journal(journal.path)
    assert live is not None and live["ended"] is None and steps_of(journal.path) == dict.fromkeys(names, "done")
    journal.finish()
    writes = replaced.count(str(journal.path))
    assert 1 <= writes <= history.flush_passes() - passes + 1, (writes, history.flush_passes() - passes)
    assert steps_of(journal.path) == dict.fromkeys(names, "done") and history.read_journal(journal.path)["ended"]
    assert sorted(p.name for p in runs.iterdir()) == [journal.path.name]  # its updates are folded in and gone


def test_journal_compaction_never_replays_an_older_state(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the appended updates outgrow the journal it is rewritten, naming how much of them it covers: a reader
    must not apply those older lines over the newer state the rewrite holds (a step flipping running/done)."""
    monkeypatch.setattr(history, "COMPACT_AT", 0)
    replaced: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (replaced.append(str(dst)), real_replace(src, dst))[1])
    journal = history.RunJournal(Path.cwd(), isolated, tool="test", runs_dir=Path.cwd() / "runs")
    journal.add("other")
    for i in range(42):  # ends failed
        status = ("running", "done", "failed")[i % 3]
        journal.note("a", status, error="boom" if status == "failed" else None)
        journal.flush()
        assert steps_of(journal.path) == {"other": "pending", "a": status}, i
    assert replaced.count(str(journal.path)) >= 3  # rewritten mid-run more than once ...
    assert journal.path.with_suffix(".updates").stat().st_size > 0  # ... with updates before its offset
    journal.finish()
    assert steps_of(journal.path) == {"other": "interrupted", "a": "failed"}


def test_forked_worker_keeps_one_events_descriptor(isolated: Path) -> None:
    """A forked worker (Luigi --workers N) appends each event through one descriptor it keeps, not one open per
    event; the parent's readers apply what it wrote."""
    journal = history.RunJournal(Path.cwd(), isolated, tool="test", runs_dir=Path.cwd() / "runs")
    events = str(journal.path.with_suffix(".events"))
    pid = os.fork()
    if pid == 0:  # the worker: 50 tasks, then how many descriptors it holds on the events file
        code = 2
        try:
            for i in range(50):
                journal.note(f"t{i}", "running")
                journal.note(f"t{i}", "done")
            fds = [fd for fd in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{fd}") == events]
            code = 0 if len(fds) == 1 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # 1: the worker closed (and so reopens) it per event
    journal.flush()
    assert steps_of(journal.path) == {f"t{i}": "done" for i in range(50)}
    journal.finish()


def test_unwritable_journal_never_fails_the_run(isolated: Path) -> None:
    (Path.cwd() / "runs").write_text("not a directory")
    journal = history.RunJournal(Path.cwd(), isolated, tool="test", runs_dir=Path.cwd() / "runs")
    journal.add("a")
    journal.note("a", "running")
    journal.flush()
    journal.note("a", "done")
    journal.finish()
    assert journal.broken and history.read_journal(journal.path) is None

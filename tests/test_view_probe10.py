"""`nw view` probe (wave 10): what a user of the page hits with odd step names, odd or foreign run journals and
killed runs. The real server (started by the real CLI) answers over HTTP; one test drives a real browser.

- A journal is data: an `upstream` that is not a list, a pid past any pid, a missing id get an answer (the run's
  id is its file's name), never a dropped connection with a traceback in the terminal.
- A killed run whose pid a later process reuses (pid_max is 32768 here) reads as interrupted, not live forever.
- A journal, or its updates, written by a user the store does not trust is not shown as a run of this directory.
- Step names holding `->`, quotes and markup: every edge is drawn (edge ids never collide with a node's) and the
  names are text in the page, never markup.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import nw
from tests.test_view import api, get, graph, view_server
from tests.test_view_browser import browser, click_node, page, served, wait_js  # noqa: F401 - fixtures

HOST = socket.gethostname()


def journal(cwd: Path, run_id: str, doc: dict[str, Any], named: bool = True) -> Path:
    """A journal file as `nw run` keeps them, with the content a test gives and (`named`) its id."""
    runs = cwd / "nix-workflow-output" / ".nw-runs"
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / f"{run_id}.json"
    path.write_text(json.dumps({"id": run_id, **doc} if named else doc))
    return path


def test_a_malformed_journal_gets_an_answer(isolated: Path) -> None:
    cwd = Path.cwd()
    Path(os.environ["NIX_WORKFLOW_STORE"]).mkdir(parents=True, exist_ok=True)
    journal(cwd, "100-1", {"steps": {"x": {"upstream": 5, "status": "done"}, "y": {"status": "done"}}, "ended": 1},
            named=False)
    journal(cwd, "101-2", {"steps": {"a": {"status": "done"}, "b": {"status": "done"}, "ab": {"upstream": "ab"}},
                           "ended": 1}, named=False)
    journal(cwd, "102-3", {"id": "999-9", "host": HOST, "pid": 10 ** 30, "started": 1.0, "ended": None,
                           "steps": {"z": {"status": "running"}}})
    with view_server(cwd) as base:
        status, body, _ = get(base + "api/runs")
        assert status == 200, body
        runs = json.loads(body)
        assert [r["id"] for r in runs] == ["102-3", "101-2", "100-1", "store"]  # ids from the file names
        assert runs[0]["live"] is False and runs[0]["counts"] == {"interrupted": 1}  # no process has that pid
        assert {n: v["upstream"] for n, v in graph(base, "100-1").items()} == {"x": [], "y": []}
        assert graph(base, "101-2")["ab"]["upstream"] == []  # a string is not a list of the names "a" and "b"
        assert graph(base, "102-3")["z"]["status"] == "interrupted"


def test_a_killed_run_whose_pid_is_reused_reads_as_interrupted(isolated: Path) -> None:
    """The run's pid now names a process that started after the run began (pid_max is small: numbers come back):
    that process is not the run, which is dead. A process that started before the run began may be it."""
    cwd = Path.cwd()
    Path(os.environ["NIX_WORKFLOW_STORE"]).mkdir(parents=True, exist_ok=True)
    other = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.05)
        steps = {"train": {"status": "running", "upstream": []}}
        journal(cwd, "200-1", {"host": HOST, "pid": other.pid, "started": time.time() - 120, "ended": None,
                               "steps": steps})
        journal(cwd, "100-1", {"host": HOST, "pid": os.getpid(), "started": time.time(), "ended": None,
                               "steps": steps})
        with view_server(cwd) as base:
            runs = {r["id"]: r for r in api(base + "api/runs")}
            assert runs["200-1"]["live"] is False and runs["200-1"]["counts"] == {"interrupted": 1}
            assert graph(base, "200-1")["train"]["status"] == "interrupted"
            assert runs["100-1"]["live"] is True and graph(base, "100-1")["train"]["status"] == "running"
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file of another user needs root")
def test_a_journal_an_untrusted_user_wrote_is_not_shown(isolated: Path) -> None:
    cwd = Path.cwd()
    (cwd / "experiment.py").write_text("from nixlib import output\n"
                                       "a = output('echo a > $out/a', name='a')\n"
                                       "b = output(f'cat {a}/a > $out/b', name='b')\n")
    nw("run", "experiment.py", cwd=cwd, check=True)
    with view_server(cwd) as base:
        real = api(base + "api/runs")[0]
        mine = graph(base, real["id"])
        runs = cwd / "nix-workflow-output" / ".nw-runs"
        # another user's journal claims a step `train` made `b`'s output from `a`, and its events append to ours
        planted = journal(cwd, "9" * 13 + "-1", {"host": HOST, "pid": 1, "started": 1.0, "ended": 2.0, "steps": {
            "train": {"status": "done", "resolved_key": mine["b"]["resolved_key"], "upstream": ["a"]},
            "a": {"status": "done", "resolved_key": mine["a"]["resolved_key"], "upstream": []}}})
        events = runs / f"{real['id']}.events"
        events.write_text(json.dumps({"step": "b", "status": "failed", "error": "forged"}) + "\n")
        for path in (planted, events):
            os.chown(path, 54321, 54321)
        assert [r["id"] for r in api(base + "api/runs")] == [real["id"], "store"]
        assert get(f"{base}api/run?id={planted.stem}")[0] == 404
        assert graph(base, real["id"])["b"]["status"] == "done"
        os.chown(planted, os.getuid(), os.getgid())  # the same file of a trusted user is shown
        assert graph(base, planted.stem)["train"]["upstream"] == ["a"]


def test_a_port_out_of_range_is_one_clear_sentence(isolated: Path) -> None:
    proc = nw("view", "--no-browser", "--port", "70000", timeout=20)
    assert proc.returncode == 1 and "cannot listen on 127.0.0.1:70000: " in proc.stderr, proc.stderr
    assert ".." not in proc.stderr and "Traceback" not in proc.stderr and "--port N" in proc.stderr


NAMES = """\
from nixlib import output

x = output('echo "<b>x</b>" > $out/x', name='x"<img src=q onerror=alert(1)>\\'')
a = output(f'cat {x}/x > $out/a', name="a")
b = output(f'cat {a}/a > $out/b', name="b")
arrow = output(f'cat {x}/x > $out/c', name="a->s:b")
"""


def test_names_with_arrows_and_markup_draw_every_edge_as_text(page: Any, isolated: Path) -> None:  # noqa: F811
    """Edge ids were `source->target`: the step named `a->s:b` (node id `s:a->s:b`) took the id of the edge a -> b,
    so that edge was never drawn."""
    cwd = Path.cwd()
    (cwd / "experiment.py").write_text(NAMES)
    nw("run", "experiment.py", cwd=cwd, check=True)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    x = 'x"<img src=q onerror=alert(1)>\''
    with served(page, cwd) as base:
        page.goto(base)
        wait_js(page, "window.nwView.cy.nodes().length === 4")
        edges = page.evaluate("window.nwView.cy.edges().map(e => e.source().id() + ' > ' + e.target().id()).sort()")
        assert edges == sorted([f"s:{x} > s:a", "s:a > s:b", f"s:{x} > s:a->s:b"])
        click_node(page, f"s:{x}")
        wait_js(page, "document.querySelector('#panel h2') !== null")
        assert page.evaluate("document.querySelector('#panel h2').textContent") == x
        assert page.evaluate("document.querySelectorAll('#panel img, #panel b').length") == 0
    assert dialogs == []

"""`nw view` probe (wave 11): what the page and its JSON API show once the run journals gained Luigi families,
cleared errors and tasks waiting for what their run() yielded, and `nw show` marks outputs missing.

- An output changed in place (then quarantined) or removed from the store after its run is not shown as an
  available result: the node is *gone* with what became of the object (as `nw show` says), in the run, the
  store view and the step's details, and the page offers no file browser for it.
- A Luigi task whose complete() raises is shown failed with its reason (it read *interrupted*, as if the run had
  been killed), and a task waiting on a dependency that failed, or on a task that complete() broke, is listed.
- A task whose run() yielded tasks Luigi had to run first is drawn with edges from them.
- A retried task shows no end time of its failed attempt while it runs again.
The real CLI (`nw run`, `luigi`, `nw view`) runs throughout; one test drives a real browser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, nw
from tests.test_luigi_processes import LUIGI, STRICT
from tests.test_view import api, get, graph, view_server, wait_for
from tests.test_view_browser import browser, page, served, wait_js  # noqa: F401 - fixtures

PIPELINE = """\
from nixlib import output

a = output('echo A > $out/a.txt', name="a")
b = output(f'cat {a}/a.txt > $out/b.txt; echo B >> $out/b.txt', name="b")
c = output(f'cat {b}/b.txt > $out/c.txt', name="c")
"""


def _forge(root: Path, obj: str) -> None:
    """Change a stored object in place, as a stray process writing through an output link would."""
    path = root / "store" / obj
    os.chmod(path, 0o755)
    os.chmod(path / "a.txt", 0o644)
    (path / "a.txt").write_text("forged\n")


def test_an_output_quarantined_or_removed_after_its_run_is_not_shown_as_available(isolated: Path) -> None:
    cwd, root = Path.cwd(), isolated
    (cwd / "experiment.py").write_text(PIPELINE)
    nw("run", "experiment.py", cwd=cwd, check=True)
    with view_server(cwd) as base:
        run_id = api(base + "api/runs")[0]["id"]
        nodes = graph(base, run_id)
        assert {n: v["status"] for n, v in nodes.items()} == {"a": "done", "b": "done", "c": "done"}
        a, b = nodes["a"]["outputs"]["out"], nodes["b"]["outputs"]["out"]
        _forge(root, a)  # a: changed in place; opening it finds that out and sets it aside
        assert "quarantined" in api(f"{base}api/step?key={nodes['a']['resolved_key']}")["missing_outputs"]["out"]
        shutil.rmtree(root / "store" / b)  # b: removed by hand
        nodes = graph(base, run_id)
        assert nodes["a"]["status"] == "gone" and nodes["b"]["status"] == "gone", nodes
        assert nodes["c"]["status"] == "done" and "missing" not in nodes["c"]
        why = nodes["a"]["missing"]["out"]
        assert "quarantined" in why and str(root / "quarantine") in why, why
        assert "removed from the store" in nodes["b"]["missing"]["out"]
        assert list((root / "quarantine").iterdir())[0].name.startswith(a)
        store = {n["name"]: n for n in api(base + "api/run?id=store")["nodes"]}
        assert (store["a"]["status"], store["b"]["status"], store["c"]["status"]) == ("gone", "gone", "done")
        step = api(f"{base}api/step?key={nodes['b']['resolved_key']}")  # the record stays readable, marked
        assert step["outputs"] == {"out": b} and "removed from the store" in step["missing_outputs"]["out"]
        assert "missing_outputs" not in api(f"{base}api/step?key={nodes['c']['resolved_key']}")
        assert get(f"{base}api/files?object={b}&path=")[0] == 404


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_the_page_marks_a_missing_output_and_offers_no_file_browser(page: Any, isolated: Path) -> None:  # noqa: F811
    cwd, root = Path.cwd(), isolated
    (cwd / "experiment.py").write_text(PIPELINE)
    nw("run", "experiment.py", cwd=cwd, check=True)
    obj = os.path.basename(os.readlink(cwd / "nix-workflow-output" / "b"))
    shutil.rmtree(root / "store" / obj)
    with served(page, cwd) as base:
        page.goto(base)
        wait_js(page, "window.nwView.cy.nodes().length === 3")
        assert page.evaluate("window.nwView.cy.$id('s:b').data('status')") == "gone"
        page.evaluate("window.nwView.cy.$id('s:b').emit('tap')")
        wait_js(page, "document.querySelector('#panel .missing') !== null && document.querySelector('#panel .command')")
        text = page.evaluate("document.getElementById('panel').innerText")
        assert "removed from the store" in text and "cat " in text, text  # marked, and the record still shown
        assert page.evaluate("document.querySelectorAll('#panel .files').length") == 0


TASKS = '''
import os
import time

import luigi

from luigi_nixworkflow import NixTask

GO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "go")


class Part(NixTask):
    i = luigi.IntParameter()

    def command(self):
        return f"echo part {self.i} > {self.output()}/v"


class Bad(NixTask):
    def requires(self):
        return Part(i=0)

    def command(self):
        return "echo about to fail; exit 3"


class After(NixTask):
    def requires(self):
        return [Bad(), Part(i=1)]

    def command(self):
        return f"cat {self.input()[0]}/v > {self.output()}/x"


class Later(NixTask):
    def requires(self):
        return After()

    def command(self):
        return f"cat {self.input()}/x > {self.output()}/y"


class BrokenCheck(NixTask):
    def complete(self):
        raise ValueError("the check <b>broke</b>")

    def command(self):
        return f"echo x > {self.output()}/x"


class NeedsBrokenCheck(NixTask):
    def requires(self):
        return BrokenCheck()

    def command(self):
        return f"cat {self.input()}/x > {self.output()}/y"


class Gather(NixTask):
    def output(self):
        return luigi.LocalTarget("out/gather.txt")

    def run(self):
        parts = yield [Part(i=10), Part(i=11)]
        with self.output().open("w") as f:
            f.write("".join(open(p.path + "/v").read() for p in parts))


class Retried(NixTask):
    """Its first attempt fails; its retry waits for the file `go`."""

    retry_count = 3
    attempts = 0

    def output(self):
        return luigi.LocalTarget("out/retried.txt")

    def run(self):
        self.attempts += 1
        if self.attempts == 1:
            raise RuntimeError("first attempt fails")
        while not os.path.exists(GO):
            time.sleep(0.05)
        with self.output().open("w") as f:
            f.write("attempt %d\\n" % self.attempts)
'''


def luigi(cwd: Path, task: str, *args: str, wait: bool = True) -> Any:
    """The real `luigi` command line over TASKS."""
    (cwd / "probetasks.py").write_text(TASKS)
    argv = [LUIGI, "--module", "probetasks", task, "--local-scheduler", "--no-lock", *STRICT, *args]
    env = dict(os.environ, PYTHONPATH=f"{cwd}{os.pathsep}{REPO}")
    if not wait:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def by_family(nodes: dict[str, dict]) -> dict[str, dict]:
    """Nodes by task_id without its hash ('Part_0', 'Bad'), upstream likewise."""
    def short(task_id: str) -> str:
        return task_id.rsplit("_", 1)[0].rstrip("_")
    return {short(n): v | {"upstream": sorted(short(u) for u in v["upstream"])} for n, v in nodes.items()}


def luigi_run(base: str) -> dict[str, dict]:
    (run,) = [r for r in api(base + "api/runs") if r["label"] == "luigi"]
    return by_family(graph(base, run["id"]))


def test_a_luigi_task_whose_complete_raises_is_failed_and_what_needs_it_is_listed_not_run(isolated: Path) -> None:
    """complete() raising fires Luigi's DEPENDENCY_MISSING event, not a failure event: the task read *interrupted*
    (as if the run had been killed), and the task needing it, never looked up, was not listed at all."""
    cwd = Path.cwd()
    proc = luigi(cwd, "NeedsBrokenCheck")
    assert proc.returncode == 4 and "failed scheduling" in proc.stderr, proc.stderr  # Luigi: a scheduling error
    with view_server(cwd) as base:
        nodes = luigi_run(base)
    assert set(nodes) == {"BrokenCheck", "NeedsBrokenCheck"}, nodes
    assert nodes["BrokenCheck"]["status"] == "failed", nodes
    assert "complete()" in nodes["BrokenCheck"]["error"] and "the check <b>broke</b>" in nodes["BrokenCheck"]["error"]
    assert "Traceback" not in nodes["BrokenCheck"]["error"]
    needs = nodes["NeedsBrokenCheck"]
    assert (needs["status"], needs["upstream"]) == ("skipped", ["BrokenCheck"]), needs
    assert "BrokenCheck__" in needs["error"] and "failed" in needs["error"]


def test_luigi_tasks_left_pending_by_a_failed_dependency_are_listed_not_run(isolated: Path) -> None:
    """Luigi's summary lists After and Later as left pending (failed dependencies); the view did not list them."""
    cwd = Path.cwd()
    proc = luigi(cwd, "Later", "--workers", "2")
    assert proc.returncode == 3 and "had failed dependencies" in proc.stderr, proc.stderr
    with view_server(cwd) as base:
        nodes = luigi_run(base)
    assert {n: (v["status"], v["upstream"]) for n, v in nodes.items()} == {
        "Part_0": ("done", []), "Part_1": ("done", []), "Bad": ("failed", ["Part_0"]),
        "After": ("skipped", ["Bad", "Part_1"]), "Later": ("skipped", ["After"])}
    assert "Bad__" in nodes["After"]["error"] and "which failed" in nodes["After"]["error"]
    assert "After__" in nodes["Later"]["error"]  # it needs After, which was not run


def test_the_tasks_a_run_yielded_are_drawn_as_its_upstream(isolated: Path) -> None:
    cwd = Path.cwd()
    proc = luigi(cwd, "Gather", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert (cwd / "out" / "gather.txt").read_text() == "part 10\npart 11\n"
    with view_server(cwd) as base:
        nodes = luigi_run(base)
    assert {n: (v["status"], v["upstream"]) for n, v in nodes.items()} == {
        "Part_10": ("done", []), "Part_11": ("done", []), "Gather": ("done", ["Part_10", "Part_11"])}
    assert "error" not in nodes["Gather"]


def test_a_retried_task_running_again_shows_no_end_of_its_failed_attempt(isolated: Path) -> None:
    cwd = Path.cwd()
    proc = luigi(cwd, "Retried", "--worker-keep-alive", "--scheduler-retry-delay", "0.2",
                 "--worker-wait-interval", "0.1", wait=False)
    try:
        with view_server(cwd) as base:
            def running() -> dict | None:
                runs = [r for r in api(base + "api/runs") if r["label"] == "luigi"]
                node = runs and luigi_run(base).get("Retried")
                return node if node and node["status"] == "running" and node["start"] else None

            node = wait_for(running, 120)
            assert "error" not in node and "end" not in node, node  # the failed attempt's end is not this one's
            (cwd / "go").touch()
            assert proc.wait(120) == 0, proc.stderr.read()
            done = luigi_run(base)["Retried"]
            assert done["status"] == "done" and done["end"] >= done["start"] >= node["start"], done
    finally:
        (cwd / "go").touch()
        proc.wait(120)

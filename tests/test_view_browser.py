"""`nw view` in a real browser: Playwright drives Debian's chromium against real `nw run` runs.

Proves what a user sees, on real runs of the showcase (examples/showcase/experiment.py, one run shared by the
module) and of a small pipeline: the DAG's nodes and edges (expected values written from the showcase's source),
a click on a step showing its command and log, the Content view merging steps that produced identical bytes,
and a running step turning done without a reload. Screenshots of each view are saved in $NW_TEST_ARTIFACTS/view
(else a directory under pytest's tmp path); with NW_VIEW_SCREENSHOT=PATH the showcase's Recipe view is copied
there (that is how docs/view.png is made). Skips when chromium or playwright is missing, unless
NW_REQUIRE_BROWSER=1 (CI), where that fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, nw
from tests.test_view import api, start_waiting_run, view_server, write_pipeline


@contextlib.contextmanager
def served(page: Any, cwd: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """view_server for a page that polls it: the page leaves before the server stops, so no poll meets a closed
    port (a console error that the page fixture, which fails a test on any, would report at random)."""
    with view_server(cwd, env=env) as base:
        try:
            yield base
        finally:
            page.goto("about:blank")

CHROMIUM = "/usr/bin/chromium"


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed (scripts/setup.sh installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing:
        if os.environ.get("NW_REQUIRE_BROWSER") == "1":
            pytest.fail(f"NW_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    args = ["--disable-gpu"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield b
        b.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $NW_TEST_ARTIFACTS/view (CI keeps it) or a directory under pytest's tmp path."""
    given = os.environ.get("NW_TEST_ARTIFACTS")
    where = Path(given) / "view" if given else tmp_path_factory.mktemp("view-artifacts")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 820})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()
    assert errors == [], errors  # no script error, no failed asset load (everything is served locally)


def wait_js(page: Any, expression: str, timeout: float = 30.0) -> None:
    """Poll a JS expression until it is truthy. (Playwright's wait_for_function evaluates its predicate with
    eval(), which the page's Content-Security-Policy forbids; page.evaluate goes through the debugger.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"(() => {{ try {{ return {expression}; }} catch (e) {{ return false; }} }})()"):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.05)


def nodes(page: Any) -> dict[str, dict[str, Any]]:
    return page.evaluate("Object.fromEntries(window.nwView.cy.nodes().map(n => "
                         "[n.id(), {label: n.data('label'), status: n.data('status')}]))")


def click_node(page: Any, node_id: str) -> None:
    """A real mouse click where the node is drawn on the canvas."""
    x, y = page.evaluate("""id => { const n = window.nwView.cy.$id(id), p = n.renderedPosition(),
        r = window.nwView.cy.container().getBoundingClientRect(); return [r.left + p.x, r.top + p.y]; }""", node_id)
    page.mouse.click(x, y)


def test_recipe_and_content_views(page: Any, artifacts: Path) -> None:
    cwd = Path.cwd()
    write_pipeline(cwd)
    nw("run", "experiment.py", cwd=cwd, check=True)
    with served(page, cwd) as base:
        page.goto(base)
        wait_js(page, "window.nwView.cy.nodes().length === 4")
        shown = nodes(page)
        assert set(shown) == {"s:raw", "s:left", "s:right", "s:report"}
        assert {v["status"] for v in shown.values()} == {"done"}
        edges = page.evaluate("window.nwView.cy.edges().map(e => e.source().id() + '>' + e.target().id()).sort()")
        assert edges == ["s:left>s:report", "s:raw>s:left", "s:raw>s:right", "s:right>s:report"]

        click_node(page, "s:left")
        page.wait_for_selector("#panel pre.command")
        assert page.text_content("#panel h2") == "left"
        assert page.text_content("#panel pre.command").startswith("cut -d, -f1 ")
        wait_js(page, "document.querySelector('#panel pre.log')?.textContent.includes('cut -d, -f1')")
        lineage = page.evaluate("[...window.nwView.cy.nodes('.up, .down').map(n => n.id())].sort()")
        assert lineage == ["s:raw", "s:report"]  # upstream and downstream of `left`, not its sibling `right`
        page.click("#panel .files >> text=col.txt")
        wait_js(page, "document.querySelector('#panel pre.preview')?.textContent === 'a\\n1\\n3\\n'")
        page.screenshot(path=str(artifacts / "toy-recipe-view.png"))

        click_node(page, "s:raw")
        page.click("#panel .files >> text=data.csv")
        page.wait_for_selector("#panel table.preview")
        assert page.text_content("#panel table.preview th") == "a"

        page.click("#view-content")
        wait_js(page, "window.nwView.cy.nodes().length === 3")
        labels = sorted(v["label"].split("\n")[:-1] for v in nodes(page).values())
        assert labels == [["left", "right"], ["raw"], ["report"]]  # identical bytes: one node
        page.screenshot(path=str(artifacts / "toy-content-view.png"))

        with page.expect_download() as svg:  # export: the graph as drawn, without a server
            page.click("#export-svg")
        text = Path(svg.value.path()).read_text()
        assert text.startswith("<svg") and text.count("<rect") == 3 and ">left</text>" in text
        with page.expect_download() as png:
            page.click("#export-png")
        assert Path(png.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_running_step_turns_done_without_reload(page: Any, artifacts: Path) -> None:
    cwd, flag = Path.cwd(), Path.cwd() / "go"
    run = start_waiting_run(cwd, flag)
    try:
        with served(page, cwd) as base:
            page.goto(base)
            wait_js(page, "window.nwView.cy.$id('s:gate').data('status') === 'running'")
            page.evaluate("window.__sameDocument = true")
            assert page.is_visible("#live")
            click_node(page, "s:gate")
            wait_js(page, "document.querySelector('#panel pre.log')?.textContent.includes('waiting')")
            page.screenshot(path=str(artifacts / "toy-running.png"))
            flag.touch()
            wait_js(page, "window.nwView.cy.$id('s:gate').data('status') === 'done'")
            assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
            page.wait_for_selector("#panel pre.command")  # the open panel followed the step to its record
            page.screenshot(path=str(artifacts / "toy-done.png"))
    finally:
        flag.touch()
        assert run.wait(30) == 0, run.stderr.read()


def test_grouping_collapses_and_expands_a_family(page: Any) -> None:
    cwd = Path.cwd()
    (cwd / "experiment.py").write_text(
        "from nixlib import output\n"
        "raw = output('echo 1 > $out/x', name='raw')\n"
        + "".join(f"fit_{i} = output(f'echo {i} > $out/y; cat {{raw}}/x > $out/z', name='fit_{i}')\n" for i in range(3))
        + "best = output(f'cat {fit_0}/y {fit_1}/y {fit_2}/y > $out/z', name='best')\n")
    nw("run", "experiment.py", cwd=cwd, check=True)
    with served(page, cwd) as base:
        page.goto(base)
        wait_js(page, "window.nwView.cy.nodes().length === 5")
        page.check("#group")
        wait_js(page, "window.nwView.cy.nodes().length === 3")
        assert sorted(v["label"] for v in nodes(page).values()) == ["best", "fit ×3", "raw"]
        edges = page.evaluate("window.nwView.cy.edges().map(e => e.source().id() + '>' + e.target().id()).sort()")
        assert edges == ["g:fit>s:best", "s:raw>g:fit"]
        click_node(page, "g:fit")  # a click opens the group again
        wait_js(page, "window.nwView.cy.nodes().length === 5")


# ---- the showcase -----------------------------------------------------------------------------------------------

SHOWCASE_DIR = REPO / "examples" / "showcase"
# Written from examples/showcase/experiment.py: each step's node, and an edge from every step it interpolates.
# model_base@epoch-2 is the checkpoint predict_base_epoch2 uses (published by model_base while it trains).
SHOWCASE_EDGES = sorted(
    [f"s:dataset>s:{s}" for s in ("model_small", "model_base", "model_large", "predict_small", "predict_base",
                                  "predict_large", "predict_base_epoch2", "eval_small", "eval_base", "eval_large",
                                  "eval_base_epoch2")]
    + [f"s:model_{m}>s:predict_{m}" for m in ("small", "base", "large")]
    + ["s:model_base>s:model_base@epoch-2", "s:model_base@epoch-2>s:predict_base_epoch2"]
    + [f"s:predict_{m}>s:eval_{m}" for m in ("small", "base", "large", "base_epoch2")]
    + [f"s:eval_{m}>s:comparison" for m in ("small", "base", "large")])
SHOWCASE_STEPS = {"dataset", "model_small", "model_base", "model_large", "predict_small", "predict_base",
                  "predict_large", "eval_small", "eval_base", "eval_large", "predict_base_epoch2", "eval_base_epoch2",
                  "comparison", "model_base@epoch-2"}


@pytest.fixture(scope="module")
def showcase(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real `nw run` of the showcase in a private store and directory, shared by this module's tests."""
    root = tmp_path_factory.mktemp("showcase")
    cwd = root / "work"
    cwd.mkdir()
    env = dict(os.environ, NIX_WORKFLOW_STORE=str(root / "store"), PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-m", "nixlib.cli", "run", str(SHOWCASE_DIR / "experiment.py"), "-j", "2", "-q"],
                   cwd=cwd, env=env, check=True, capture_output=True, text=True, timeout=300)
    with view_server(cwd, env=env) as base:
        run_id = api(base + "api/runs")[0]["id"]
    return {"cwd": cwd, "env": env, "run": run_id}


def edges(page: Any) -> list[str]:
    return page.evaluate("window.nwView.cy.edges().map(e => e.source().id() + '>' + e.target().id()).sort()")


def choose_run(page: Any, run_id: str, count: int) -> None:
    page.select_option("#run", run_id)
    wait_js(page, f"window.nwView.state.run.id === {run_id!r} && window.nwView.cy.nodes().length === {count}")


def test_showcase_dag_and_a_step_with_its_command_and_log(page: Any, showcase: dict[str, Any],
                                                          artifacts: Path) -> None:
    with served(page, showcase["cwd"], env=showcase["env"]) as base:
        page.goto(base)
        wait_js(page, "window.nwView.cy.nodes().length > 0")
        choose_run(page, showcase["run"], len(SHOWCASE_STEPS))
        shown = nodes(page)
        assert set(shown) == {f"s:{s}" for s in SHOWCASE_STEPS}
        assert {v["status"] for v in shown.values()} == {"done", "cached"}  # the checkpoint: served once published
        assert shown["s:model_base@epoch-2"]["status"] == "cached"
        assert edges(page) == SHOWCASE_EDGES

        click_node(page, "s:eval_base")  # the picture in docs/view.md
        page.wait_for_selector("#panel pre.command")
        assert page.text_content("#panel h2") == "eval_base"
        command = page.text_content("#panel pre.command")
        assert "--predictions=" in command and "/predictions.csv --ground-truth=" in command
        lineage = page.evaluate("[...window.nwView.cy.nodes('.up').map(n => n.id())].sort()")
        assert lineage == ["s:dataset", "s:model_base", "s:predict_base"]
        page.screenshot(path=str(artifacts / "showcase-recipe-view.png"))
        if os.environ.get("NW_VIEW_SCREENSHOT"):
            shutil.copy(artifacts / "showcase-recipe-view.png", os.environ["NW_VIEW_SCREENSHOT"])

        click_node(page, "s:model_base")
        wait_js(page, "document.querySelector('#panel h2')?.textContent === 'model_base'")
        page.wait_for_selector("#panel pre.command")
        assert "--epochs=10 --lr=0.001 --batch-size=32" in page.text_content("#panel pre.command")
        wait_js(page, "document.querySelector('#panel pre.log')?.textContent.includes('epoch 10/10')")
        page.screenshot(path=str(artifacts / "showcase-step-panel.png"))


def test_showcase_content_view_merges_identical_outputs(page: Any, showcase: dict[str, Any], artifacts: Path) -> None:
    """model_base publishes epoch-1 … epoch-10 while it trains; its final model is its epoch-10 checkpoint, byte
    for byte. The store's records (all 13 steps and 10 checkpoints) show 23 steps and 22 objects."""
    with served(page, showcase["cwd"], env=showcase["env"]) as base:
        page.goto(base)
        wait_js(page, "window.nwView.cy.nodes().length > 0")
        choose_run(page, "store", 23)
        page.click("#view-content")
        wait_js(page, "window.nwView.cy.nodes().length === 22")
        merged = [v["label"].split("\n")[:-1] for v in nodes(page).values() if "\n" in v["label"]]
        assert sorted(len(m) for m in merged) == [1] * 21 + [2]
        assert sorted(max(merged, key=len)) == ["model_base", "model_base@epoch-10"]
        page.screenshot(path=str(artifacts / "showcase-content-view.png"))
        page.click("#view-recipe")
        wait_js(page, "window.nwView.cy.nodes().length === 23")
        page.screenshot(path=str(artifacts / "showcase-store-recipe-view.png"))


GATE = """
gate = output(f"echo waiting; while [ ! -e {flag} ]; do sleep 0.05; done; cat {{comparison}}/comparison.json > $out/c",
              name="gate")
"""


def test_showcase_running_step_turns_done_without_reload(page: Any, showcase: dict[str, Any],
                                                         artifacts: Path) -> None:
    """The showcase again (all cached) with one more step at its end that waits for a file this test creates."""
    cwd, flag = showcase["cwd"], showcase["cwd"] / "go"
    text = (SHOWCASE_DIR / "experiment.py").read_text()
    exp = cwd / "gated.py"
    exp.write_text(text.replace('Path(__file__).parent / "tools"', f"Path({str(SHOWCASE_DIR / 'tools')!r})")
                   + GATE.format(flag=flag))
    run = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp), "-q"], cwd=cwd, env=showcase["env"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with served(page, cwd, env=showcase["env"]) as base:
            page.goto(base)
            wait_js(page, "window.nwView.cy.$id('s:gate').data('status') === 'running'")
            page.evaluate("window.__sameDocument = true")
            assert page.is_visible("#live") and nodes(page)["s:comparison"]["status"] == "cached"
            assert len(nodes(page)) == len(SHOWCASE_STEPS) + 1
            click_node(page, "s:gate")
            wait_js(page, "document.querySelector('#panel pre.log')?.textContent.includes('waiting')")
            page.screenshot(path=str(artifacts / "showcase-running.png"))
            flag.touch()
            wait_js(page, "window.nwView.cy.$id('s:gate').data('status') === 'done'")
            assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
            page.wait_for_selector("#panel pre.command")
            page.screenshot(path=str(artifacts / "showcase-done.png"))
    finally:
        flag.touch()
        assert run.wait(60) == 0, run.stderr.read()

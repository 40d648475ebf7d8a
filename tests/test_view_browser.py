"""`nw view` in a real browser: Playwright drives Debian's chromium against real `nw run` runs.

Proves what a user sees: the DAG's nodes and edges, a click on a step showing its command and log,
the Content view merging two steps that produced identical bytes, and a running step turning done
without a reload. Screenshots of each view are saved under the test's tmp dir (and, when
NW_VIEW_SCREENSHOT=PATH is set, the Recipe view is copied there: that is how docs/view.png is made).
Skips when chromium or playwright is missing, unless NW_REQUIRE_BROWSER=1 (CI), where that fails.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import nw
from tests.test_view import start_waiting_run, view_server, write_pipeline

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


def test_recipe_and_content_views(page: Any, tmp_path: Path) -> None:
    cwd = Path.cwd()
    write_pipeline(cwd)
    nw("run", "experiment.py", cwd=cwd, check=True)
    with view_server(cwd) as base:
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
        page.screenshot(path=str(tmp_path / "recipe-view.png"))
        if os.environ.get("NW_VIEW_SCREENSHOT"):
            shutil.copy(tmp_path / "recipe-view.png", os.environ["NW_VIEW_SCREENSHOT"])

        click_node(page, "s:raw")
        page.click("#panel .files >> text=data.csv")
        page.wait_for_selector("#panel table.preview")
        assert page.text_content("#panel table.preview th") == "a"

        page.click("#view-content")
        wait_js(page, "window.nwView.cy.nodes().length === 3")
        labels = sorted(v["label"].split("\n")[:-1] for v in nodes(page).values())
        assert labels == [["left", "right"], ["raw"], ["report"]]  # identical bytes: one node
        page.screenshot(path=str(tmp_path / "content-view.png"))

        with page.expect_download() as svg:  # export: the graph as drawn, without a server
            page.click("#export-svg")
        text = Path(svg.value.path()).read_text()
        assert text.startswith("<svg") and text.count("<rect") == 3 and ">left</text>" in text
        with page.expect_download() as png:
            page.click("#export-png")
        assert Path(png.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_running_step_turns_done_without_reload(page: Any, tmp_path: Path) -> None:
    cwd, flag = Path.cwd(), Path.cwd() / "go"
    run = start_waiting_run(cwd, flag)
    try:
        with view_server(cwd) as base:
            page.goto(base)
            wait_js(page, "window.nwView.cy.$id('s:gate').data('status') === 'running'")
            page.evaluate("window.__sameDocument = true")
            assert page.is_visible("#live")
            click_node(page, "s:gate")
            wait_js(page, "document.querySelector('#panel pre.log')?.textContent.includes('waiting')")
            page.screenshot(path=str(tmp_path / "running.png"))
            flag.touch()
            wait_js(page, "window.nwView.cy.$id('s:gate').data('status') === 'done'")
            assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
            page.wait_for_selector("#panel pre.command")  # the open panel followed the step to its record
            page.screenshot(path=str(tmp_path / "done.png"))
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
    with view_server(cwd) as base:
        page.goto(base)
        wait_js(page, "window.nwView.cy.nodes().length === 5")
        page.check("#group")
        wait_js(page, "window.nwView.cy.nodes().length === 3")
        assert sorted(v["label"] for v in nodes(page).values()) == ["best", "fit ×3", "raw"]
        edges = page.evaluate("window.nwView.cy.edges().map(e => e.source().id() + '>' + e.target().id()).sort()")
        assert edges == ["g:fit>s:best", "s:raw>g:fit"]
        click_node(page, "g:fit")  # a click opens the group again
        wait_js(page, "window.nwView.cy.nodes().length === 5")

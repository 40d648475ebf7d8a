"""nw view probe 25: a live run's graph keeps the user's zoom and pan when its shape changes.

Real `nw run`, real `nw view` server, real headless Chromium (tests/test_view_browser.py's fixtures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.test_view import start_waiting_run
from tests.test_view_browser import browser, page, served, wait_js  # noqa: F401 - fixtures


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_live_content_view_keeps_the_users_zoom_and_pan_when_a_step_joins_its_output(
        page: Any, isolated: Path) -> None:  # noqa: F811
    """In the Content view a running step is a node of its own and joins its output object's node once done, so
    the graph's shape changes as a live run goes on: it was laid out again and fitted to the window each time, and
    the part of a large graph the user had zoomed into was lost at every finished step. A new shape is still laid
    out, but the user's zoom and pan stay; a graph the user has not moved is fitted as before."""
    cwd, flag = Path.cwd(), Path.cwd() / "go"
    run = start_waiting_run(cwd, flag)
    try:
        with served(page, cwd) as base:
            page.goto(base)
            wait_js(page, "window.nwView.cy.$id('s:gate').data('status') === 'running'")
            page.click("#view-content")
            wait_js(page, "window.nwView.state.view === 'content' && window.nwView.cy.$id('s:gate').length === 1")
            page.evaluate("window.nwView.cy.viewport({ zoom: 1.9, pan: { x: -37, y: 52 } })")  # as a wheel/drag would
            flag.touch()
            assert run.wait(60) == 0, run.stderr.read()
            wait_js(page, "window.nwView.state.run.live === false")
            wait_js(page, "window.nwView.cy.$id('s:gate').length === 0")  # the new shape is drawn
            assert page.evaluate("[window.nwView.cy.zoom(), window.nwView.cy.pan()]") == [1.9, {"x": -37, "y": 52}]
            page.click("#view-recipe")  # a view the user picks is fitted to the window
            assert page.evaluate("window.nwView.cy.zoom()") != 1.9
    finally:
        flag.touch()
        run.wait(30)

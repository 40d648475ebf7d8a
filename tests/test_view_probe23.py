"""`nw view` probe (wave 23): the page as a user drives it over real runs, in a real browser (Playwright, Debian's
chromium), and the real server (started by the real CLI) over HTTP.

- The store view holds every realisation of a step; an input link in a step's panel selects the realisation that
  made that input (by its key), not the first node of that name (an older run of the step, with other bytes).
- Picking another run while a step's panel is open shows that run's step of the same name (its state and its log),
  or nothing: never the previous run's step beside the new run's graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import nw
from tests.test_view import api, view_server
from tests.test_view_browser import browser, click_node, page, served, wait_js  # noqa: F401 - fixtures


def versions(cwd: Path, values: list[str]) -> None:
    """One real `nw run` per value: `raw` writes it, `use` reads raw's file (each run a new realisation of both)."""
    for v in values:
        (cwd / "experiment.py").write_text(
            "from nixlib import output\n"
            f"raw = output('echo {v} > $out/x', name='raw')\n"
            "use = output(f'cat {raw}/x > $out/y', name='use')\n")
        nw("run", "experiment.py", cwd=cwd, check=True)


def test_an_input_link_in_the_store_view_selects_the_realisation_that_made_it(page: Any, isolated: Path) -> None:  # noqa: F811
    cwd = Path.cwd()
    versions(cwd, ["one", "two", "three"])
    with view_server(cwd) as base:
        made = {}  # use's key -> the key of the raw it read: from the records, through the API
        for n in api(base + "api/run?id=store")["nodes"]:
            if n["name"] == "use":
                (inp,) = api(f"{base}api/step?key={n['resolved_key']}")["inputs"]
                made[n["resolved_key"]] = inp["resolved_key"]
    assert len(made) == 3 and len(set(made.values())) == 3
    with served(page, cwd) as base:
        page.goto(base)
        wait_js(page, "window.nwView.cy.nodes().length > 0")
        page.select_option("#run", "store")
        wait_js(page, "window.nwView.cy.nodes().length === 6")
        for use, raw in made.items():
            click_node(page, f"s:{use}")
            page.click("#panel a.link >> text=raw/out")
            wait_js(page, "document.querySelector('#panel h2')?.textContent === 'raw'")
            assert page.evaluate("window.nwView.state.selected") == f"s:{raw}", use


def test_switching_runs_shows_the_chosen_runs_step_not_the_previous_ones(page: Any, isolated: Path) -> None:  # noqa: F811
    cwd = Path.cwd()
    exp = cwd / "experiment.py"
    exp.write_text("from nixlib import output\nwork = output('echo first-attempt; exit 3', name='work')\n")
    assert nw("run", "experiment.py", cwd=cwd).returncode != 0
    exp.write_text("from nixlib import output\nwork = output('echo second-attempt > $out/x; echo second-attempt',"
                   " name='work')\nother = output(f'cat {work}/x > $out/y', name='other')\n")
    nw("run", "experiment.py", cwd=cwd, check=True)
    with served(page, cwd) as base:
        failed_run, ok_run = sorted(r["id"] for r in api(base + "api/runs") if r["id"] != "store")
        page.goto(base)
        wait_js(page, f"window.nwView.state.run?.id === {ok_run!r} && window.nwView.cy.nodes().length === 2")
        click_node(page, "s:work")
        wait_js(page, "document.querySelector('#panel pre.log')?.textContent.includes('second-attempt')")
        assert page.text_content("#panel .badge") == "done"
        page.select_option("#run", failed_run)
        wait_js(page, f"window.nwView.state.run.id === {failed_run!r} && window.nwView.cy.nodes().length === 1")
        wait_js(page, "document.querySelector('#panel .badge')?.textContent === 'failed'")  # the chosen run's step
        wait_js(page, "document.querySelector('#panel pre.log')?.textContent.includes('first-attempt')")
        assert "second-attempt" not in page.text_content("#panel")

        click_node(page, "s:work")
        page.select_option("#run", ok_run)
        wait_js(page, "document.querySelector('#panel .badge')?.textContent === 'done'")
        click_node(page, "s:other")  # a step the failed run does not have: its panel goes with its run
        wait_js(page, "document.querySelector('#panel h2')?.textContent === 'other'")
        page.select_option("#run", failed_run)
        wait_js(page, "document.querySelector('#panel h2') === null")
        assert page.evaluate("window.nwView.state.selected") is None

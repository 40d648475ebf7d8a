"""Chaos probe (wave 13): `nw run`, Snakemake and Luigi pipelines on one store at once, with `nw gc --min-age 0` and
`nw verify` looping beside them and random SIGKILL/SIGTERM/SIGINT to the front doors and their steps (the harness
lives in /tmp/chaos13, see /work/notes/chaos13.md). Regressions of what it found.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import REPO, nw

# ---- `nw verify` beside a run that is recording a result -----------------------------------------------------------

ONE_STEP = 'from nixlib import output\nresult = output("echo chaos13 > $out/v", name="result")\n'


def _make_store(tmp_path: Path) -> None:
    """A store holding one other step's result (verify refuses a store that does not exist yet)."""
    warm = tmp_path / "warm"
    warm.mkdir()
    (warm / "experiment.py").write_text('from nixlib import output\nwarm = output("echo warm > $out/v")\n')
    nw("run", "experiment.py", cwd=warm, check=True)


def _start(args: list[str], cwd: Path, pause: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), NIX_WORKFLOW_PAUSE=pause)
    return subprocess.Popen([sys.executable, "-m", "nixlib.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for(what: str, done, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert proc.poll() is None, f"{what}: the process ended first:\n{proc.communicate()[0]}"
        assert time.monotonic() < deadline, f"{what}: not reached in {timeout} s"
        time.sleep(0.02)


def _sleeping(pid: int) -> bool:
    """Whether the process's main thread sleeps in time.sleep (a nixlib.faults pause), not in a lock or a read."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "hrtimer_nanosleep"
    except OSError:
        return False


def test_verify_beside_a_run_recording_its_result_reports_no_missing_index_entry(tmp_path: Path,
                                                                                 store_root: Path) -> None:
    """A run paused between writing its realisation and its origins entry (it holds the key's lock): verify used to
    report "missing index entry" for it and exit 1 on a healthy store (and --repair wrote the entry for the run)."""
    (tmp_path / "experiment.py").write_text(ONE_STEP)
    _make_store(tmp_path)
    before = set((store_root / "realisations").glob("*.json"))
    run = _start(["run", "experiment.py"], tmp_path, "realisation-written:10")
    try:
        _wait_for("the run's realisation", lambda: set((store_root / "realisations").glob("*.json")) - before, run)
        v = nw("verify")
        assert run.poll() is None, "the run's pause ended before verify finished: the window was missed"
        assert "missing index entry" not in v.stdout + v.stderr, v.stdout + v.stderr
        assert v.returncode == 0, v.stdout + v.stderr
    finally:
        out = run.communicate(timeout=120)[0]
    assert run.returncode == 0, out
    after = nw("verify")
    assert after.returncode == 0 and "0 problem(s)" in after.stderr, after.stderr


def test_verify_repair_beside_a_run_never_removes_the_index_entries_it_just_wrote(tmp_path: Path,
                                                                                  store_root: Path) -> None:
    """verify read the realisations, then a run recorded a result (realisation, origins entry, recipes entry), then
    verify read the indexes: it called the run's fresh entries stale (exit 1), and --repair removed them."""
    (tmp_path / "experiment.py").write_text(ONE_STEP)
    _make_store(tmp_path)
    verify = _start(["verify", "--repair"], tmp_path, "verify-realisations-read:10")
    try:
        _wait_for("verify's pause after reading the realisations", lambda: _sleeping(verify.pid), verify)
        run = nw("run", "experiment.py", cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        assert verify.poll() is None, "verify's pause ended before the run finished: the window was missed"
    finally:
        out = verify.communicate(timeout=120)[0]
    assert "stale index entry" not in out and "removed" not in out, out
    assert verify.returncode == 0, out
    recipes = list((store_root / "recipes").glob("*.json"))
    origins = list((store_root / "origins").glob("*/*"))
    assert recipes and origins, (recipes, origins)
    again = nw("verify")
    assert again.returncode == 0 and "0 problem(s)" in again.stderr and "note" not in again.stderr, again.stderr
    served = nw("run", "experiment.py", cwd=tmp_path)
    assert served.returncode == 0 and "result: cached" in served.stdout + served.stderr, served.stdout + served.stderr


# ---- `nw log` of a failed step after another checkout ran the same recipe ------------------------------------------


def test_nw_log_of_a_failed_step_never_shows_a_later_run_of_the_same_recipe_from_another_checkout(
        tmp_path: Path) -> None:
    """Checkout a's run fails step s (a flag file outside the recipe); checkout b then runs the same recipe, which
    succeeds and rewrites logs/<key>.log. `nw log s` in a printed b's successful log as the failed run's (and
    `nw show s` named that file as the failure's log)."""
    flag = tmp_path / "FLAG"
    exp = (f'from nixlib import output\ns = output("echo attempt; if [ -e {flag} ]; then echo flagged-failure; '
           'exit 3; fi; echo good > $out/v", name="s")\n')
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "experiment.py").write_text(exp)
    flag.touch()
    failed = nw("run", "experiment.py", cwd=a)
    assert failed.returncode != 0 and "step 's' failed" in failed.stderr, failed.stdout + failed.stderr
    own = nw("log", "s", cwd=a)
    assert own.returncode == 0 and "flagged-failure" in own.stdout, own.stdout + own.stderr  # its own log, as before
    flag.unlink()
    nw("run", "experiment.py", cwd=b, check=True)

    log = nw("log", "s", cwd=a)
    text = log.stdout + log.stderr
    assert "attempt" not in log.stdout, f"a's failed step shows b's successful run's log:\n{text}"
    assert log.returncode != 0 and "rewritten since by a later run of the same recipe" in log.stderr, text
    assert "Traceback" not in text and "[Errno" not in text, text
    show = nw("show", "s", cwd=a)
    assert show.returncode == 0 and "status:       failed" in show.stdout, show.stdout + show.stderr
    assert "rewritten since by a later run of the same recipe" in show.stdout, show.stdout
    theirs = nw("log", "s", cwd=b, check=True).stdout  # b's own log is b's
    assert theirs.endswith("\nattempt\n") and "flagged-failure\n" not in theirs, theirs

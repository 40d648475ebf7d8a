"""Wave 17c of `nw run`: each step's output link (and so its GC root) is written as soon as the step finishes or is
served, not only when the whole run ends. Before, a long pipeline showed no result of its finished steps while it
ran, and a run killed before its end (SIGKILL, OOM, the machine going down; SIGHUP, closing the terminal, killed nw
at once) linked nothing: its temp roots died with it, and `nw gc` removed the finished steps' results, so the next
run did that work again. SIGHUP now stops a run as Ctrl-C and SIGTERM do."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import REPO, nw

_HEAD = "from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"


def _experiment(proj: Path, sig: Path, version: str) -> Path:
    """a (counts its runs in sig/a.runs), bad (fails), slow (depends on a; notes what a's output link shows when it
    starts, its process group, then waits for sig/go)."""
    exp = proj / "experiment.py"
    exp.write_text(_HEAD + f"SIG = {str(sig)!r}\n"
                   f"a = output(f'echo {version} > $out/a.txt; echo run >> {{SIG}}/a.runs')\n"
                   "bad = output('echo broken >&2; exit 3')\n"
                   "slow = output(f'cat {a}/a.txt > $out/b.txt; "
                   "(cat {HERE}/nix-workflow-output/a/a.txt || true) > {SIG}/seen; "
                   "echo $$ > {SIG}/pgid; touch {SIG}/started; while [ ! -e {SIG}/go ]; do sleep 0.1; done')\n")
    return exp


def _start(exp: Path, proj: Path, sig: Path, *more: str) -> subprocess.Popen[bytes]:
    for f in ("started", "seen", "pgid", "go"):
        (sig / f).unlink(missing_ok=True)
    err = open(sig / "stderr", "w")  # noqa: SIM115 - closed with the process (below)
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", "--keep-going", *more, str(exp)], cwd=proj,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    deadline = time.monotonic() + 120
    while not ((sig / "started").exists() and "nw: bad: FAILED" in (sig / "stderr").read_text()):
        assert proc.poll() is None, (sig / "stderr").read_text()
        assert time.monotonic() < deadline, (sig / "stderr").read_text()
        time.sleep(0.1)
    return proc


def _stop_orphan(sig: Path) -> None:
    """The waiting step of a SIGKILLed nw outlives it (its own process group, started by this test): stop it."""
    with contextlib.suppress(OSError, ValueError):
        pgid = int((sig / "pgid").read_text())
        if str(sig).encode() in Path(f"/proc/{pgid}/cmdline").read_bytes():  # (still that step, not a reused id)
            os.killpg(pgid, signal.SIGKILL)


def test_finished_steps_are_linked_while_the_run_goes_on_and_kept_after_it_is_killed(tmp_path: Path) -> None:
    proj, sig = tmp_path / "proj", tmp_path / "sig"
    proj.mkdir()
    sig.mkdir()
    links = proj / "nix-workflow-output"
    exp = _experiment(proj, sig, "v1")
    (sig / "go").touch()
    first = nw("run", "--keep-going", str(exp), cwd=proj)
    assert first.returncode == 1 and "step 'bad' failed" in first.stderr, first.stderr
    assert (links / "a" / "a.txt").read_text() == "v1\n"
    exp = _experiment(proj, sig, "v2")
    proc = _start(exp, proj, sig)
    try:
        # mid-run: a's new result is linked (the stale v1 link replaced) before slow started, which saw it there;
        # the failed step is not linked, and the running one still shows its previous result (before: a still showed
        # v1, and slow read v1 through it)
        assert (links / "a" / "a.txt").read_text() == "v2\n"
        assert (sig / "seen").read_text() == "v2\n"
        assert not os.path.lexists(links / "bad") and (links / "slow" / "b.txt").read_text() == "v1\n"
    finally:
        proc.kill()  # SIGKILL: no end-of-run linking
        proc.wait()
        _stop_orphan(sig)
    assert (links / "a" / "a.txt").read_text() == "v2\n"
    gc = nw("gc", "--min-age", "0", cwd=proj)  # (as if a had finished hours ago)
    assert gc.returncode == 0, gc.stderr
    # kept: the link is a GC root (before: not linked, its temp roots died with nw, and gc removed a's result)
    assert (links / "a" / "a.txt").read_text() == "v2\n"
    status = nw("status", "--json", str(exp), cwd=proj)
    assert status.returncode == 0, status.stderr
    assert {s["name"]: s["state"] for s in json.loads(status.stdout)}["a"] == "cached", status.stdout
    (sig / "go").touch()
    again = nw("run", "--keep-going", str(exp), cwd=proj)
    assert again.returncode == 1 and "nw: a: cached" in again.stderr, again.stderr
    assert (sig / "a.runs").read_text() == "run\nrun\n"  # v1 once, v2 once: not again after the kill
    assert (links / "slow" / "b.txt").read_text() == "v2\n"
    assert not os.path.lexists(links / "bad")


def test_an_interrupted_run_links_what_finished_on_sigint_sigterm_and_sighup(tmp_path: Path) -> None:
    """Ctrl-C and SIGTERM linked at the run's end already; SIGHUP (terminal closed) killed nw, linking nothing."""
    proj, sig = tmp_path / "proj", tmp_path / "sig"
    proj.mkdir()
    sig.mkdir()
    links = proj / "nix-workflow-output"
    for n, signum in enumerate((signal.SIGINT, signal.SIGTERM, signal.SIGHUP)):
        exp = _experiment(proj, sig, f"v{n}")
        proc = _start(exp, proj, sig, "--out-link", "res")
        try:
            assert (proj / "res" / "a" / "a.txt").read_text() == f"v{n}\n"  # mid-run, in the --out-link directory
            proc.send_signal(signum)
            assert proc.wait(timeout=60) == 130, (signum, (sig / "stderr").read_text())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            _stop_orphan(sig)
        said = (sig / "stderr").read_text()
        assert "Traceback" not in said and "nw: interrupted" in said, said
        assert (proj / "res" / "a" / "a.txt").read_text() == f"v{n}\n"
        assert not os.path.lexists(proj / "res" / "slow") and not os.path.lexists(proj / "res" / "bad")
        summary = json.loads((proj / "res" / ".nw-last-run.json").read_text())
        assert {k: summary[k]["status"] for k in ("a", "bad", "slow")} == {"a": "done", "bad": "failed",
                                                                           "slow": "interrupted"}, summary
    assert not links.exists()

"""`nw run experiment.py` end to end, through the real CLI in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, nw, tree_snapshot

SHOWCASE = REPO / "examples" / "showcase" / "experiment.py"
STEPS = 13  # steps that run (predict/eval_base_epoch2 use the checkpoint model_base publishes)
SERVED = STEPS + 1  # and model_base@epoch-2, counted as served once published


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def counted(count_file: Path, body: str) -> str:
    """A shell command that records each execution in `count_file` before doing `body`."""
    return f"echo ran >> {count_file}; {body}"


def runs(count_file: Path) -> int:
    return len(count_file.read_text().splitlines()) if count_file.exists() else 0


def test_showcase_runs_then_is_fully_cached(tmp_path: Path) -> None:
    first = nw("run", str(SHOWCASE), "-j", "2", check=True)
    assert f"done {STEPS} · cached 1" in first.stderr
    early = json.loads(Path("nix-workflow-output/eval_base_epoch2/metrics.json").read_text())
    assert early["n"] == 500  # model_base's epoch-2 checkpoint, evaluated
    comparison = json.loads(Path("nix-workflow-output/comparison/comparison.json").read_text())
    assert len(comparison["results"]) == 3 and all(r["n"] == 500 for r in comparison["results"])
    data = Path("nix-workflow-output/dataset/data.csv").read_text().splitlines()
    assert len(data) == 501
    second = nw("run", str(SHOWCASE), check=True)
    assert f"cached {SERVED}" in second.stderr and "done 0" in second.stderr
    assert "[dataset]" not in second.stdout  # nothing executed, so no step printed anything


def test_swapping_option_order_reruns_nothing(tmp_path: Path) -> None:
    count = tmp_path / "count"
    exp = tmp_path / "exp.py"
    step = "output('{}')".format(counted(count, "echo $0 > $out/args; true --lr=0.1 --epochs=5"))
    write(exp, f"from nixlib import output\nmodel = {step}\n")
    nw("run", str(exp), check=True)
    write(exp, exp.read_text().replace("--lr=0.1 --epochs=5", "--epochs=5 --lr=0.1"))
    second = nw("run", str(exp), check=True)
    assert runs(count) == 1
    assert "cached 1" in second.stderr
    write(exp, exp.read_text().replace("--lr=0.1", "--lr=0.2"))
    nw("run", str(exp), check=True)
    assert runs(count) == 2  # a real change does re-run


def test_identical_upstream_bytes_cut_off_downstream(tmp_path: Path) -> None:
    up, down = tmp_path / "up", tmp_path / "down"
    exp = tmp_path / "exp.py"
    template = """from nixlib import output
data = output('{up_cmd}')
model = output(f'{down_cmd}')
"""
    down_cmd = counted(down, "cat {data}/x > $out/y")
    write(exp, template.format(up_cmd=counted(up, "echo hello > $out/x"), down_cmd=down_cmd))
    nw("run", str(exp), check=True)
    # a different command that writes byte-identical output
    write(exp, template.format(up_cmd=counted(up, "echo hello | cat > $out/x"), down_cmd=down_cmd))
    second = nw("run", str(exp), check=True)
    assert (runs(up), runs(down)) == (2, 1), second.stderr
    assert Path("nix-workflow-output/model/y").read_text() == "hello\n"


def test_two_concurrent_runs_execute_each_step_once(tmp_path: Path) -> None:
    count = tmp_path / "count"
    exp = tmp_path / "exp.py"
    steps = "\n".join(f"s{i} = output('{counted(count, f'sleep 0.3; echo {i} > $out/v')}')" for i in range(4))
    write(exp, f"from nixlib import output\n{steps}\n"
               f"total = output(f'cat {{s0}}/v {{s1}}/v {{s2}}/v {{s3}}/v > $out/all; echo ran >> {count}')\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp), "-j", "4", "-q"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(count.read_text().split()) == ["ran"] * 5


def _wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_steps_and_leaves_store_unchanged(tmp_path: Path, store_root: Path, sig: int) -> None:
    started = tmp_path / "started"
    exp = tmp_path / "exp.py"
    write(exp, f"from nixlib import output\nquick = output('echo q > $out/q')\n"
               f"slow = output('echo $$ > {started}; echo partial > $out/p; sleep 60; echo done > $out/d')\n")
    nw("run", str(exp), "quick", check=True)
    before = tree_snapshot(store_root)
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    _wait_for(started)
    time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    pid = int(started.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the step's shell was stopped with its group
    after = {k: v for k, v in tree_snapshot(store_root).items() if not k.startswith(("logs", "state"))}
    assert after == {k: v for k, v in before.items() if not k.startswith(("logs", "state"))}
    assert not list((store_root / "tmp").iterdir())


def test_kill_9_leaves_nothing_served_and_next_run_completes(tmp_path: Path, store_root: Path) -> None:
    started, gate = tmp_path / "started", tmp_path / "gate"  # (the step ends only once the test opens the gate)
    exp = tmp_path / "exp.py"
    write(exp, f"from nixlib import output\nslow = output('touch {started}; echo partial > $out/p; "
               f"until [ -e {gate} ]; do sleep 0.1; done; echo done > $out/d')\n")
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)))
    _wait_for(started)
    proc.kill()
    proc.wait()
    assert not list((store_root / "store").iterdir())
    assert not list((store_root / "realisations").iterdir())
    gate.touch()
    nw("run", str(exp), check=True)
    assert Path("nix-workflow-output/slow/d").read_text() == "done\n"
    assert Path("nix-workflow-output/slow/p").read_text() == "partial\n"


def test_failure_stops_dependants_but_not_independent_steps(tmp_path: Path, store_root: Path) -> None:
    exp = tmp_path / "exp.py"
    write(exp, "from nixlib import output\n"
               "bad = output('echo about to fail; exit 3')\n"
               "after_bad = output(f'cat {bad}/x > $out/y')\n"
               "good = output('sleep 0.5; echo ok > $out/ok')\n")
    proc = nw("run", str(exp), "-j", "2")
    assert proc.returncode == 1
    assert "step 'bad' failed: command exited with status 3" in proc.stderr
    assert "after_bad" in proc.stderr and "skipped" in proc.stderr
    assert Path("nix-workflow-output/good/ok").exists()
    assert not Path("nix-workflow-output/bad").exists()
    log = nw("log", "bad", check=True)
    assert "about to fail" in log.stdout
    assert len(list((store_root / "realisations").iterdir())) == 1  # only `good`


def test_keep_going_runs_everything_it_still_can(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    write(exp, "from nixlib import output\n"
               "bad = output('exit 1')\n"
               "a = output('echo a > $out/a')\n"
               "b = output(f'cat {a}/a > $out/b')\n")
    without = nw("run", str(exp), "-j", "1")
    assert without.returncode == 1 and not Path("nix-workflow-output/b").exists()
    with_k = nw("run", str(exp), "-j", "1", "--keep-going")
    assert with_k.returncode == 1
    assert Path("nix-workflow-output/b/b").read_text() == "a\n"


def test_targets_run_only_what_they_need(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    write(exp, "from nixlib import output\n"
               "a = output('echo a > $out/a')\n"
               "b = output(f'cat {a}/a > $out/b')\n"
               "c = output('echo c > $out/c')\n")
    nw("run", str(exp), "b", check=True)
    assert Path("nix-workflow-output/b/b").exists() and not Path("nix-workflow-output/c").exists()
    bad = nw("run", str(exp), "nope")
    assert bad.returncode == 1 and "no step named 'nope'" in bad.stderr and "a, b, c" in bad.stderr


def test_pinned_hash_serves_object_without_running(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    write(exp, "from nixlib import output\nm = output('echo trained > $out/model')\n")
    nw("run", str(exp), check=True)
    h = os.readlink("nix-workflow-output/m").rsplit("/", 1)[1]
    write(exp, f"from nixlib import output\nm = output('exit 1', hash='{h}')\n"
               "use = output(f'cat {m}/model > $out/copy')\n")
    nw("run", str(exp), check=True)
    assert Path("nix-workflow-output/use/copy").read_text() == "trained\n"


BAD_INPUTS = {
    "duplicate names": ("from nixlib import output\na = output('echo 1', name='x')\nb = output('echo 2', name='x')\n",
                        "two different steps are named 'x'"),
    "unknown placeholder": ("import os\nfrom nixlib import output\n"
                            "a = output('cat ' + os.environ['NIX_WORKFLOW_STORE'] + "
                            "'/store/0123456789abcdfghijklmnpqrsvwxyz-ghost/x')\n",
                            "step 'a'"),
    "missing static": ("from nixlib import output, static\nd = static('no-such-file.csv')\n"
                       "a = output(f'cat {d}')\n", "no-such-file.csv does not exist"),
    "absent pinned hash": ("from nixlib import output\n"
                           "a = output('exit 1', hash='0qgahv652jm7czy0qjzp5wzkk5dm8ykfj7vwbyqw2390dgmnglr6')\n",
                           "step 'a' is pinned to object 0qgahv652jm7czy0qjzp5wzkk5dm8ykfj7vwbyqw2390dgmnglr6"),
    "static hash mismatch": ("from pathlib import Path\nfrom nixlib import output, static\n"
                             "Path('d.csv').write_text('x')\n"
                             "d = static(Path.cwd() / 'd.csv', "
                             "hash='0qgahv652jm7czy0qjzp5wzkk5dm8ykfj7vwbyqw2390dgmnglr6')\n",
                             "pins 0qgahv652jm7czy0qjzp5wzkk5dm8ykfj7vwbyqw2390dgmnglr6"),
    "unterminated quote": ("from nixlib import output\nok = output('echo fine')\nbroken = output('echo \"oops')\n",
                           "step 'broken'"),
    "python error": ("from nixlib import output\na = output('echo 1')\nraise RuntimeError('boom')\n",
                     "exp.py:3: evaluating the experiment failed: RuntimeError: boom"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_clear_error_and_store_is_unchanged(tmp_path: Path, store_root: Path, case: str) -> None:
    source, message = BAD_INPUTS[case]
    nw("run", str(write(tmp_path / "warm.py", "from nixlib import output\nw = output('echo w > $out/w')\n")),
       check=True)
    before = tree_snapshot(store_root)
    proc = nw("run", str(write(tmp_path / "exp.py", source)))
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    after = {k: v for k, v in tree_snapshot(store_root).items() if not k.startswith("logs")}
    assert after == {k: v for k, v in before.items() if not k.startswith("logs")}


def test_unwritable_store_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = write(tmp_path / "a-file", "")
    proc = nw("--store", str(blocker / "store"), "run", str(SHOWCASE))
    assert proc.returncode == 1
    assert f"cannot use {blocker / 'store'} as the store: it lies under {blocker}, which is a file" in proc.stderr
    assert "sudo mkdir" not in proc.stderr  # (it was advised: it cannot work beneath a file)


def test_steps_run_as_written_while_keys_ignore_option_order(tmp_path: Path) -> None:
    # `-version` would be a sorted "bundle" in the canonical form; the step must still see it as written
    exp = tmp_path / "exp.py"
    write(exp, "from nixlib import output\na = output('''\n  sh -c 'echo \"$@\" > $out/args' sh -version\n"
               "    --z=1 --a=2\n''')\n")
    nw("run", str(exp), check=True)
    assert Path("nix-workflow-output/a/args").read_text() == "-version --z=1 --a=2\n"


def test_a_chain_deeper_than_the_recursion_limit_runs_and_is_collected(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"  # the limit is lowered for the whole `nw` process to keep the chain short
    write(exp, "import sys\nfrom nixlib import output\nsys.setrecursionlimit(250)\n"
               "prev = output('echo 0 > $out/v')\n"
               "for i in range(1, 400):\n"
               "    prev = output(f'cat {prev}/v > $out/v; echo {i} >> $out/v', name=f's{i}')\n"
               "last = prev\n")
    nw("run", str(exp), "-q", timeout=600, check=True)
    assert "cached 400" in nw("run", str(exp), "-q", check=True).stderr
    assert Path("nix-workflow-output/s399/v").read_text().split() == [str(i) for i in range(400)]
    assert "deeper levels not shown" in nw("lineage", "s399", "--depth", "3", check=True).stdout
    assert "removed 0 path(s)" in nw("gc", check=True).stderr


def test_resumable_step_keeps_its_state_across_a_failure(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    write(exp, "from nixlib import output\n"
               "train = output('''\n"
               "  if [ -f $state/epoch1 ]; then cp $state/epoch1 $out/model\n"
               "  else echo ckpt > $state/epoch1; exit 1; fi\n"
               "''', resumable=True)\n"
               "plain = output('test -z \"${state:-}\" && echo no-state > $out/s')\n")
    first = nw("run", str(exp), "-k")
    assert first.returncode == 1 and "step 'train' failed" in first.stderr
    assert Path("nix-workflow-output/plain/s").read_text() == "no-state\n"
    nw("run", str(exp), check=True)  # resumes from its checkpoint instead of starting over
    assert Path("nix-workflow-output/train/model").read_text() == "ckpt\n"


def test_progress_counts_a_started_step_that_ends_cached_as_no_longer_running() -> None:
    """A step can start, wait for its key's lock and then be served (another process realised it meanwhile)."""
    from nixlib.recipe import Recipe
    from nixlib.runs import Progress

    progress, a, b = Progress(2, quiet=True), Recipe("a", "true"), Recipe("b", "true")
    progress.event("start", a, None)
    progress.event("start", b, None)
    progress.event("cached", a, None)
    assert progress.counts["running"] == 1 and progress.counts["cached"] == 1
    progress.event("failed", b, RuntimeError("boom"))
    assert progress.counts["running"] == 0 and progress.counts["failed"] == 1


def test_a_cached_rerun_leaves_right_links_alone_and_repoints_wrong_ones(tmp_path: Path) -> None:
    """A link already pointing at the step's result is not rewritten (same inode: a cached re-run of many
    steps writes nothing per step); a link pointing elsewhere, e.g. at a result an edit produced, is
    repointed; a deleted one is recreated."""
    exp = write(tmp_path / "exp.py", "from nixlib import output\na = output('echo a > $out/v', name='a')\n"
                "b = output('echo b > $out/v', name='b')\n")
    nw("run", str(exp), check=True)
    a, b = Path("nix-workflow-output/a"), Path("nix-workflow-output/b")
    a_inode, b_target = os.lstat(a).st_ino, os.readlink(b)
    os.remove(b)
    os.symlink(os.readlink(a), b)  # b now points at a's result
    nw("run", str(exp), check=True)
    assert os.lstat(a).st_ino == a_inode
    assert os.readlink(b) == b_target and (b / "v").read_text() == "b\n"
    os.remove(a)
    nw("run", str(exp), check=True)
    assert (a / "v").read_text() == "a\n"


def test_interrupt_keeps_what_finished_linked_and_the_stopped_steps_log(tmp_path: Path, store_root: Path) -> None:
    """Ctrl-C after some steps finished: they are linked (roots `nw gc` keeps) and recorded, and `nw log` shows
    the stopped step's log. Before, an interrupted run linked and recorded nothing, so `nw log slow` said 'no
    step named slow' and the finished results were left unrooted."""
    started = tmp_path / "started"
    exp = tmp_path / "exp.py"
    write(exp, f"from nixlib import output\nquick = output('echo q > $out/q')\n"
               f"slow = output('echo partial-progress; echo {{quick}} > /dev/null; touch {started}; sleep 60; "
               f"echo d > $out/d'.format(quick=quick))\n")
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    _wait_for(started)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    out = tmp_path / "nix-workflow-output"
    assert (out / "quick" / "q").read_text() == "q\n" and not (out / "slow").exists()
    log = nw("log", "slow", cwd=tmp_path)
    assert log.returncode == 0 and "partial-progress" in log.stdout, log.stderr
    show = nw("show", "slow", cwd=tmp_path)
    assert "interrupted" in show.stdout + show.stderr, show.stdout + show.stderr
    gc = nw("gc", "--min-age", "0", cwd=tmp_path)
    assert gc.returncode == 0 and (out / "quick" / "q").read_text() == "q\n"

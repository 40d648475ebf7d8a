"""Wave 11 probe: a new user following README.md and docs/ literally. Each test failed before its fix."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.helpers import nw
from tests.nixcheck import require_nix


def _remove_object(path: Path) -> None:
    """Take a store object away behind the store's back (as a quarantine does), as its owner may."""
    for d, dirs, _files in os.walk(path):
        os.chmod(d, 0o755)
        for name in dirs:
            os.chmod(os.path.join(d, name), 0o755)
    shutil.rmtree(path)


def test_verify_summary_does_not_call_own_stale_entries_untrusted(store_root: Path, tmp_path: Path) -> None:
    """`nw verify` on a single-user store whose object went missing listed the stale origins entry as a
    `note:` and ended with "ignored 1 entry(ies) of untrusted users", although no other user ever wrote
    to the store: the summary counted its own harmless notes as other users' entries."""
    work = tmp_path / "work"
    (work / "experiment.py").write_text('from nixlib import output\ngood = output("echo hi > $out/a")\n')
    nw("run", "experiment.py", cwd=work, check=True)
    obj = (work / "nix-workflow-output" / "good").resolve()
    assert obj.parent == store_root / "store"
    _remove_object(obj)

    proc = nw("verify", cwd=work)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the dangling record is a problem
    assert "note: stale index entry" in proc.stdout
    assert "untrusted" not in proc.stdout + proc.stderr, proc.stderr
    assert "1 note(s)" in proc.stderr, proc.stderr


def test_env_relative_file_run_from_elsewhere_is_named_with_the_way_out(tmp_path: Path) -> None:
    """README's `tools = Env(file="nix/default.nix")` beside `static("data/raw.csv")`: static() is relative to the
    experiment file, an Env's path to the current directory. `nw run proj/experiment.py` from the parent failed
    with Nix's bare "getting status of '…/nix/default.nix'", not saying why nor how to run it from anywhere."""
    require_nix("nix-instantiate")
    proj = tmp_path / "work" / "proj"
    (proj / "nix").mkdir(parents=True)
    (proj / "nix" / "default.nix").write_text(
        "{ system ? builtins.currentSystem }: { hello = builtins.derivation { name = \"hello\"; inherit system;"
        " builder = \"/bin/sh\"; args = [ \"-c\" \"echo hi > $out\" ]; }; }\n")
    (proj / "experiment.py").write_text(
        "from nixlib import Env, output\n"
        "tools = Env(file=\"nix/default.nix\")\n"
        "a = output(f\"cat {tools['hello']} > $out/x\")\n")
    proc = nw("run", "proj/experiment.py", cwd=tmp_path / "work")
    assert proc.returncode == 1
    err = proc.stderr
    assert "Traceback" not in err and "getting status" not in err, err
    assert f"{tmp_path / 'work' / 'nix' / 'default.nix'} does not exist" in err, err
    assert "current directory" in err and "Path(__file__).parent / 'nix/default.nix'" in err, err
    assert str(proj / "nix" / "default.nix") in err, err
    # from the experiment's directory the same file runs
    nw("run", "experiment.py", cwd=proj, check=True)
    assert (proj / "nix-workflow-output" / "a" / "x").read_text() == "hi\n"

"""The `nw` command.

Imports are deferred into each subcommand so `nw --help` starts fast and no front door
pays for another's dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from nixlib.errors import Interrupted, NixWorkflowError

EPILOG = """\
examples:
  nw run experiment.py                 run every module-level step (cached steps are not re-run)
  nw run experiment.nix model_base -j4 run one step and what it needs, 4 steps at a time
  nw show model_base                   recipe, command, env, inputs and timings of a step
  nw lineage results/model.json        where a file came from, down to static inputs
  nw gc --dry-run                      what garbage collection would remove

The store is /nix-workflow unless NIX_WORKFLOW_STORE or --store says otherwise; create a
shared one once with `sudo mkdir -m 1777 -p /nix-workflow`.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nw", description="Run pipelines with Nix-pinned runtimes, lineage and "
                                "content-addressed caching.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", metavar="DIR", help="store root (default: $NIX_WORKFLOW_STORE or /nix-workflow)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run an experiment.py or experiment.nix",
                         description="Evaluate the experiment, then realise its steps (or only TARGETs and what "
                         "they need). Steps already in the store are served, not re-run. Each named step's output "
                         "is linked at ./nix-workflow-output/NAME and kept by `nw gc`.")
    run.add_argument("file", help="experiment.py or experiment.nix")
    run.add_argument("targets", nargs="*", metavar="TARGET", help="step names (default: every top-level step)")
    run.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="steps run at once (default: cores)")
    run.add_argument("-k", "--keep-going", action="store_true", help="after a failure, still run every step "
                     "that does not depend on it")
    run.add_argument("--out-link", default="nix-workflow-output", metavar="DIR",
                     help="directory of output links (default: ./nix-workflow-output)")
    run.add_argument("-q", "--quiet", action="store_true",
                     help="print only failures and the final summary (step output is still logged)")
    run.add_argument("--allow-unpinned", action="store_true", help="accept unpinned Nix sources (<nixpkgs>, "
                     "URLs without sha256) in envs; the run is then not reproducible")
    run.add_argument("--store", dest="store_sub", metavar="DIR", help=argparse.SUPPRESS)

    h = sub.add_parser("hash", help="print the Nix base32 SHA-256 of a path's NAR (as nix-hash --type sha256 --base32)")
    h.add_argument("paths", nargs="+", metavar="PATH")

    for name, text in (("show", "show a step's recipe, command, env, inputs and timings"),
                       ("lineage", "show the upstream tree a step or file came from"),
                       ("log", "print the log of a step's last run")):
        q = sub.add_parser(name, help=text, description=text + ". WHAT is a step name from the last `nw run` "
                           "here, a path under ./nix-workflow-output/, a file a step produced, or a key.")
        q.add_argument("what", metavar="NAME|PATH")
        q.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "lineage":
            q.add_argument("--depth", type=int, default=50, help="levels of upstream steps to show (default 50)")
        q.add_argument("--out-link", default="nix-workflow-output", metavar="DIR", help=argparse.SUPPRESS)
        q.add_argument("--store", dest="store_sub", metavar="DIR", help=argparse.SUPPRESS)

    gc = sub.add_parser("gc", help="remove what no root (output link) keeps",
                        description="Remove objects, records and logs that no output link keeps alive. A kept "
                        "output keeps its whole lineage.")
    gc.add_argument("-n", "--dry-run", action="store_true", help="only list what would be removed")
    gc.add_argument("--min-age", type=float, default=3600, metavar="SECONDS",
                    help="keep objects and records younger than this, as a pipeline still running has not linked "
                    "its outputs yet (default: 3600)")
    gc.add_argument("--store", dest="store_sub", metavar="DIR", help=argparse.SUPPRESS)
    v = sub.add_parser("verify", help="re-hash every object; quarantine any that does not match its name")
    v.add_argument("--store", dest="store_sub", metavar="DIR", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    store_dir = getattr(args, "store_sub", None) or args.store
    if store_dir:
        os.environ["NIX_WORKFLOW_STORE"] = str(Path(store_dir).absolute())
    try:
        return COMMANDS[args.cmd](args)
    except Interrupted as e:
        print(f"nw: {e}", file=sys.stderr)
        return 130
    except NixWorkflowError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nw: interrupted", file=sys.stderr)
        return 130


def _store() -> Any:
    from nixlib.store import Store

    return Store()


def cmd_hash(args: argparse.Namespace) -> int:
    from nixlib import nar

    for p in args.paths:
        if not os.path.lexists(p):
            raise NixWorkflowError(f"cannot hash {p}: no such file or directory")
        print(nar.nar_hash(p))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise NixWorkflowError("-j/--jobs must be at least 1")
    if args.allow_unpinned:
        os.environ["NIX_WORKFLOW_ALLOW_UNPINNED"] = "1"
    store = _store()
    path = Path(args.file)
    if path.suffix == ".nix":
        from nixlib.nixfront import load
    else:
        from nixlib.dsl import load
    workflow = load(path)
    targets = workflow.select(args.targets)
    if workflow.host_steps:
        print(f"warning: {len(workflow.host_steps)} step(s) run with the host environment, not pinned by Nix: "
              f"{', '.join(workflow.host_steps[:8])}{' …' if len(workflow.host_steps) > 8 else ''}", file=sys.stderr)
    from nixlib.runs import run_workflow

    _term_as_interrupt()
    return run_workflow(store, workflow, targets, args)


def _term_as_interrupt() -> None:
    """SIGTERM stops a run exactly like Ctrl-C."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _record(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from nixlib.lineage import find_record

    store = _store()
    return store, find_record(store, args.what, Path(args.out_link))


def cmd_show(args: argparse.Namespace) -> int:
    store, doc = _record(args)
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    env = doc["env"]
    lines = [
        f"step:         {doc['name']}",
        *[f"output {k}:{' ' * max(1, 6 - len(k))}{store.object_path(h)}" for k, h in doc["outputs"].items()],
        f"recipe key:   {doc['recipe_key']}",
        f"resolved key: {doc['resolved_key']}",
        f"command:      {doc['command']}",
        f"env:          {_env_text(env)}",
        *[f"  {p}" for p in env.get("paths", [])],
        "inputs:" if doc["inputs"] or doc.get("files") else "inputs:       none",
        *[f"  {i.get('step') or 'static'}: {store.object_path(i['object'])}" for i in doc["inputs"]],
        *[f"  {name}: {h}" for name, h in doc.get("files", {}).items()],
        f"ran:          {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(doc['start']))} for "
        f"{doc['duration']:.3f} s on {doc['host']} as {doc['user']} (exit {doc['exit']}, {doc['tool']})",
        f"log:          {doc['log']}",
    ]
    if doc.get("provenance"):
        lines.append(f"provenance:   {json.dumps(doc['provenance'], sort_keys=True)}")
    print("\n".join(lines))
    return 0


def _env_text(env: dict[str, Any]) -> str:
    ident = env["identity"]
    if ident.get("kind") == "host":
        return "host (not pinned: the host's PATH and tools)"
    if ident.get("kind") == "nix":  # the derivations (identity); the realised paths follow, one per line
        return "pinned by Nix: " + " ".join(ident.get("drvs", []) + ident.get("paths", []))
    return json.dumps(ident, sort_keys=True)


def cmd_lineage(args: argparse.Namespace) -> int:
    from nixlib.lineage import render, tree

    store, doc = _record(args)
    node = tree(store, doc, depth=args.depth)
    print(json.dumps(node, indent=2) if args.json else "\n".join(render(store, node)))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from nixlib.lineage import last_run

    entry = last_run(Path(args.out_link)).get(args.what)
    if entry and entry.get("log") and os.path.exists(entry["log"]):
        log = entry["log"]
    else:
        _, doc = _record(args)
        log = doc["log"]
    try:
        sys.stdout.write(Path(log).read_text(errors="replace"))
    except FileNotFoundError:
        raise NixWorkflowError(f"the log of '{args.what}' ({log}) is gone (removed by `nw gc`?)") from None
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from nixlib import gc

    p = gc.collect(_store(), dry_run=args.dry_run, min_age=args.min_age)
    verb = "would remove" if args.dry_run else "removed"
    for path in p.remove:
        print(f"{verb} {path}")
    print(f"{verb} {len(p.remove)} path(s); kept {len(p.keep_objects)} object(s) and "
          f"{len(p.keep_records)} realisation(s)", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from nixlib import gc

    checked, bad = gc.verify(_store())
    for h, actual, moved in bad:
        print(f"corrupt: {h} hashes to {actual}; moved to {moved}")
    print(f"checked {checked} object(s), {len(bad)} corrupt", file=sys.stderr)
    return 1 if bad else 0


COMMANDS = {"run": cmd_run, "hash": cmd_hash, "show": cmd_show, "lineage": cmd_lineage, "log": cmd_log,
            "gc": cmd_gc, "verify": cmd_verify}

if __name__ == "__main__":
    sys.exit(main())

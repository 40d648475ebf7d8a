"""The `nw` command.

Imports are deferred into each subcommand so `nw --help` starts fast and no front door
pays for another's dependencies.
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C while the `nw` script is still importing this module: a KeyboardInterrupt there comes out as a
    traceback (main's handler is not on the stack yet); one line and exit status 130, as main reports it."""
    os.write(2, b"nw: interrupted\n")
    os._exit(130)


# Only as the `nw` script or `python -m nixlib.cli` (never in a process that merely imports nixlib.cli, such as a
# test run); main() puts Python's own handler back first thing.
if (__name__ == "__main__" or os.path.basename(getattr(sys.modules.get("__main__"), "__file__", None) or "") == "nw") \
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import argparse  # noqa: E402 - after the handler above: an interrupt during these imports is one line
import json  # noqa: E402
import math  # noqa: E402
import select  # noqa: E402
import shlex  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from nixlib import arguments  # noqa: E402
from nixlib.errors import Interrupted, NixWorkflowError  # noqa: E402

# The commands that evaluate an experiment: they take its arguments (--arg, --argstr, and the words after `--`).
EXPERIMENT_COMMANDS = frozenset({"run", "dag", "status", "why", "pin", "checkpoints", "pull"})

EPILOG = """\
examples:
  nw run experiment.py                 run every module-level step (cached steps are not re-run)
  nw run experiment.nix model_base -j4 run one step and what it needs, 4 steps at a time
  nw show model_base                   recipe, command, env, inputs and timings of a step
  nw lineage results/model.json        where a file came from, down to static inputs
  nw gc --dry-run                      what garbage collection would remove

The store is /nix-workflow unless NIX_WORKFLOW_STORE or --store says otherwise; create a
shared one once with `sudo mkdir -m 1777 -p /nix-workflow`.

exit status: 0 success; 1 an error, printed as one paragraph (a step failed, a bad input); 2 bad
arguments; 130 interrupted (Ctrl-C or SIGTERM: running steps are stopped, nothing partial is stored);
70 a bug in nw (printed with its traceback).
"""

# Which store a command uses, for the --help of the commands that write one (`nw run`, `nw gc`).
STORE_HELP = ("The store is --store DIR (before or after the command), else $NIX_WORKFLOW_STORE, else "
              "/nix-workflow; `nw run` creates it on first use.")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nw", description="Run pipelines with Nix-pinned runtimes, lineage and "
                                "content-addressed caching.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", metavar="DIR", help="store root (default: $NIX_WORKFLOW_STORE or /nix-workflow)")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run an experiment.py or experiment.nix",
                         description="Evaluate the experiment, then realise its steps (or only TARGETs and what "
                         "they need). Steps already in the store are served, not re-run. Each named step's output "
                         "is linked at ./nix-workflow-output/NAME and kept by `nw gc`. " + STORE_HELP)
    run.add_argument("file", help="experiment.py or experiment.nix")
    run.add_argument("targets", nargs="*", default=[], metavar="TARGET",
                     help="step names, or a group's (models: every models.* step); default: every top-level step")
    run.add_argument("-j", "--jobs", type=_at_least_one, default=os.cpu_count() or 1,
                     help="steps run at once (default: cores)")
    run.add_argument("-k", "--keep-going", action="store_true", help="after a failure, still run every step "
                     "that does not depend on it")
    run.add_argument("--out-link", default="nix-workflow-output", metavar="DIR",
                     help="directory of output links (default: ./nix-workflow-output)")
    run.add_argument("-q", "--quiet", action="store_true",
                     help="print only failures and the final summary (step output is still logged)")
    run.add_argument("--allow-unpinned", action="store_true", help="accept unpinned Nix sources (<nixpkgs>, "
                     "URLs without sha256) in envs; the run is then not reproducible")
    run.add_argument("-n", "--dry-run", action="store_true", help="only say which steps would run, which are "
                     "cached and which are pinned; nothing runs and the store is unchanged")
    run.add_argument("--force", action="store_true", help="run the TARGETs even if they are cached (their upstream "
                     "steps are served as usual); the new realisation replaces the old one, and a different result "
                     "for the identical recipe is reported as non-determinism")
    run.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON")
    run.add_argument("-K", "--keep-failed", action="store_true", help="keep a failed step's build directory (its "
                     "$out as the step left it) under <store>/failed/ and print its path; never served, removed by "
                     "`nw gc` once older than --min-age")
    run.add_argument("--store", dest="store_sub", metavar="DIR", help=argparse.SUPPRESS)
    arguments.add_options(run)
    from nixlib import remotecli  # the remote cache's options and commands (docs/remote.md)

    remotecli.add_run_options(run)
    from nixlib import slurm  # `--slurm`: cache misses as Slurm jobs (docs/slurm.md)

    slurm.add_run_options(run)
    remotecli.add_parsers(sub)
    run.epilog = ("examples:\n  nw run -n experiment.py              what would run, what is cached, what is pinned\n"
                  "  nw run --force experiment.py fit     run step fit again although it is cached\n"
                  "  nw run experiment.nix --arg lr 0.01  call the experiment (a function) with lr = 0.01\n"
                  "  nw run experiment.py -- --lr 0.01    evaluate experiment.py with sys.argv[1:] = ['--lr', '0.01']")
    run.formatter_class = argparse.RawDescriptionHelpFormatter
    _query_parsers(sub)

    cp = sub.add_parser("checkpoints", help="list the checkpoints a step published (docs/resume.md)",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_examples(
                            ("nw checkpoints model_base", "name, object and path of each, oldest first"),
                            ("nw checkpoints model -f experiment.nix", "a step of another experiment file")),
                        description="List the checkpoints STEP published for its current inputs (name, object, "
                        "path), oldest first, whether or not the step has finished. Nothing runs.")
    cp.add_argument("step", metavar="STEP")
    cp.add_argument("-f", "--file", help="experiment file (default: the one the last `nw run` here ran)")
    cp.add_argument("--out-link", default="nix-workflow-output", metavar="DIR",
                    help="directory of output links and of the last-run summary (default: ./nix-workflow-output)")
    arguments.add_options(cp)
    cp.add_argument("--store", dest="store_sub", metavar="DIR", help=argparse.SUPPRESS)
    pin = sub.add_parser("pin", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_examples(
                         ("nw pin model_base", "the hash, and the line locking the step's output"),
                         ("nw pin model_base --checkpoint epoch-2", "the same for one of its checkpoints")),
                         help="print the object a step (or one checkpoint) realised to, and the line locking "
                         "it in the experiment file", description="Print the object hash of STEP's output (or of its "
                         "checkpoint NAME) for its current inputs on stdout, and on stderr the line that locks it in "
                         "the experiment file: a step or checkpoint with that hash is served as is, never run. "
                         "Nothing runs.")
    pin.add_argument("step", metavar="STEP")
    pin.add_argument("--checkpoint", metavar="NAME", help="pin checkpoint NAME of STEP instead of its output")
    pin.add_argument("-f", "--file", help="experiment file (default: the one the last `nw run` here ran)")
    pin.add_argument("--out-link", default="nix-workflow-output", metavar="DIR",
                     help="directory of output links and of the last-run summary (default: ./nix-workflow-output)")
    arguments.add_options(pin)
    pin.add_argument("--store", dest="store_sub", metavar="DIR", help=argparse.SUPPRESS)
    h = sub.add_parser("hash", help="print the Nix base32 SHA-256 of a path's NAR (as nix-hash --type sha256 --base32)",
                       description="Print the Nix base32 SHA-256 of each PATH's NAR serialisation, as `nix-hash "
                       "--type sha256 --base32 PATH` prints it: the hash a static input is pinned by and a store "
                       "object is named by. A directory hashes as a whole; a FIFO, socket or device is refused. "
                       "Nothing is stored.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_examples(
                           ("nw hash data.csv", "the hash to pin: static { path = ./data.csv; hash = \"…\"; }"),
                           ("nw hash data/ model.json", "one line per path (a directory hashes as a whole)")))
    h.add_argument("paths", nargs="+", metavar="PATH")

    for name, text in (("show", "show a step's recipe, command, env, inputs and timings"),
                       ("lineage", "show the upstream tree a step or file came from"),
                       ("log", "print the log of a step's last run")):
        q = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ". NAME|PATH is a step name "
                           "from the last `nw run` here, a Luigi task_id (or family with one task) of the last Luigi "
                           "run here, a path under ./nix-workflow-output/, a file a step produced, or a key.",
                           epilog=_examples(*_QUERY_EXAMPLES[name]),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        q.add_argument("what", metavar="NAME|PATH")
        q.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "lineage":
            q.add_argument("--depth", type=_not_negative, default=50,
                           help="levels of upstream steps to show (default 50)")
        q.add_argument("--out-link", default="nix-workflow-output", metavar="DIR",
                       help="directory of output links and of the last-run summary, as given to `nw run --out-link` "
                       "(default: ./nix-workflow-output)")
        q.add_argument("--store", dest="store_sub", metavar="DIR", help=argparse.SUPPRESS)

    gc = sub.add_parser("gc", help="remove what no root (output link) keeps",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_examples(
                            ("nw gc --dry-run", "list what would be removed; nothing is"),
                            ("nw gc --min-age 0", "also remove what is unkept but recent (running pipelines are "
                             "still safe)")),
                        description="Remove objects, records and logs that no output link keeps alive, and the "
                        "leftovers of dead processes. A kept output keeps its whole lineage; whatever a running "
                        "`nw run`, Snakemake executor or Luigi worker has looked up or produced is kept while it "
                        "runs (temp roots), so gc is safe beside running pipelines. " + STORE_HELP)
    gc.add_argument("-n", "--dry-run", action="store_true", help="only list what would be removed")
    gc.add_argument("--min-age", type=_seconds, default=3600, metavar="SECONDS",
                    help="also keep objects and records younger than this, an extra safety margin (default: 3600; "
                    "running pipelines are protected by their temp roots whatever the value)")
    gc.add_argument("--store", dest="store_sub", metavar="DIR", help=argparse.SUPPRESS)
    v = sub.add_parser("verify", help="check objects, records, indexes, your caches and permissions",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_examples(
                           ("nw verify", "report problems only; exit 1 if any"),
                           ("nw verify --repair", "also fix what can be fixed (see --repair)")),
                       description="Re-hash every object (a corrupt one is quarantined), check every record (shape, "
                       "digest, trusted writer, objects present), the origins and recipes indexes, your stat-memo "
                       "and evaluation-cache entries, and permissions. Prints one line per problem; exit 1 if any. "
                       "Other users' untrusted records are listed as ignored, not as problems.")
    v.add_argument("--repair", action="store_true", help="fix what you may: quarantine corrupt objects, remove your "
                   "invalid records and stale index entries, rebuild missing index entries, drop invalid cache "
                   "entries, make your objects read-only")
    v.add_argument("--store", dest="store_sub", metavar="DIR", help=argparse.SUPPRESS)
    w = sub.add_parser("view", help="browse runs, steps, logs and outputs in a web page (read-only, 127.0.0.1)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_examples(
                           ("nw view", "serve the page and open it in a browser"),
                           ("nw view --no-browser --port 0", "only print the URL, on any free port (over ssh: "
                            "forward that port with ssh -L)")),
                       description="Serve a read-only page on 127.0.0.1 that draws the runs of this directory "
                       "(live while `nw run` is running) and every record in the store (Snakemake and Luigi runs "
                       "too): Recipe and Content views, each step's command, env, inputs, outputs, timings, log and "
                       "files. Prints the URL; Ctrl-C stops it. Read-only: no step runs, no record is written, no "
                       "network is used (the page and its graph library ship with nw).")
    w.add_argument("--port", type=_not_negative, default=8765, help="port on 127.0.0.1 (default 8765; 0: any free)")
    w.add_argument("--no-browser", action="store_true", help="do not open a web browser, only print the URL")
    w.add_argument("--out-link", default="nix-workflow-output", metavar="DIR",
                   help="the output-link directory whose runs to show (default: ./nix-workflow-output)")
    w.add_argument("--store", dest="store_sub", metavar="DIR", help=argparse.SUPPRESS)
    return p


_QUERY_EXAMPLES = {
    "show": (("nw show model_base", "a step of the last `nw run` here"),
             ("nw show --json nix-workflow-output/model_base/model.json", "the record of the step that made a file")),
    "lineage": (("nw lineage results/model.json", "where a file came from, down to the static inputs"),
                ("nw lineage --depth 1 model_base", "only the steps model_base used directly")),
    "log": (("nw log model_base", "what the step printed in its last run (a failed one too)"),
            ("nw log --out-link runs/a fit", "a step of a run made with `nw run --out-link runs/a`")),
}


def _examples(*lines: tuple[str, str]) -> str:
    """A subcommand's --help epilog: each example command, then what it does (tests/test_nw_probe10b.py checks
    that every example parses)."""
    width = max(len(c) for c, _ in lines)
    return "examples:\n" + "\n".join(f"  {c:<{width}}  {what}" for c, what in lines)


def _version() -> str:
    from nixlib import __version__

    return f"nw (nixworkflow) {__version__}"


def _query_parsers(sub: Any) -> None:
    """dag, status, why, diff and check: questions about an experiment or its records; nothing is stored."""
    def add(name: str, text: str, description: str, example: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=text, description=description, epilog=f"example:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        q.add_argument("--out-link", default="nix-workflow-output", metavar="DIR",
                       help="directory of output links and of the last-run summary (default: ./nix-workflow-output)")
        q.add_argument("--store", dest="store_sub", metavar="DIR", help=argparse.SUPPRESS)
        return q

    dag = add("dag", "print the graph of an experiment (dot, mermaid or json), marking cached and to-run steps",
              "Evaluate the experiment and print its steps and dependencies, each marked with its state against "
              "the store (cached, to run, pinned, running elsewhere). Nothing runs. Pipe dot into Graphviz for a "
              "picture; paste mermaid into Markdown.", "nw dag experiment.py --format dot | dot -Tsvg > dag.svg")
    dag.add_argument("file", help="experiment.py or experiment.nix")
    dag.add_argument("targets", nargs="*", default=[], metavar="TARGET",
                     help="only these steps (or a group's: models, every models.* step) and their upstream")
    dag.add_argument("--format", choices=("dot", "mermaid", "json"), default="dot", help="output format (default dot)")
    arguments.add_options(dag)
    status = add("status", "each step's state against the store, without running anything",
                 "Evaluate the experiment and say for each step whether it is cached, would run, is pinned, is being "
                 "run by another process now (its lock is held), and whether it failed in the last `nw run` here.",
                 "nw status experiment.py")
    status.add_argument("file", help="experiment.py or experiment.nix")
    status.add_argument("targets", nargs="*", default=[], metavar="TARGET",
                        help="only these steps (or a group's: models, every models.* step) and their upstream")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--remote", metavar="URL", help="remote cache to ask too (default: $NIX_WORKFLOW_REMOTE, else "
                        "`remote:` in nixworkflow.yaml): a step it has is 'to fetch'; nothing is downloaded")
    arguments.add_options(status)
    why = add("why", "why a step would run (or re-ran): which part of its recipe changed",
              "Compare a step's recipe now with the nearest realisation it had: the one of the last `nw run` here, "
              "else the last realisation of the same recipe, else the newest recorded under the same name. Names "
              "the parts that differ: command, env paths, an input's content or recipe, an environment variable the "
              "command expands or a script it runs reads ($SEED: set, unset or another value), another parameter. "
              "A step that is cached now but re-ran in the last run is compared with the realisation it had before.",
              "nw why model_base            (the experiment file of the last run here is used)")
    why.add_argument("step", metavar="STEP")
    why.add_argument("-f", "--file", help="experiment file (default: the one the last `nw run` here ran)")
    why.add_argument("--json", action="store_true", help="machine-readable output")
    arguments.add_options(why)
    diff = add("diff", "compare two steps' recipes, env, inputs and output files",
               "A and B are step names of the last `nw run` here, output paths, or keys (a resolved key names one "
               "run of a step, so a step can be compared across runs). Prints the recipe parts that differ, then "
               "output files that differ, with a unified diff of text files.", "nw diff model_small model_base")
    diff.add_argument("a", metavar="A")
    diff.add_argument("b", metavar="B")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    check = add("check", "re-run recorded steps in a scratch area and compare bytes with the stored result",
                "Like nix-build --check: re-run each STEP's recorded command with its recorded inputs and env in "
                "a scratch directory, then compare its output with the stored object. Prints 'deterministic' or "
                "the files that differ; exit 1 if any step differs. The store is not changed.",
                "nw check model_base dataset")
    check.add_argument("steps", nargs="+", metavar="STEP")
    check.add_argument("--json", action="store_true", help="machine-readable output")


def _at_least_one(text: str) -> int:
    """argparse type for -j: a whole number >= 1 (argparse prints the ArgumentTypeError as a usage error)."""
    return _whole(text, 1)


def _not_negative(text: str) -> int:
    return _whole(text, 0)


def _whole(text: str, least: int) -> int:
    try:
        n = int(text)
    except ValueError:
        n = least - 1
    if n < least:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least {least}, not {text!r}")
    return n


def _seconds(text: str) -> float:
    """argparse type for --min-age: seconds >= 0 (`nan` would make every age comparison false)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds of at least 0, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit codes: 0 success; 1 a user error, printed as one paragraph (a NixWorkflowError, or
    an OSError no command explained: the path, the reason and the operation); 2 bad arguments (argparse);
    130 interrupted; 70 an internal error — a bug in nw, printed with its traceback and a request to report it,
    never disguised as a user error."""
    command = ""
    try:
        if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        args = _parse(argv)  # in the try: Ctrl-C while argparse builds the parsers is one line too
        command = args.cmd
        sub_store = getattr(args, "store_sub", None)
        _use_store(sub_store if sub_store is not None else args.store)
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
    except OSError as e:
        if isinstance(e, BrokenPipeError) and _stdout_closed():
            return 1  # `nw show x | head`: the reader has gone; nothing to report
        print(f"error: {_os_error(e)}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in REMOTE_EXTRA:
            return _internal_error()
        print(f"error: {_missing_extra(e.name or '', command)}", file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001 - a bug: show it in full, but as a bug, with a clean exit code
        return _internal_error()


REMOTE_EXTRA = ("cryptography", "boto3", "botocore")  # the `remote` extra of pyproject.toml


def _missing_extra(module: str, command: str) -> str:
    """The error for an optional dependency that is not installed (`pip install nixworkflow` without the `remote`
    extra, then `nw key generate`): which command needed which package and the install line, not a traceback
    that asks to report a bug in nw."""
    return (f"`nw {command}` needs the Python package {module.split('.')[0]} (the remote cache's signatures and "
            "transfers), which is not installed: pip install 'nixworkflow[remote]' (boto3, cryptography)")


def _internal_error() -> int:
    """Exit 70 with the traceback of the exception being handled: a bug in nw, never disguised as a user error."""
    print(f"nw: internal error (a bug in nw, not in your input). Please report it with the command you ran "
          f"and this output:\n{traceback.format_exc()}", file=sys.stderr, end="")
    return 70


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line. An unknown option after the command is reported with that command's usage line
    (`nw run --bogus` shows `usage: nw run …`), not the top-level one: argparse passes a subcommand's unknown
    arguments up to the main parser, which knows only its own usage."""
    parser = _parser()
    words = sys.argv[1:] if argv is None else argv
    words, experiment_argv, nix_given = arguments.split_argv(words, EXPERIMENT_COMMANDS)
    _misplaced_option(parser, words)
    args, extra = parser.parse_known_args(words)
    args.experiment_argv, args.nix_given = experiment_argv, nix_given
    if extra and isinstance(getattr(args, "targets", None), list) and not any(w.startswith("-") for w in extra):
        # `nw run experiment.py -j 4 model`: argparse gives `targets` (nargs="*") only the words right after the
        # file, and a step named after an option is no unknown argument but a target, wherever it stands
        args.targets += extra
        extra = []
    if extra:
        before_command = words.index(extra[0]) < words.index(args.cmd)  # `nw --bogus show x`: a top-level option
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        (parser if before_command else sub.choices[args.cmd]).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _misplaced_option(parser: argparse.ArgumentParser, words: list[str]) -> None:
    """`nw -n run experiment.py`, `nw -j 2 run …`: an option of a command given before it. argparse said only
    `unrecognized arguments: -n`, or for an option with a value `invalid choice: '2'` (the value taken for the
    command): say which command it belongs to and show the command line with the option moved after it."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    at = next((i for i, w in enumerate(words) if w in sub.choices), None)
    if at is None:
        return
    command = sub.choices[words[at]]
    i = 0
    while i < at:
        flag = words[i].split("=", 1)[0]
        if flag.startswith("-") and flag not in parser._option_string_actions:
            action = command._option_string_actions.get(flag)
            if action is None:
                return  # not the command's either: argparse's own message names it
            end = i + 2 if action.nargs != 0 and "=" not in words[i] and i + 1 < at else i + 1
            fixed = [*words[:i], *words[end:at + 1], *words[i:end], *words[at + 1:]]
            parser.error(f"{flag} is an option of `nw {words[at]}`, not of nw itself: put it after the command: "
                         f"nw {' '.join(fixed)}")
        i += 2 if words[i] in ("--store",) else 1
    return


def _use_store(store_dir: str | None) -> None:
    """Point NIX_WORKFLOW_STORE at --store DIR (created on first use, with any missing directory above it, as the
    variable's store is: the store checks the path and names the setting in its errors)."""
    if store_dir is None:
        return
    if not store_dir:
        raise NixWorkflowError("--store needs a directory (got an empty string)")
    os.environ["NIX_WORKFLOW_STORE"] = str(Path(store_dir).absolute())


def _os_error(e: OSError) -> str:
    """One paragraph for an OSError that escaped a command: the reason, the path(s) and the operation that failed
    (the innermost function, since the error itself does not say whether it was reading, creating or renaming)."""
    paths = " -> ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
    reason = e.strerror or str(e) or type(e).__name__
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (in {tb[-1].name}, {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    subject = f"{paths}: " if paths else ""
    return (f"{subject}{reason}{where}. Check that the path exists, is of the expected kind (file or directory) and "
            "that you may access it; then run the command again.")


def _stdout_closed() -> bool:
    """True when stdout is a pipe whose reader has gone (poll reports an error on it); stdout then points at
    /dev/null, so exiting flushes nothing into the broken pipe."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        closed = any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll, or stdout is not a real file
        return False
    if closed:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return closed


STORE_SETTING = "--store DIR or NIX_WORKFLOW_STORE=DIR"
"""How an nw user chooses the store, for the store's own errors (Store's `setting`)."""


def _store(writable: bool = True) -> Any:
    """The store, created if it does not exist yet (`nw run`, which stores results). `writable=False`: for a
    command that only reads it (show, log, lineage, diff, why), which works on a store it cannot write."""
    from nixlib.store import Store

    return Store(setting=STORE_SETTING, writable=writable)


def _existing_store(doing: str, writable: bool = True) -> Any:
    """The store, for a command that reads results already in it (show, log, gc, verify, …): one that does not
    exist is an error naming its path (a typo in NIX_WORKFLOW_STORE or --store must not create an empty store
    and then report that nothing is in it)."""
    from nixlib.store import default_root

    root = default_root().absolute()
    if not os.path.lexists(root):
        raise NixWorkflowError(f"there is no store at {root} ({_store_origin()}), so there is nothing to {doing}: "
                               "nothing has been run with it yet (`nw run` creates it). If your results are in "
                               f"another store, name it with {STORE_SETTING}.")
    return _store(writable)


_EMPTY: list[Any] = []  # the scratch directory of the stand-in for a store that does not exist (removed at exit)


def _store_or_empty(writable: bool = True) -> Any:
    """The store, for a command that says what a run would do or what a step has made so far (status, dag, why,
    run -n, checkpoints, pin). When it does not exist yet the natural answer is that nothing is cached, every step
    would run and none has published or realised anything: that is computed against an empty
    stand-in in a scratch directory (removed at exit), so the query does not create the store, and the stand-in
    is named by the store's path in what it says (`stands_for`)."""
    import tempfile

    from nixlib.store import Store, default_root

    root = default_root().absolute()
    if os.path.lexists(root):
        return _store(writable)
    remote = " or be fetched from the remote cache" if os.environ.get("NIX_WORKFLOW_REMOTE") else ""
    print(f"nw: there is no store at {root} yet ({_store_origin()}): nothing is cached, so every step would run"
          f"{remote}", file=sys.stderr)
    _EMPTY.append(tempfile.TemporaryDirectory(prefix="nw-no-store-"))
    store = Store(Path(_EMPTY[-1].name) / "store", setting=STORE_SETTING)
    store.stands_for = root
    return store


def _store_origin() -> str:
    """Where the store path came from, for an error about it."""
    return "from --store or NIX_WORKFLOW_STORE" if os.environ.get("NIX_WORKFLOW_STORE") else "the default store"


def cmd_hash(args: argparse.Namespace) -> int:
    from nixlib import nar, trees

    for p in args.paths:
        if not os.path.lexists(p):
            raise NixWorkflowError(f"cannot hash {p}: no such file or directory")
        try:
            print(nar.nar_hash(p))
        except trees.UnstorableFile as e:  # /dev/zero, a FIFO, a socket: refused before anything is read
            raise e.doing("hash") from None
        except OSError as e:
            raise NixWorkflowError(f"cannot hash {p}: {e.strerror or e}"
                                   f"{f' ({e.filename})' if e.filename and e.filename != p else ''}") from None
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise NixWorkflowError("-j/--jobs must be at least 1")
    if args.allow_unpinned:
        os.environ["NIX_WORKFLOW_ALLOW_UNPINNED"] = "1"
    if args.force and not args.targets:
        raise NixWorkflowError("--force needs the steps to run again: nw run --force FILE STEP…")
    if args.json and not args.dry_run:  # (it was ignored: the steps ran and printed text)
        raise NixWorkflowError("--json prints the plan of a dry run and needs -n: nw run -n --json FILE (nothing was "
                               "run; a run's results as JSON: nw status --json FILE, nw show --json STEP)")
    from nixlib.engine import configured_remote
    from nixlib.remotecli import configure

    configure(args, Path(args.file).parent)  # --remote, NIX_WORKFLOW_REMOTE, `remote:` in nixworkflow.yaml
    configured_remote()  # a bad remote setting is an error before the store is made
    _check_store_for_commands()
    store = _store_or_empty() if args.dry_run else _store()
    args.arguments = arguments.from_args(args)
    workflow = _load(args.file, args.arguments)
    targets = workflow.select(args.targets)
    from nixlib import slurm

    slurm.configure(args, Path(args.file).parent, workflow.recipes, workflow.resources)  # nixworkflow.yaml, --slurm
    args.force = targets if args.force else []
    _warn_unreached(workflow, args.targets)
    from nixlib.recipe import topological

    running = [] if args.dry_run else _to_run(store, topological(targets), args.force)
    broken = _build_envs(workflow, running, args.keep_going)
    host = [r.name for r in running if r.name in set(workflow.host_steps)]
    if host:
        print(f"warning: {len(host)} step(s) to run use the host environment, not pinned by Nix: "
              f"{', '.join(host[:8])}{' …' if len(host) > 8 else ''}", file=sys.stderr)
    from nixlib.runs import run_workflow

    _term_as_interrupt()
    return run_workflow(store, workflow, targets, args, prepare=_env_before_run(workflow, broken))


def _to_run(store: Any, recipes: list[Any], forced: list[Any]) -> list[Any]:
    """The steps of this run (topologically ordered `recipes`) that are not served from the store: forced ones,
    those not found, and those below either (a step below one that runs may still be served once its upstream is
    known, but cannot be looked up before). A step served from the store runs nothing: it needs no env built and
    runs nothing unpinned."""
    from nixlib.engine import Engine

    engine, forced_ids = Engine(store), {id(r) for r in forced}
    missed: set[int] = set()  # steps not served; a step below one is not looked up (a miss is not memoised, so
    for r in recipes:  # each lookup would walk the whole chain above it again: quadratic, and deep recursion)
        above = [x for u in r.upstream() for x in (u, getattr(u, "producer", None)) if x is not None]
        waits = id(r) in forced_ids or any(id(u) in missed for u in above)
        if r.pinned is None and (waits or engine.lookup(r) is None):  # (a pinned step is served, never run)
            missed.add(id(r))
    return [r for r in recipes if id(r) in missed]


_SHELL_SPECIAL = frozenset(" \t\n\r'\"\\$`;&|<>()*?[")


def _check_store_for_commands() -> None:
    """Refuse a store root the shell would split or expand, before anything is created: every step's `$out` and
    every upstream step a command interpolates (`{dataset}/data.csv`, `${dataset}`) lie under it, unquoted in
    nearly every command (`> $out/x` is an "ambiguous redirect" when $out has a space), so each step would fail
    or, worse, write somewhere else."""
    from nixlib.store import default_root

    root = str(default_root().absolute())
    bad = sorted({c for c in root if c in _SHELL_SPECIAL})
    if bad:
        shown = ", ".join("a space" if c == " " else repr(c) for c in bad)
        raise NixWorkflowError(f"the store root {root!r} contains {shown}: every step's $out and every step output "
                               "a command interpolates is a path under it, and the shell splits or expands such a "
                               "path where a command leaves it unquoted (`echo 1 > $out/x`), so the steps would fail. "
                               f"Use a store path of plain characters ({STORE_SETTING}); "
                               "nothing was run.")


def _warn_unreached(workflow: Any, targets: list[str]) -> None:
    """Name the steps a whole-experiment run leaves out (defined, but no top-level name reaches them), and the
    names that hold the very step another name holds (a sweep whose members coincide): those are no step of
    their own, so no output link, `nw show` or target has them, which the user should hear about."""
    renamed = getattr(workflow, "renamed", set())  # (a variable holding a step named otherwise: no second name)
    same = {a: b for a, b in getattr(workflow, "same_as", {}).items() if a not in renamed}
    if same:
        shown = ", ".join(f"{a} is {b}" for a, b in list(same.items())[:5]) + (" …" if len(same) > 5 else "")
        print(f"warning: {len(same)} name(s) hold the same step as another name (the same command, env and "
              f"options), which runs once and is linked under that other name only: {shown}", file=sys.stderr)
    left = workflow.unreached() if not targets and hasattr(workflow, "unreached") else []
    if left:
        shown = ", ".join(f"{n} ({workflow.where.get(n, '?')})" for n in left[:5]) + (" …" if len(left) > 5 else "")
        print(f"warning: {len(left)} step(s) are defined but not run, since no top-level name (a variable, or a "
              f"dict, list, tuple, dataclass or class in one) holds them and no such step uses them: {shown}",
              file=sys.stderr)


def _load(file: str, given: arguments.Arguments = arguments.NONE) -> Any:
    """Evaluate experiment.py or experiment.nix, with the arguments `given` (nixlib.arguments), into a Workflow
    (nothing runs, nothing is stored, no env is built: `nw run` builds the envs of the steps it runs with
    _build_envs)."""
    from nixlib import nix

    given.check_for(file)
    deferred, nix.DEFER_BUILDS = nix.DEFER_BUILDS, True
    try:
        if Path(file).suffix == ".nix":
            from nixlib.nixfront import load

            return load(Path(file), given)
        from nixlib.dsl import load as load_py

        return load_py(Path(file), given.argv)
    finally:
        nix.DEFER_BUILDS = deferred


def _build_envs(workflow: Any, running: list[Any], keep_going: bool = False) -> dict[str, NixWorkflowError]:
    """Build (once each) and root the Nix envs of the steps this run may run (`running`, see _to_run), before any
    step starts (a broken package is an error up front, not after hours of upstream steps). Not those of other
    steps, so a broken package stops only the runs that need it; nor those of steps served from the store, which
    run nothing (an env Nix's garbage collector removed is not rebuilt just to link results). An env already built
    and rooted costs a few stats. With `keep_going` (`-k`) a failed env is returned (by its identity's canonical
    JSON) instead: the steps that need it fail when they would run, and the others go on."""
    from nixlib import env as envmod
    from nixlib.recipe import canonical_json

    seen: set[str] = set()
    failed: dict[str, NixWorkflowError] = {}
    for recipe in running:
        identity = recipe.env or {}
        if identity.get("kind") != "nix" or canonical_json(identity) in seen:
            continue
        seen.add(canonical_json(identity))
        where = workflow.where.get(recipe.name, recipe.name)
        try:
            envmod.build(identity, where)
        except NixWorkflowError as e:
            if not keep_going:
                raise NixWorkflowError(f"step '{recipe.name}' ({where}): {e}") from None
            failed[canonical_json(identity)] = e
    return failed


def _env_before_run(workflow: Any, broken: dict[str, NixWorkflowError]) -> Callable[[Any], None]:
    """Engine.prepare for `nw run`: a step about to run gets its Nix env built (already built up front for the
    steps expected to run; not for one that looked served then and runs after all, e.g. below a forced step whose
    result changed), and with -k a step whose env failed to build up front fails here, not the whole run."""
    from nixlib import env as envmod
    from nixlib.errors import StepFailed
    from nixlib.recipe import canonical_json

    def prepare(recipe: Any) -> None:
        identity = recipe.env or {}
        if identity.get("kind") != "nix":
            return
        error = broken.get(canonical_json(identity))
        if error is not None:
            raise StepFailed(recipe.name, f"its Nix env did not build: {error}")
        where = workflow.where.get(recipe.name, recipe.name)
        try:
            envmod.build(identity, where)
        except NixWorkflowError as e:
            raise StepFailed(recipe.name, f"its Nix env did not build ({where}): {e}") from None

    return prepare


def cmd_dag(args: argparse.Namespace) -> int:
    from nixlib import dag, plan

    workflow = _load(args.file, arguments.from_args(args))
    store = _store_or_empty()
    sys.stdout.write(dag.render(plan.states(store, workflow, workflow.select(args.targets), Path(args.out_link)),
                                args.format))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from nixlib import plan
    from nixlib.remotecli import configure

    workflow = _load(args.file, arguments.from_args(args))
    configure(args, Path(args.file).parent)  # a step on the remote cache is "to fetch", as `nw run` would fetch it
    store = _store_or_empty()
    steps = plan.states(store, workflow, workflow.select(args.targets), Path(args.out_link), remote=True)
    if args.json:
        print(json.dumps([s.as_json() for s in steps], indent=2, sort_keys=True))
        return 0
    width = max((len(plan.label(s)) for s in steps), default=0)
    for s in steps:
        failed = f"; last run: {s.last_error}" if s.last_status == "failed" and s.state != plan.CACHED else ""
        print(f"{plan.label(s):<{width}}  {s.name}  ({s.why}{failed})")
    return 0


def cmd_why(args: argparse.Namespace) -> int:
    from nixlib import plan
    from nixlib.lineage import last_run

    store = _store_or_empty(writable=False)  # (a query: it works on a store it cannot write)
    out_dir = Path(args.out_link)
    summary = last_run(out_dir)
    entry = summary.get(args.step)
    file = args.file or (entry.get("experiment") if isinstance(entry, dict) else None)
    if not file:
        hint = plan.suggest(args.step, list(summary))
        raise NixWorkflowError(f"no step '{args.step}' in the last `nw run` here ({out_dir}).{hint} Give the "
                               f"experiment file: nw why {args.step} --file experiment.py")
    workflow = _load_as_last_run(file, args, entry)
    plan.check_targets(workflow, [args.step])
    sources = {h: str(s.source) for h, s in workflow.statics.items() if s.source is not None}
    report = plan.why(store, workflow.recipes[args.step], out_dir, sources)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    print(report["verdict"])
    for line in report["differences"]:
        print(f"  {line}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from nixlib import diff
    from nixlib.lineage import find_record

    store = _existing_store("compare", writable=False)
    docs = [find_record(store, what, Path(args.out_link)) for what in (args.a, args.b)]
    sides = [diff.side_of_record(d, f"{w} ({d['name']})") for d, w in zip(docs, (args.a, args.b), strict=True)]
    recipe = diff.recipe_differences(*sides)
    outputs: list[str] = []
    for name in sorted(set(docs[0]["outputs"]) | set(docs[1]["outputs"])):
        a, b = docs[0]["outputs"].get(name), docs[1]["outputs"].get(name)
        if a != b:
            outputs.append(f"output '{name}': {a} → {b}")
            if a and b and store.has(a) and store.has(b):
                outputs += ["  " + x for x in diff.output_differences(store.object_path(a), store.object_path(b),
                                                                      args.a, args.b)]
    if args.json:
        print(json.dumps({"a": docs[0], "b": docs[1], "recipe": recipe, "outputs": outputs}, indent=2,
                         sort_keys=True))
        return 0
    for label, d in zip(("A", "B"), docs, strict=True):
        print(f"{label}: step '{d['name']}', key {d['resolved_key']}, ran "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(d['start']))}\n   $ {d['command']}")
    print("recipe:" + ("" if recipe else " same command, env, inputs and parameters"))
    print("\n".join(f"  {line}" for line in recipe) if recipe else "", end="\n" if recipe else "")
    print("outputs:" + ("" if outputs else " identical"))
    print("\n".join(f"  {line}" for line in outputs) if outputs else "", end="\n" if outputs else "")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from nixlib import diff
    from nixlib.lineage import find_record

    store = _existing_store("check")
    _term_as_interrupt()
    report = {}
    for what in args.steps:
        doc = find_record(store, what, Path(args.out_link))
        report[what] = diff.check(store, doc)
        if not args.json:
            lines = report[what]
            print(f"{what}: deterministic" if not lines else
                  f"{what}: NOT deterministic: its re-run differs from the stored result:\n"
                  + "\n".join(f"  {x}" for x in lines))
    if args.json:
        print(json.dumps({w: {"deterministic": not d, "differences": d} for w, d in report.items()}, indent=2))
    return 1 if any(report.values()) else 0


def _term_as_interrupt() -> None:
    """SIGTERM stops a run exactly like Ctrl-C, and so does SIGHUP (the terminal or ssh session closed), as in Nix:
    by default it killed nw at once, leaving its steps running unwatched and nothing recorded. An ignored SIGHUP
    (`nohup nw run ...`) stays ignored."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
        if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
            signal.signal(signal.SIGHUP, _raise_interrupt)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _record(args: argparse.Namespace) -> tuple[Any, Any]:
    """The store and what NAME|PATH names (lineage.Found): by the step's record in the last run, not its bytes."""
    from nixlib.lineage import find

    store = _existing_store({"show": "show", "lineage": "trace", "log": "print"}[args.cmd], writable=False)
    return store, find(store, args.what, Path(args.out_link))


def cmd_show(args: argparse.Namespace) -> int:
    from nixlib.lineage import executed_command

    store, found = _record(args)
    doc = found.doc
    if doc is None:
        return _show_unsuccessful(found, Path(args.out_link), args.json)
    missing = {k: _missing_output(store, h) for k, h in doc["outputs"].items() if not store.has(h)}
    if args.json:  # the record, and (only when so) which of its outputs the store no longer holds
        print(json.dumps(doc | ({"missing_outputs": missing} if missing else {}), indent=2, sort_keys=True))
        return 0
    env = doc["env"]
    command, keyed = executed_command(doc)
    project = _project_files(doc)
    gone = (f"{'its output is' if len(doc['outputs']) == 1 else 'some of its outputs are'} no longer in the store "
            "(see below), so it is not served: the next run that needs it runs the step again") if missing else ""
    lines = [
        f"step:         {found.name}",
        *([f"status:       {found.status} in {found.run}{f', but {gone}' if gone else ''}"] if found.entry
          else [f"status:       {gone}"] if gone else []),
        *([f"realised by:  step '{doc['name']}' (the same recipe under another name)"]
          if doc["name"] != found.name else []),
        *([f"found by:     content (also produced by realisation(s) {', '.join(found.others)})"]
          if found.others else []),
        *[f"output {k}:{' ' * max(1, 6 - len(k))}{store.object_path(h)}"
          + (f" (MISSING: {missing[k]['why']})" if k in missing else "") for k, h in doc["outputs"].items()],
        f"recipe key:   {doc['recipe_key']}",
        f"resolved key: {doc['resolved_key']}",
        f"command:      {command}",
        *([f"keyed as:     {keyed}   (the normalised form the recipe key is computed from)"] if keyed else []),
        f"env:          {_env_text(env)}",
        *[f"  {p}" for p in env.get("paths", [])],
        *([f"  before it: {'; '.join(deployed)} (deployed by Snakemake's --sdm, not pinned by Nix)"]
          if (deployed := (doc.get("provenance") or {}).get("deployed")) else []),
        "inputs:" if doc["inputs"] or doc.get("files") or project or _keyed_variables(doc) else "inputs:       none",
        *[f"  {(found.step_name(i.get('resolved_key'), i.get('step')) if i.get('step') else None) or 'static'}: "
          f"{store.object_path(i['object'])}" for i in doc["inputs"]],
        *[f"  {name}: {h}" for name, h in doc.get("files", {}).items()],
        *[f"  {what} {name}: {h} (keyed by content, not stored)" for what, name, h in project],
        *[f"  variable ${name}: "
          + ("not set (keyed as unset)" if h == "unset" else "set (keyed by a digest of its value)")
          for name, h in _keyed_variables(doc)],
        f"ran:          {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(doc['start']))} for "
        f"{doc['duration']:.3f} s on {doc['host']} as {doc['user']} (exit {doc['exit']}, {doc['tool']})",
        f"log:          {doc['log']}" + (f" (on {doc['host']}, where it ran: substituted, not run here)"
                                         if (doc.get("provenance") or {}).get("substituted") else ""),
    ]
    if doc.get("provenance"):
        lines.append(f"provenance:   {json.dumps(doc['provenance'], sort_keys=True)}")
    print("\n".join(lines))
    return 0


def _project_files(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, name, digest) of the project's scripts and data files an experiment's command names without static()
    (the recipe's `extra.code` and `extra.data`): part of the key, so `nw show` lists them with its inputs."""
    extra = (doc.get("recipe") or {}).get("extra") or {}
    return [(what, str(name), str(h)) for part, what in (("code", "project script"), ("data", "project file"))
            if isinstance(extra.get(part), dict) for name, h in extra[part].items()]


def _keyed_variables(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, digest or "unset") of the variables of nw's environment the step's key holds (the recipe's
    `extra.environment`: those its command expands or its scripts read): `SCALE=3 nw run` re-runs it, so `nw show`
    says which, as it lists the project files keyed by content."""
    env = ((doc.get("recipe") or {}).get("extra") or {}).get("environment")
    return sorted((str(k), str(v)) for k, v in env.items()) if isinstance(env, dict) else []


def _missing_output(store: Any, h: str) -> dict[str, Any]:
    """What became of output object `h`, which the store does not hold (intact) any more: where it was
    quarantined, if it was (a step wrote into it, or it no longer re-hashed to its name), else removed."""
    from nixlib.plan import quarantined

    moved = quarantined(store, h)
    if moved:
        return {"object": h, "quarantined": str(moved[-1]),
                "why": f"quarantined as changed or corrupt, moved to {moved[-1]}"}
    if os.path.lexists(store.object_path(h)):  # corrupt, and not ours to move (another user's, in a shared store)
        return {"object": h, "quarantined": None, "why": "it no longer re-hashes to its name (changed or corrupt)"}
    return {"object": h, "quarantined": None, "why": "removed from the store (by `nw gc`, or by hand)"}


def _show_unsuccessful(found: Any, out_dir: Path, as_json: bool) -> int:
    """`nw show` of a step that failed or was skipped in the last run: its status, error and log."""
    from nixlib.lineage import log_changed

    entry = found.entry or {}
    info = {"name": found.name, "status": found.status, "error": entry.get("error"), "log": entry.get("log"),
            "recipe_key": entry.get("recipe_key")}
    rewritten = log_changed(entry)
    if rewritten:
        info["log_rewritten"] = True
    if as_json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    earlier = out_dir / found.name
    lines = [f"step:         {found.name}", f"status:       {found.status} in {found.run}",
             f"error:        {info['error'] or 'none recorded'}",
             f"log:          {info['log'] or 'none (the step did not start)'}"
             + (" (rewritten since by a later run of the same recipe: it no longer holds this run's output)"
                if rewritten else ""),
             *([f"recipe key:   {info['recipe_key']}"] if info["recipe_key"] else [])]
    if os.path.islink(earlier):
        lines.append(f"output link:  {earlier} still points at an earlier run's result: {os.readlink(earlier)}")
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

    store, found = _record(args)
    if found.doc is None:  # no realisation, so no recorded inputs: say what happened to the step
        entry = found.entry or {}
        node = {"name": found.name, "status": found.status, "error": entry.get("error"), "log": entry.get("log")}
        print(json.dumps(node, indent=2) if args.json else f"{found.name} ({found.status} in {found.run}: "
              f"{entry.get('error') or 'no error recorded'})" + (f"\n  log: {node['log']}" if node["log"] else ""))
        return 0
    node = tree(store, found.doc, depth=args.depth, found=found)
    node["name"] = found.name
    print(json.dumps(node, indent=2) if args.json else "\n".join(render(store, node)))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from nixlib.lineage import log_changed

    store, found = _record(args)
    entry = found.entry or {}
    came = ((found.doc or {}).get("provenance") or {}).get("substituted")
    if isinstance(came, dict):  # its log is on the host that ran it; this store's log of the key is another run's
        doc = found.doc
        raise NixWorkflowError(f"step '{found.name}' was not run here: its result was substituted from "
                               f"{came.get('from')} (signed by {came.get('signed_by')}). It ran on {doc['host']} as "
                               f"{doc['user']}, whose log is {doc['log']} on that machine; any log of this key here "
                               "is of another run")
    log = _log_of(store, found.doc) if found.doc else entry.get("log")
    if found.doc is None and log_changed(entry):
        raise NixWorkflowError(f"the log of step '{found.name}' ({found.status} in {found.run}) is no longer there: "
                               f"{log} was rewritten since by a later run of the same recipe (from another checkout, "
                               "front door or user sharing the store, or one still running), so it holds that run's "
                               "output, not this one's. Run the step again here to see why it "
                               f"{'stopped' if found.status == 'interrupted' else 'failed'}")
    if not log:
        how = "was skipped" if found.status == "skipped" else found.status
        raise NixWorkflowError(f"step '{found.name}' has no log: it {how} before it started "
                               f"({entry.get('error') or 'no error recorded'})")
    try:
        text = Path(log).read_text(errors="replace")
    except FileNotFoundError:
        raise NixWorkflowError(f"the log of '{args.what}' ({log}) is gone (removed by `nw gc`?)") from None
    if args.json:  # (the option was accepted, and ignored: the log came out as text)
        print(json.dumps({"name": found.name, "status": found.status, "log": log, "text": text}, indent=2))
    else:
        sys.stdout.write(text)
    return 0


def _log_of(store: Any, doc: dict[str, Any]) -> str:
    """A record's log, opened only if it names a file directly in the store's logs/ (a record is data, not a
    path to follow); otherwise the log path this user would have for the record's key."""
    named = doc.get("log")
    if isinstance(named, str) and os.path.dirname(named) == str(store.root / "logs"):
        return named
    return str(store.log_path(doc["resolved_key"]))


def cmd_gc(args: argparse.Namespace) -> int:
    from nixlib import gc

    p = gc.collect(_existing_store("collect"), dry_run=args.dry_run, min_age=args.min_age)
    verb = "would remove" if args.dry_run else "removed"
    failed = {path for path, _ in p.failed}
    for path in p.remove:
        if path not in failed:
            print(f"{verb} {path}")
    for path, why in p.failed:
        print(f"nw gc: could not remove {path}: {why} (another user's file: only they or root can remove it)",
              file=sys.stderr)
    for h, rk in p.reindexed:
        print(f"nw gc: re-indexed origins/{h}/{rk} (missing after an interrupted run)", file=sys.stderr)
    print(f"{verb} {len(p.remove) - len(failed)} path(s); kept {len(p.keep_objects)} object(s) and "
          f"{len(p.keep_records)} realisation(s)", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from nixlib.verify import verify

    r = verify(_existing_store("verify"), repair=args.repair)
    for line in r.ignored + r.problems:
        print(line)
    for line in r.repaired:
        print(f"repaired: {line}")
    notes = sum(1 for line in r.ignored if line.startswith("note:"))  # stale but harmless, not another user's
    untrusted = len(r.ignored) - notes
    print(f"checked {r.objects} object(s), {len(r.corrupt)} corrupt; {r.records} record(s); "
          f"{len(r.problems)} problem(s)" + (f", {len(r.repaired)} repaired" if args.repair else "")
          + (f"; {notes} note(s)" if notes else "")
          + (f"; ignored {untrusted} entry(ies) of untrusted users" if untrusted else ""), file=sys.stderr)
    return 1 if r.unrepaired else 0


COMMANDS = {"run": cmd_run, "hash": cmd_hash, "show": cmd_show, "lineage": cmd_lineage, "log": cmd_log,
            "gc": cmd_gc, "verify": cmd_verify, "dag": cmd_dag, "status": cmd_status, "why": cmd_why,
            "diff": cmd_diff, "check": cmd_check}


def cmd_view(args: argparse.Namespace) -> int:
    from nixlib.view.server import serve

    return serve(_store(), Path(args.out_link), args.port, open_browser=not args.no_browser)


COMMANDS["view"] = cmd_view


def _step_of_last_run(args: argparse.Namespace, command: str) -> tuple[Any, Any]:
    """The workflow and recipe of STEP: from --file, else from the experiment of the last `nw run` here."""
    from nixlib import plan
    from nixlib.lineage import last_run

    entry = last_run(Path(args.out_link)).get(args.step)
    file = args.file or (entry.get("experiment") if isinstance(entry, dict) else None)
    if not file:
        raise NixWorkflowError(f"no step '{args.step}' in the last `nw run` here ({args.out_link}). Give the "
                               f"experiment file: nw {command} {args.step} --file experiment.py")
    workflow = _load_as_last_run(file, args, entry)
    plan.check_targets(workflow, [args.step])
    return file, workflow.recipes[args.step]


def _load_as_last_run(file: str, args: argparse.Namespace, entry: Any) -> Any:
    """_load with _arguments_of_last_run; an error says which arguments came from the last run's record (the user
    gave none: `takes no parameter lr (given by --arg/--argstr)` alone would point at a command line without one)."""
    from nixlib.lineage import LAST_RUN

    given = arguments.from_args(args)
    used = _arguments_of_last_run(args, entry)
    try:
        return _load(file, used)
    except NixWorkflowError as e:
        if not used or used == given:
            raise
        words = [f"--{kind} {name} {shlex.quote(text)}" for kind, name, text in used.nix]
        words += ["--", *map(shlex.quote, used.argv)] if used.argv else []
        raise NixWorkflowError(f"{str(e).rstrip('.')}. The arguments are those the last `nw run` here evaluated "
                               f"{file} with ({' '.join(words)}), as recorded in {Path(args.out_link) / LAST_RUN}: "
                               f"give others on the command line, or --file {file} for none.") from None


def _arguments_of_last_run(args: argparse.Namespace, entry: Any) -> arguments.Arguments:
    """The experiment's arguments: those on the command line when given (or with --file), else those the last
    `nw run` here evaluated it with."""
    given = arguments.from_args(args)
    if given or args.file or not isinstance(entry, dict):
        return given
    return arguments.from_json(entry.get("arguments"))


def cmd_checkpoints(args: argparse.Namespace) -> int:
    from nixlib import checkpoints

    _, recipe = _step_of_last_run(args, "checkpoints")
    return checkpoints.list_checkpoints(_store_or_empty(), recipe)


COMMANDS["checkpoints"] = cmd_checkpoints


def cmd_pin(args: argparse.Namespace) -> int:
    from nixlib import checkpoints

    file, recipe = _step_of_last_run(args, "pin")
    return checkpoints.pin(_store_or_empty(), recipe, args.checkpoint, Path(file).suffix == ".nix")


COMMANDS["pin"] = cmd_pin


def _remote_cmd(name: str) -> Any:
    """`nw push`, `nw pull`, `nw key` (nixlib.remotecli): imported only when used (boto3, cryptography)."""
    def run(args: argparse.Namespace) -> int:
        from nixlib import remotecli

        return getattr(remotecli, name)(args)
    return run


COMMANDS.update(push=_remote_cmd("cmd_push"), pull=_remote_cmd("cmd_pull"), key=_remote_cmd("cmd_key"))

if __name__ == "__main__":
    sys.exit(main())

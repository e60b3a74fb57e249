"""``ntkit <command>``: the command line, the top layer. Each command is a module here
(``register(sub)`` adds its parser, its function turns the arguments into one library call); the
options every command shares live in ``common``. The library never imports this package.

Imports: any layer, inside the command functions on purpose: building the parser imports no
model code, so ``ntkit --help`` answers without loading torch."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = ["checkpoints", "demo", "data", "pretrain", "embed", "probe", "finetune", "benchmark", "variants", "mutagenesis",
            "attention", "splice", "annotate", "segment", "report"]


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (unless it has none: None, False, or a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if "%(default)" in text or "(default" in text or d is None or d is False or d is argparse.SUPPRESS or isinstance(action, argparse._StoreConstAction):
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text
        shown = " ".join(map(str, d)) if isinstance(d, (list, tuple)) else d
        return f"{text} (default: {str(shown).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """The one parser class of the CLI: every command and sub-command shows its defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ntkit", description="Nucleotide Transformer toolkit")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    p.add_argument("--quiet", action="store_true", help="no warnings and no progress bars (results and errors only)")
    p.add_argument("--verbose", action="store_true", help="warnings with the code that raised them (Python's format)")
    p.add_argument("--progress", dest="progress_mode", choices=["auto", "bar", "lines", "none"],
                   help="progress display: a redrawn bar (a terminal), lines every 30 s or 5%% (logs, Slurm), none; "
                   "auto: bar on a terminal, else lines (default: $NTKIT_PROGRESS, else auto)")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return p


def error_line(e: BaseException) -> str:
    """One line a person can act on, for the errors that input, disks and configurations cause."""
    if isinstance(e, OSError) and e.strerror:
        fix = {28: " (free space or choose another output folder)", 13: " (choose a writable folder)",
               30: " (choose a writable folder)"}.get(e.errno, "")
        return f"{e.strerror}: {e.filename or ''}{fix}".strip()
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    return " ".join(str(e).split()) or type(e).__name__


def setup_warnings(args) -> None:
    """One line per warning (``ntkit: warning: ...``) unless ``--verbose``; none with ``--quiet``,
    which also turns progress bars off."""
    import warnings

    if args.quiet:
        warnings.simplefilter("ignore")
        if hasattr(args, "progress"):
            args.progress = False
    elif not args.verbose:
        warnings.formatwarning = lambda message, category, *_: f"ntkit: warning: {' '.join(str(message).split())}\n"


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done; 2 bad input, configuration or environment (one line on stderr: the file
    and the fix); 3 training diverged (pretraining keeps its last healthy checkpoint); 1 an internal error.
    ``--debug`` shows the traceback instead."""
    import pickle

    from ntkit.runtime import progress  # deferred with the rest of the library (see the module docstring)

    args = build_parser().parse_args(argv)
    progress.set_mode(args.progress_mode or os.environ.get("NTKIT_PROGRESS") or "auto")
    setup_warnings(args)
    try:
        if getattr(args, "no_merge", False):  # shards that write their parts only: the merge is `ntkit merge`
            from ntkit.runtime.jobs import Shard

            s = Shard.parse(args.shard)
            args.shard = Shard(s.index, s.count, merge=False)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"ntkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except FloatingPointError as e:  # a fine-tuning or splice training loss that is not finite: diverged, as pretraining's 3
        if args.debug:
            raise
        print(f"ntkit {args.command}: stopped: {error_line(e)} (a lower --lr)", file=sys.stderr)
        return 3
    except (ValueError, KeyError, OSError, pickle.UnpicklingError, EOFError) as e:
        if args.debug:
            raise
        print(f"ntkit {args.command}: error: {error_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if args.debug:
            raise
        print(f"ntkit {args.command}: internal error: {type(e).__name__}: {error_line(e)} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1

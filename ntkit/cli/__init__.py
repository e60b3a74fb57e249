"""``ntkit <command>``: the command line. Each command is a module here (``register(sub)`` adds its
parser, its function turns the arguments into one library call); the options every command
shares live in ``common``. The library never imports this package."""

from __future__ import annotations

import argparse
import importlib
import sys


COMMANDS = ["checkpoints", "demo", "data", "pretrain", "embed", "probe", "finetune", "benchmark", "variants", "mutagenesis",
            "attention", "splice"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ntkit", description="Nucleotide Transformer toolkit")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
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


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done; 2 bad input, configuration or environment (one line on stderr: the file
    and the fix); 3 training diverged (the last healthy checkpoint kept); 1 an internal error.
    ``--debug`` shows the traceback instead."""
    import pickle

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"ntkit {args.command}: interrupted", file=sys.stderr)
        return 130
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

"""``ntkit <command>``: one function per command; ``ntkit <command> -h`` for its options."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16"}


COMMAND_MODULES: list[str] = ["demo", "pretrain", "embed", "probe", "finetune", "benchmark", "variants", "mutagenesis", "attention", "splice"]  # feature modules that add their own subcommands via add_cli(sub)


def _dtype(name: str | None):
    import torch

    return None if name is None else getattr(torch, DTYPES[name])


def add_runtime_args(s, dtype: bool = True, progress: bool = True) -> None:
    """The options every model-running command shares: --device, --dtype, --no-progress."""
    s.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    if dtype:
        s.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                       help="inference precision: the weights are loaded in it (bf16/fp16 halve the model's memory; default float32)")
    if progress:
        s.add_argument("--no-progress", dest="progress", action="store_false")


def add_job_args(s, unit: str = "items") -> None:
    """The options of sharded, resumable jobs (``ntkit.jobs``)."""
    s.add_argument("--shard", help="I/N: run chunks c with c %% N == I (0-based; e.g. $SLURM_ARRAY_TASK_ID/N). "
                   "Under torchrun: RANK/WORLD_SIZE. The last shard to finish writes the outputs")
    s.add_argument("--chunk-size", type=int, default=4096, help=f"{unit} per part file (the unit of sharding and resume)")
    s.add_argument("--restart", action="store_true", help="discard the parts of an earlier run with other options")
    s.add_argument("--batch-tokens", type=int, help="tokens per forward (rows x padded length); default 2048 on CPU, 16384 on GPU")


def default_device() -> str:
    """cuda (``cuda:LOCAL_RANK`` under torchrun) when available, else cpu."""
    import os

    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda"


def runtime(args, model_path: str | None = None):
    """(model or None, device, autocast dtype) from the shared options. ``--dtype`` casts the
    weights at load (weights and activations in that precision), so no autocast is returned."""
    import torch

    from .checkpoint import load

    device = getattr(args, "device", None) or default_device()
    dtype = getattr(torch, args.dtype) if getattr(args, "dtype", None) else None
    model = load(model_path, device=device, dtype=dtype) if model_path else None
    return model, device, None


def cmd_info(args) -> int:
    from .checkpoint import hf_num_parameters, load

    model = load(args.model)
    cfg = model.config
    info = {**cfg.to_dict(), "parameters": model.num_parameters(), "parameters_hf_layout": hf_num_parameters(cfg),
            "dtype": str(model.embed_tokens.weight.dtype).removeprefix("torch."), "max_nucleotides": cfg.max_nucleotides}
    print(json.dumps(info, indent=2))
    return 0


def cmd_convert(args) -> int:
    from .checkpoint import WEIGHT_FILES, load, save_checkpoint

    out = Path(args.out)
    if Path(args.model).exists() and out.exists() and out.resolve() == Path(args.model).resolve():
        raise ValueError(f"{out} is the input checkpoint; choose another output folder")
    held = [f for f in WEIGHT_FILES if (out / f).exists()]
    if held and not args.force:
        raise ValueError(f"{out} already holds a checkpoint ({held[0]}); pass --force to replace it")
    model = load(args.model, dtype=_dtype(args.dtype), seed=args.seed)
    out = save_checkpoint(model, args.out, safe_serialization=not args.bin)
    print(f"wrote {out} ({model.num_parameters():,} parameters, {model.config.name})")
    return 0


def cmd_merge(args) -> int:
    from .jobs import PartStore

    store = PartStore.open(args.out)
    job = store.manifest["job"]
    if not store.complete():
        missing = store.missing()
        raise ValueError(f"{store.dir}: not every chunk is done yet "
                         f"({'no shard has reached the end of the input' if missing is None else f'missing parts {missing[:10]}'})")
    mod = importlib.import_module(f".{MERGERS[job]}", __package__)
    with store.merge_lock() as held:
        if not held:
            raise ValueError(f"{store.dir}: another process is merging")
        res = mod.merge_outputs(store)
        store.remove()
    print(res.get("summary", f"merged {job}"))
    for o in res["outputs"]:
        print(f"wrote {o}")
    return 0


MERGERS = {"score-variants": "variants", "embed": "embed", "mutagenesis": "mutagenesis", "predict": "finetune"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ntkit", description="Nucleotide Transformer toolkit")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="print a model's configuration and parameter counts")
    s.add_argument("model", help="checkpoint directory or preset name (e.g. nt-v2-50m)")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("convert", help="write a checkpoint or preset in Hugging Face layout")
    s.add_argument("model", help="checkpoint directory or preset name")
    s.add_argument("out", type=Path)
    s.add_argument("--dtype", choices=sorted(DTYPES))
    s.add_argument("--bin", action="store_true", help="pytorch_model.bin instead of model.safetensors")
    s.add_argument("--seed", type=int, default=0, help="seed for a preset's random initialisation")
    s.add_argument("--force", action="store_true", help="replace a checkpoint already in the output folder")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("merge", help="join the parts of a sharded job into its outputs (after every shard has finished)")
    s.add_argument("out", help="the job's first output (or its .parts folder)")
    s.set_defaults(func=cmd_merge)

    for name in COMMAND_MODULES:
        importlib.import_module(f".{name}", __package__).add_cli(sub)
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


if __name__ == "__main__":
    sys.exit(main())

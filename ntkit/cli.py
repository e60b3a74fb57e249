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
    from .checkpoint import load, save_checkpoint

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
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("merge", help="join the parts of a sharded job into its outputs (after every shard has finished)")
    s.add_argument("out", help="the job's first output (or its .parts folder)")
    s.set_defaults(func=cmd_merge)

    for name in COMMAND_MODULES:
        importlib.import_module(f".{name}", __package__).add_cli(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"ntkit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

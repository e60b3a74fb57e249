"""The options every command shares, defined once, and the runtime they resolve to."""

from __future__ import annotations

import os

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16"}


def add_runtime_args(s, *, batch_tokens: bool = True) -> None:
    """--device, --dtype, --no-progress (and --batch-tokens for inference): every command that runs a model."""
    s.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available; cuda:LOCAL_RANK under torchrun)")
    s.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="precision: the weights are loaded in it (bf16/fp16 halve the model's memory; default float32)")
    s.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    if batch_tokens:
        s.add_argument("--batch-tokens", type=int, help="tokens per forward (rows x padded length); default 2048 on CPU, 16384 on GPU")


def add_job_args(s, unit: str = "items") -> None:
    """The options of sharded, resumable jobs (``ntkit.jobs``)."""
    s.add_argument("--shard", help="I/N: run chunks c with c %% N == I (0-based; e.g. $SLURM_ARRAY_TASK_ID/N). "
                   "Under torchrun: RANK/WORLD_SIZE. The last shard to finish writes the outputs")
    s.add_argument("--chunk-size", type=int, default=4096, help=f"{unit} per part file (the unit of sharding and resume)")
    s.add_argument("--restart", action="store_true", help="discard the parts of an earlier run with other options")


def default_device() -> str:
    """cuda (``cuda:LOCAL_RANK`` under torchrun) when available, else cpu."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda"


def dtype_of(name: str | None):
    import torch

    return None if name is None else getattr(torch, DTYPES[name])


def runtime(args, model_path: str | None = None):
    """(model or None, device) from the shared options. ``--dtype`` casts the weights at load, so
    weights and activations are in that precision and no autocast is needed."""
    from ..checkpoint import load

    device = getattr(args, "device", None) or default_device()
    model = load(model_path, device=device, dtype=dtype_of(getattr(args, "dtype", None))) if model_path else None
    return model, device


def report_job(res: dict, out) -> bool:
    """Print what a shard that did not merge waits for; True when the outputs were written."""
    if res["merged"]:
        return True
    print(f"shard {res['shard']}: done; outputs wait for {res['waiting_for']} (`ntkit merge {out}` once every shard has finished)")
    return False

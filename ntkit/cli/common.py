"""The options every command shares, defined once, and the runtime they resolve to."""

from __future__ import annotations

import os

MODEL_HELP = ("a checkpoint folder, a Hugging Face hub name (e.g. InstaDeepAI/nucleotide-transformer-v2-50m-multi-species), "
              "or a preset architecture with --random-init")
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16"}


def add_runtime_args(s, *, batch_tokens: bool = True) -> None:
    """--device, --dtype, --no-progress (and --batch-tokens for inference): every command that runs a model."""
    s.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available; cuda:LOCAL_RANK under torchrun)")
    s.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="precision: the weights are loaded in it (bf16/fp16 halve the model's memory; default float32)")
    s.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    s.add_argument("--random-init", action="store_true",
                   help="accept a preset name as --model: its architecture with random weights (untrained: for tests and timing)")
    add_hub_args(s)
    if batch_tokens:
        s.add_argument("--batch-tokens", type=positive_int(MAX_BATCH_TOKENS),
                       help="tokens per forward (rows x padded length); default 2048 on CPU, 16384 on GPU")


SPECIES_HELP = ("a post-trained NTv3: the species whose conditioning the model runs with (`ntkit info MODEL` lists them); "
                "other models take none")


def add_species_arg(s) -> None:
    """--species: the conditioning of a post-trained NTv3 for the commands that run its encoder."""
    s.add_argument("--species", help=SPECIES_HELP)


def add_hub_args(s) -> None:
    """--revision, --cache-dir, --token: where a hub model (ORG/NAME) comes from."""
    s.add_argument("--revision", help="hub models: a branch, tag or commit of the repository (default: main)")
    s.add_argument("--cache-dir", help="hub models: the Hugging Face cache folder (default: $HF_HUB_CACHE or ~/.cache/huggingface/hub)")
    s.add_argument("--token", help="hub models: an access token for gated or private repositories (default: $HF_TOKEN or the saved login)")


MAX_BATCH_TOKENS = 1 << 26  # 67M tokens per forward: beyond any GPU's memory for NT


def positive_int(limit: int | None = None):
    """An argparse type: an integer >= 1 (and <= ``limit``): 0, -1 or 1e12 are errors at once."""
    import argparse

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{v} must be at least 1")
        if limit is not None and v > limit:
            raise argparse.ArgumentTypeError(f"{v:,} is more than {limit:,}")
        return v

    parse.__name__ = "positive integer"
    return parse


def add_sequence_columns(s) -> None:
    """Which columns of a table input hold the sequence and the id."""
    s.add_argument("--sequence-column", help="column of the sequences in a table input (default: sequence, seq or Sequence)")
    s.add_argument("--id-column", help="column naming the rows (default: id or name, else the row number)")


FORCE_HELP = "use an adapter or head with a base model whose weights differ from the one it was trained on"


def add_job_args(s, unit: str = "items") -> None:
    """The options of sharded, resumable jobs (``ntkit.runtime.jobs``)."""
    s.add_argument("--shard", help="I/N: run chunks c with c %% N == I (0-based; e.g. $SLURM_ARRAY_TASK_ID/N). "
                   "Under torchrun: RANK/WORLD_SIZE. The last shard to finish writes the outputs")
    s.add_argument("--chunk-size", type=positive_int(), default=4096, help=f"{unit} per part file (the unit of sharding and resume)")
    s.add_argument("--restart", action="store_true", help="discard the parts of an earlier run with other options")
    s.add_argument("--no-merge", action="store_true", help="write this shard's parts only; `ntkit merge OUT` joins them "
                   "(a workflow manager's own step: Snakemake, Nextflow)")


def named_files(items: list[str], option: str) -> dict[str, str]:
    """``NAME=FILE`` arguments (``--bed CTCF-bound=ctcf.bed``) as {name: file}."""
    out = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{option} {it!r}: expected NAME=FILE, e.g. CTCF-bound=ctcf.bed")
        out[name] = path
    return out


def default_device() -> str:
    """cuda (``cuda:LOCAL_RANK`` under torchrun) when available, else cpu."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda"


def dtype_of(name: str | None):
    import torch

    return None if name is None else getattr(torch, DTYPES[name])


def check_not_preset(model_path: str | None, random_init: bool) -> None:
    """A preset name is an untrained architecture: refused as a model to run unless asked for."""
    from ntkit.models import registry
    from ntkit.models.checkpoint import is_preset

    if model_path is None or random_init or not is_preset(model_path):
        return
    hub = registry.trained_weights(model_path)
    where = (f"its trained weights are on the Hugging Face hub as {' or '.join(hub)} (`ntkit download {hub[0]}` fills the "
             f"cache; then --model {hub[0]})" if hub else "it has no published weights (a CPU-sized test architecture)")
    raise ValueError(f"{model_path} is a preset: an architecture with random weights, not a trained model; {where}. "
                     "Pass --random-init to run the untrained architecture on purpose")


def runtime(args, model_path: str | None = None):
    """(model or None, ``engine.Runtime``) from the shared options. ``--dtype`` casts the weights
    at load, so weights and activations are in that precision and no autocast is needed. A preset
    name is refused unless ``--random-init`` (``check_not_preset``)."""
    import warnings

    from ntkit.models.checkpoint import load
    from ntkit.runtime.engine import Runtime
    from ntkit.tasks.support import JOBS, require

    check_not_preset(model_path, getattr(args, "random_init", False))
    device = getattr(args, "device", None) or default_device()
    with warnings.catch_warnings():
        if getattr(args, "random_init", False):  # asked for: the "random weights" warning would only repeat it
            warnings.simplefilter("ignore", UserWarning)
        model = load(model_path, device=device, dtype=dtype_of(getattr(args, "dtype", None)), revision=getattr(args, "revision", None),
                     cache_dir=getattr(args, "cache_dir", None), token=getattr(args, "token", None)) if model_path else None
    job = getattr(args, "command", None)
    if model is not None and job in JOBS:  # the job x family matrix: a job that cannot run on this model says so
        require(model, job)
    return model, Runtime(device=device, batch_tokens=getattr(args, "batch_tokens", None), progress=getattr(args, "progress", False))


def report_job(res: dict, out) -> bool:
    """True when this call wrote the outputs (the caller then reports them). Otherwise say why
    not: an identical job finished earlier, or this shard waits for others, with the merge by hand
    for a run where no shard gets to merge. Under torchrun only the merging rank speaks (the
    others' hints would be about a merge that rank does); RANK/WORLD_SIZE set by hand, without
    torchrun, is a shard like ``--shard``: it says so (silence would read as a job that did nothing)."""
    if res.get("already_done"):
        print(f"already done: {', '.join(map(str, res.get('outputs', [out])))} hold this job's results (same inputs, options "
              "and model); nothing was recomputed (--restart recomputes)")
        return False
    if res["merged"]:
        return True
    if "TORCHELASTIC_RUN_ID" not in os.environ:  # set by torchrun for each rank it starts
        print(f"shard {res['shard']}: done; outputs wait for {res['waiting_for']}: the shard that finishes last writes them "
              f"(if none does, `ntkit merge {res.get('parts', out)}` once every shard has finished)")
    return False

"""``ntkit info``, ``ntkit convert``, ``ntkit merge``."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from .common import DTYPES, dtype_of

# The library module whose ``merge_outputs`` joins the parts of each job.
MERGERS = {"score-variants": "variants", "embed": "embed", "mutagenesis": "mutagenesis", "predict": "finetune"}


def register(sub) -> None:
    s = sub.add_parser("info", help="print a model's configuration and parameter counts")
    s.add_argument("model", help="checkpoint directory or preset name (e.g. nt-v2-50m)")
    s.set_defaults(func=info)

    s = sub.add_parser("convert", help="write a checkpoint or preset in Hugging Face layout")
    s.add_argument("model", help="checkpoint directory or preset name")
    s.add_argument("out", type=Path)
    s.add_argument("--dtype", choices=sorted(DTYPES))
    s.add_argument("--bin", action="store_true", help="pytorch_model.bin instead of model.safetensors")
    s.add_argument("--seed", type=int, default=0, help="seed for a preset's random initialisation")
    s.add_argument("--force", action="store_true", help="replace a checkpoint already in the output folder")
    s.set_defaults(func=convert)

    s = sub.add_parser("merge", help="join the parts of a sharded job into its outputs (after every shard has finished)")
    s.add_argument("out", help="the job's first output (or its .parts folder)")
    s.set_defaults(func=merge)


def info(args) -> int:
    from ..checkpoint import hf_num_parameters, load

    model = load(args.model)
    cfg = model.config
    out = {**cfg.to_dict(), "parameters": model.num_parameters(), "parameters_hf_layout": hf_num_parameters(cfg),
           "dtype": str(model.embed_tokens.weight.dtype).removeprefix("torch."), "max_nucleotides": cfg.max_nucleotides}
    print(json.dumps(out, indent=2))
    return 0


def convert(args) -> int:
    from ..checkpoint import WEIGHT_FILES, load, save_checkpoint

    out = Path(args.out)
    if Path(args.model).exists() and out.exists() and out.resolve() == Path(args.model).resolve():
        raise ValueError(f"{out} is the input checkpoint; choose another output folder")
    held = [f for f in WEIGHT_FILES if (out / f).exists()]
    if held and not args.force:
        raise ValueError(f"{out} already holds a checkpoint ({held[0]}); pass --force to replace it")
    model = load(args.model, dtype=dtype_of(args.dtype), seed=args.seed)
    save_checkpoint(model, out, safe_serialization=not args.bin)
    print(f"wrote {out} ({model.num_parameters():,} parameters, {model.config.name})")
    return 0


def merge(args) -> int:
    from ..jobs import PartStore

    store = PartStore.open(args.out)
    job = store.manifest["job"]
    if not store.complete():
        missing = store.missing()
        raise ValueError(f"{store.dir}: not every chunk is done yet "
                         f"({'no shard has reached the end of the input' if missing is None else f'missing parts {missing[:10]}'})")
    mod = importlib.import_module(f"ntkit.{MERGERS[job]}")
    with store.merge_lock() as held:
        if not held:
            raise ValueError(f"{store.dir}: another process is merging")
        res = mod.merge_outputs(store)
        store.remove()
    print(res.get("summary", f"merged {job}"))
    for o in res["outputs"]:
        print(f"wrote {o}")
    return 0

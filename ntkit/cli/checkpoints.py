"""``ntkit info``, ``ntkit convert``, ``ntkit merge``."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from ntkit.cli.common import DTYPES, add_hub_args, check_not_preset, dtype_of

# The library module whose ``merge_outputs`` joins the parts of each job.
MERGERS = {"variant-effects": "perturb", "embed": "embed", "mutagenesis": "mutagenesis", "predict": "finetune", "annotate": "annotate"}  # in ntkit.tasks
MERGE_FUNCTIONS = {"perturb": "merge_variant_effects"}


def register(sub) -> None:
    s = sub.add_parser("info", help="print a model's configuration and parameter counts (and, for a preset, where its trained weights are)")
    s.add_argument("model", help="checkpoint directory, hub name or preset name (e.g. nt-v2-50m)")
    s.add_argument("--tracks", metavar="SPECIES", help="a post-trained NTv3: print the names of this species' tracks, one per line "
                   "(what --outputs of score-variants and mutagenesis selects), instead of the configuration")
    add_hub_args(s)
    s.set_defaults(func=info)

    s = sub.add_parser("download", help="fill the Hugging Face cache with a hub model (NT's trained weights), for offline use")
    s.add_argument("name", help="hub name, e.g. InstaDeepAI/nucleotide-transformer-v2-50m-multi-species, or a preset with published weights")
    add_hub_args(s)
    s.set_defaults(func=download)

    s = sub.add_parser("convert", help="write a checkpoint or preset in Hugging Face layout")
    s.add_argument("model", help="checkpoint directory or preset name")
    s.add_argument("out", type=Path, help="output folder (config.json, model.safetensors, vocab.txt)")
    s.add_argument("--dtype", choices=sorted(DTYPES), help="cast the weights (default: as stored)")
    s.add_argument("--bin", action="store_true", help="pytorch_model.bin instead of model.safetensors")
    s.add_argument("--seed", type=int, default=0, help="seed for a preset's random initialisation")
    s.add_argument("--random-init", action="store_true",
                   help="accept a preset name: its architecture with random weights (the folder is marked as such: every job "
                   "that loads it warns)")
    s.add_argument("--force", action="store_true", help="replace a checkpoint already in the output folder")
    s.set_defaults(func=convert)

    s = sub.add_parser("merge", help="join the parts of a sharded job into its outputs (after every shard has finished)")
    s.add_argument("out", help="the job's first output (or its .parts folder)")
    s.set_defaults(func=merge)


def info(args) -> int:
    import torch

    from ntkit.models import registry
    from ntkit.models.checkpoint import HUB_ID, hub_snapshot, is_preset, load, load_checkpoint
    from ntkit.tasks.support import supported_jobs

    preset = is_preset(args.model)
    source = {}
    if preset:  # shapes only: no weights are made (nt-v1-2.5b would take 10 GB)
        family = registry.for_preset(args.model)
        with torch.device("meta"):
            model = family.model_class(family.presets[args.model])
    elif not Path(args.model).exists() and HUB_ID.fullmatch(args.model):
        folder = hub_snapshot(args.model, args.revision, cache_dir=args.cache_dir, token=args.token)
        model = load_checkpoint(folder)
        source = {"source": args.model, "revision": folder.name, "folder": str(folder)}  # the snapshot's commit
    else:
        model = load(args.model)
        source = {"source": str(Path(args.model).resolve())}
    family = registry.for_model(model)
    cfg = model.config
    if args.tracks:
        if args.tracks not in getattr(cfg, "species", []):
            raise ValueError(f"--tracks {args.tracks}: {args.model} has no tracks for it (species: {getattr(cfg, 'species', [])})")
        print("\n".join(cfg.bigwigs_per_species.get(args.tracks, []) + list(cfg.bed_elements_names)))
        return 0
    out = {"family": family.name, **family.describe(model), "parameters": model.num_parameters(),
           "dtype": str(next(model.parameters()).dtype).removeprefix("torch."), **source, "jobs": supported_jobs(model)}
    if preset:
        hub = registry.trained_weights(args.model)
        out["weights"] = ("a preset is an architecture: random weights; trained weights: " + ", ".join(hub) +
                          f" (`ntkit download {hub[0]}`, then --model {hub[0]})") if hub else \
            "a preset is an architecture: random weights (CPU-sized; no published weights)"
    print(json.dumps(out, indent=2))
    return 0


def download(args) -> int:
    from ntkit.models import registry
    from ntkit.models.checkpoint import hub_snapshot

    name = args.name
    if registry.for_preset(name) is not None:
        if not registry.trained_weights(name):
            raise ValueError(f"{name} is a CPU-sized preset without published weights")
        name = registry.trained_weights(name)[0]
    path = hub_snapshot(name, args.revision, cache_dir=args.cache_dir, token=args.token)
    print(f"{name}: in the cache at {path}; use --model {name}")
    return 0


def convert(args) -> int:
    import warnings

    from ntkit.models.checkpoint import WEIGHT_FILES, load, save_checkpoint

    check_not_preset(args.model, args.random_init)
    out = Path(args.out)
    if Path(args.model).exists() and out.exists() and out.resolve() == Path(args.model).resolve():
        raise ValueError(f"{out} is the input checkpoint; choose another output folder")
    held = [f for f in WEIGHT_FILES if (out / f).exists()]
    if held and not args.force:
        raise ValueError(f"{out} already holds a checkpoint ({held[0]}); pass --force to replace it")
    with warnings.catch_warnings():
        if args.random_init:  # asked for: the "random weights" warning would only repeat it
            warnings.simplefilter("ignore", UserWarning)
        model = load(args.model, dtype=dtype_of(args.dtype), seed=args.seed)
    save_checkpoint(model, out, safe_serialization=not args.bin)
    marked = " (random weights, marked as such)" if getattr(model, "random_init", None) else ""
    print(f"wrote {out} ({model.num_parameters():,} parameters, {model.config.name}){marked}")
    return 0


def merge(args) -> int:
    from ntkit.runtime.jobs import PartStore, finish

    store = PartStore.open(args.out)
    job = store.manifest.get("job")
    if job not in MERGERS:
        raise ValueError(f"{store.dir / 'manifest.json'}: unknown job {job!r} (ntkit merges {', '.join(MERGERS)})")
    mod = importlib.import_module(f"ntkit.tasks.{MERGERS[job]}")
    res = finish(store, getattr(mod, MERGE_FUNCTIONS.get(MERGERS[job], "merge_outputs")), wait=False)
    print(res.get("summary", f"merged {job}"))
    for o in res["outputs"]:
        print(f"wrote {o}")
    return 0

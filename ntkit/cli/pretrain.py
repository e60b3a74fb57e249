"""``ntkit pretrain``: a YAML recipe, overridden by options; torchrun for several processes."""

from __future__ import annotations

import sys


def register(sub) -> None:
    s = sub.add_parser("pretrain", help="masked-language-model pretraining (torchrun for several processes)")
    s.add_argument("--config", required=True, help="a shipped recipe by name (tiny-cpu, human-ref, 1000g, multispecies: ntkit/recipes) or a YAML file")
    s.add_argument("--out-dir", help="run folder: checkpoints/, model/, logs (default: the recipe's out_dir)")
    s.add_argument("--max-steps", type=int, help="optimizer steps (default: the recipe's)")
    s.add_argument("--max-minutes", type=float, help="wall-time budget; stops with a checkpoint (default: the recipe's, or none)")
    s.add_argument("--batch-size", type=int, help="windows per micro-batch per process (default: the recipe's)")
    s.add_argument("--tokens-per-step", type=int, help="tokens per optimizer step over all processes, by accumulation (default: the recipe's)")
    s.add_argument("--strategy", choices=["ddp", "fsdp"], help="under torchrun (default: the recipe's)")
    s.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    s.add_argument("--precision", choices=["auto", "fp32", "bf16"], help="auto: bf16 on GPUs that support it (default: the recipe's)")
    s.add_argument("--seed", type=int, help="seed of windows, masking and initialisation (default: the recipe's)")
    s.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    s.set_defaults(func=run)


def run(args) -> int:
    from ntkit.tasks.pretrain import PretrainConfig, TrainingDiverged, pretrain, teardown_distributed

    over = {k: getattr(args, k) for k in ("out_dir", "max_steps", "max_minutes", "batch_size", "tokens_per_step", "strategy",
                                          "device", "precision", "seed", "progress")}
    cfg = PretrainConfig.from_yaml(args.config, **over)
    in_step = False
    try:
        pretrain(cfg)
        in_step = True
    except TrainingDiverged as e:  # every rank sees the same all-reduced loss and stops together
        in_step = True
        print(f"ntkit pretrain: stopped: {e}", file=sys.stderr, flush=True)
        return 3
    finally:
        teardown_distributed(in_step)
    return 0

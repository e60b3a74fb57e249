"""``ntkit demo``: the main job, offline."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    s = sub.add_parser("demo", help="pretrain a tiny model on chr20, evaluate, score variants, benchmark (offline)")
    s.add_argument("--out", default="runs/demo", help="output folder (pretrained model, tables, annotated VCF, plots)")
    s.add_argument("--data", help="data folder (default $NTKIT_DATA, else the demo data shipped with ntkit)")
    s.add_argument("--minutes", type=float, default=3.0, help="pretraining time budget")
    s.add_argument("--tasks", nargs="+", default=["promoter_all", "enhancers", "splice_sites_donors", "H3K4me3"],
                   help="NT downstream tasks of the probing benchmark (task names of the sample table)")
    s.add_argument("--seed", type=int, default=0, help="seed of pretraining, folds and probes")
    s.set_defaults(func=run)


def run(args) -> int:
    from ntkit.tasks.demo import run as run_demo

    run_demo(Path(args.out), args.data, args.minutes, args.tasks, args.seed)
    return 0

"""``ntkit demo``: the main job, offline."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ntkit.tasks.options import DEMO_BINS, DEMO_REVERSE_COMPLEMENT, DEMO_TASKS, DOWNSTREAM_METHODS, METHODS


def register(sub) -> None:
    s = sub.add_parser("demo", help="pretrain a small model on chr20, evaluate, score variants, benchmark, write its model card (offline)")
    s.add_argument("--out", default="runs/demo", help="output folder (pretrained model + model card, tables, annotated VCF, plots)")
    s.add_argument("--data", help="data folder (default $NTKIT_DATA, else the demo data shipped with ntkit)")
    s.add_argument("--recipe", default="tiny-cpu",
                   help="pretraining recipe: a shipped one by name (tiny-cpu; ntv3-small-cpu, the one-CPU-hour model) or a YAML file")
    s.add_argument("--minutes", type=float, default=3.0, help="pretraining time budget")
    s.add_argument("--tasks", nargs="+", default=list(DEMO_TASKS),
                   help="NT downstream tasks of the probing benchmark (task names of the sample table, or 'all')")
    s.add_argument("--folds", type=int, default=5, help="cross-validation folds of the downstream benchmark")
    s.add_argument("--methods", nargs="+", choices=METHODS, default=list(DOWNSTREAM_METHODS),
                   help="downstream methods (add ia3 random-ia3 for the fine-tuning figure)")
    s.add_argument("--extra-tasks", nargs="+", default=[], metavar="TABLE",
                   help="further task tables, probed apart and added to the card (a path, or a name under the data folder: "
                   "tasks/human_enhancers_cohn.tsv, 6,948 sequences, resolves what the sample's small folds cannot)")
    s.add_argument("--reverse-complement", action=argparse.BooleanOptionalAction, default=DEMO_REVERSE_COMPLEMENT,
                   help="frozen features of both strands: embeddings averaged with the reverse complement's, 6-mers counted on "
                   "both (--no-reverse-complement: the forward strand, NT's protocol)")
    s.add_argument("--bins", type=int, default=DEMO_BINS,
                   help="the probes read the means of this many equal segments of each sequence, concatenated (1: one mean, NT's protocol)")
    s.add_argument("--seed", type=int, default=0, help="seed of pretraining, folds and probes")
    s.set_defaults(func=run)


def run(args) -> int:
    from ntkit.tasks.demo import run as run_demo

    command = "ntkit " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["demo"] else None
    run_demo(Path(args.out), args.data, args.minutes, args.tasks, args.seed, recipe=args.recipe, folds=args.folds,
             methods=args.methods, command=command, extra_tasks=args.extra_tasks,
             reverse_complement=args.reverse_complement, bins=args.bins)
    return 0

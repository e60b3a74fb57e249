"""``ntkit benchmark``: downstream tasks, k-fold CV, probing / fine-tuning / baselines."""

from __future__ import annotations

from ntkit.cli.common import MODEL_HELP, add_runtime_args, add_species_arg, runtime


def register(sub) -> None:
    from ntkit.tasks.options import LEARNING_RATES, METHODS

    s = sub.add_parser("benchmark", help="downstream tasks with k-fold CV: probing, fine-tuning and baselines")
    s.add_argument("tasks", nargs="+", help="task tables (TSV/CSV/parquet) or task folders")
    s.add_argument("--model", help=MODEL_HELP + "; not needed for --methods kmer")
    s.add_argument("--methods", nargs="+", default=["kmer", "probe", "random-probe", "ia3"], choices=METHODS,
                   help="kmer: 6-mer counts + logistic regression; probe/mlp: frozen embeddings; ia3/lora/full: fine-tuning; random-*: the same on a random model")
    s.add_argument("--only", nargs="+", help="task names to run")
    s.add_argument("--folds", type=int, default=10, help="cross-validation folds (fewer when a class has fewer members)")
    s.add_argument("--layer", type=int, default=-1, help="layer probed")
    s.add_argument("--reverse-complement", action="store_true", help="both strands: embeddings averaged with the reverse "
                   "complement's, 6-mers counted on both, fine-tuning on random strands predicting the mean over both "
                   "(default: the forward strand, NT's protocol)")
    s.add_argument("--bins", type=int, default=1, help="probes read the means of this many equal segments of each sequence, "
                   "concatenated (default 1: one mean, NT's protocol)")
    s.add_argument("--phases", type=int, default=1, help="6-mer models: probes read the embeddings averaged over this many "
                   "frames of each strand (6: every 6-mer; default 1: the frame from the first base, NT's protocol)")
    s.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs (early stopping on validation MCC)")
    s.add_argument("--lr", type=float, help="fine-tuning learning rate (default per method: "
                   + ", ".join(f"{k} {v:g}" for k, v in LEARNING_RATES.items()) + ")")
    s.add_argument("--batch-size", type=int, default=16, help="sequences per step (fine-tuning) and per forward")
    s.add_argument("--seed", type=int, default=0, help="seed of the folds, probes and fine-tuning")
    s.add_argument("--out", default="runs/benchmark", help="folder: results.csv, summary.csv, table.md, mcc.png, meta.json")
    add_species_arg(s)
    add_runtime_args(s, batch_tokens=False)
    s.set_defaults(func=run)


def run(args) -> int:
    from ntkit.tasks.benchmark import load_tasks, run_benchmark, write_report

    model, rt = runtime(args, args.model)
    if model is not None:
        model = model.backbone(args.species)  # SegmentNT: its NT v2 backbone; a post-trained NTv3: conditioned
    elif args.species:
        raise ValueError("--species needs --model (a post-trained NTv3)")
    tasks = [t for p in args.tasks for t in load_tasks(p, None)]
    if args.only:
        tasks = [t for t in tasks if t.name in set(args.only)]
    res = run_benchmark(tasks, model, methods=args.methods, n_folds=args.folds, layer=args.layer, reverse_complement=args.reverse_complement,
                        bins=args.bins, phases=args.phases, seed=args.seed, finetune_epochs=args.epochs, finetune_lr=args.lr, batch_size=args.batch_size, runtime=rt)
    meta = {"model": args.model, "species": args.species, "methods": args.methods, "folds": args.folds, "layer": args.layer,
            "reverse_complement": args.reverse_complement, "bins": args.bins, "phases": args.phases, "seed": args.seed,
            "classes": {t.name: list(t.classes) for t in tasks}}
    paths = write_report(res, args.out, meta)
    print(paths["table"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values() if p.exists()))
    return 0

"""``ntkit probe``: k-fold probing of frozen embeddings, layer by layer."""

from __future__ import annotations

from pathlib import Path

from ntkit.cli.common import MODEL_HELP, add_runtime_args, add_species_arg, runtime


def register(sub) -> None:
    s = sub.add_parser("probe", help="probe frozen embeddings of a labelled table with k-fold CV")
    s.add_argument("input", help="TSV/CSV/parquet with sequence and label columns (and a task column: one probe per task)")
    s.add_argument("--task-name", help="probe only this task of a table with a 'task' column")
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument("--layers", type=int, nargs="+", default=[-1], help="probe each of these layers")
    s.add_argument("--probe", choices=["logreg", "mlp"], default="logreg", help="logistic regression or a one-hidden-layer MLP")
    s.add_argument("--folds", type=int, default=10, help="stratified folds (fewer when a class has fewer members)")
    s.add_argument("--seed", type=int, default=0, help="seed of the folds and the probe")
    add_species_arg(s)
    add_runtime_args(s)
    s.set_defaults(func=run)


def run(args) -> int:
    from ntkit.io.labels import Classes, select_task
    from ntkit.io.sequences import read_sequences
    from ntkit.tasks.embed import embed
    from ntkit.tasks.probe import cross_validate_probe

    _, seqs, t = read_sequences(args.input)
    if t is None or "label" not in t:
        raise ValueError(f"{args.input}: no 'label' column (have {[] if t is None else list(t.columns)})")
    if args.task_name or t is None or "task" not in t or t["task"].nunique() < 2:
        seqs, t = select_task(args.input, seqs, t, args.task_name)
        groups = [(args.task_name or Path(args.input).name.split(".")[0], seqs, t)]
    else:  # several tasks in one table: one probe per task, never pooled
        groups = [(str(name), [seqs[i] for i in g.index], g) for name, g in t.groupby("task", sort=True)]
    model, rt = runtime(args, args.model)
    model = model.backbone(args.species)  # before any output: a post-trained NTv3 without --species is refused here
    print("| task | n | layer | folds | MCC (mean ± 2 SD over folds) | macro F1 (mean ± 2 SD) |\n|---|---|---|---|---|---|")
    for name, s, g in groups:
        y = Classes.fit(g["label"], f"{args.input} (task {name})").encode(g["label"])
        emb = embed(model, s, layers=args.layers, runtime=rt)
        for layer in args.layers:
            r = cross_validate_probe(emb[layer], y, args.probe, args.folds, args.seed)
            print(f"| {name} | {len(s)} | {layer} | {r['folds']} | {r['mcc_mean']:.3f} ± {r['mcc_2sd']:.3f} | "
                  f"{r['f1_mean']:.3f} ± {r['f1_2sd']:.3f} |")
    return 0

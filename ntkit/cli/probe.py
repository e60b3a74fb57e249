"""``ntkit probe``: k-fold probing of frozen embeddings, layer by layer."""

from __future__ import annotations

from .common import add_runtime_args, runtime


def register(sub) -> None:
    s = sub.add_parser("probe", help="probe frozen embeddings of a labelled table with k-fold CV")
    s.add_argument("input", help="TSV/CSV/parquet with sequence and label columns")
    s.add_argument("--model", required=True)
    s.add_argument("--layers", type=int, nargs="+", default=[-1], help="probe each of these layers")
    s.add_argument("--probe", choices=["logreg", "mlp"], default="logreg")
    s.add_argument("--folds", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)
    add_runtime_args(s)
    s.set_defaults(func=run)


def run(args) -> int:
    from ..embed import embed
    from ..labels import read_labelled
    from ..probe import cross_validate_probe

    seqs, y, _ = read_labelled(args.input, "classification")
    model, device = runtime(args, args.model)
    emb = embed(model, seqs, layers=args.layers, batch_tokens=args.batch_tokens, device=device, progress=args.progress)
    print("| layer | folds | MCC (mean ± 2 SD) | macro F1 |\n|---|---|---|---|")
    for layer in args.layers:
        r = cross_validate_probe(emb[layer], y, args.probe, args.folds, args.seed)
        print(f"| {layer} | {r['folds']} | {r['mcc_mean']:.3f} ± {r['mcc_2sd']:.3f} | {r['f1_mean']:.3f} ± {r['f1_2sd']:.3f} |")
    return 0

"""``ntkit splice build | train | evaluate | predict``: splice sites at nucleotide resolution."""

from __future__ import annotations

from pathlib import Path

from .common import add_runtime_args, runtime


def register(sub) -> None:
    s = sub.add_parser("splice", help="nucleotide-level splice sites: build data, train, evaluate, predict")
    ss = s.add_subparsers(dest="splice_command", required=True)

    b = ss.add_parser("build", help="labelled windows from a FASTA and a transcript table")
    b.add_argument("--fasta", required=True)
    b.add_argument("--transcripts", required=True, help="SpliceAI canonical table or GTF/GFF")
    b.add_argument("--chroms", nargs="+", help="keep these chromosomes")
    b.add_argument("--window-bp", type=int, default=5994)
    b.add_argument("--flank", type=int, default=0)
    b.add_argument("--max-windows", type=int)
    b.add_argument("--min-sites", type=int, default=0, help="keep windows with at least this many sites")
    b.add_argument("--context", type=int, default=0, help="bp of unlabelled sequence the model sees on each side of a window")
    b.add_argument("--out", required=True, help=".npz")
    b.set_defaults(func=build)

    t = ss.add_parser("train", help="train a per-nucleotide head on NT (frozen, IA3 or full) or on the bases alone")
    t.add_argument("--model", required=True)
    t.add_argument("--data", required=True, help="windows from `ntkit splice build`")
    t.add_argument("--valid", help="validation windows (held-out genes): early stopping on their PR-AUC")
    t.add_argument("--method", choices=["ia3", "full", "frozen"], default="ia3")
    t.add_argument("--head", choices=["linear", "segment", "bases"], default="segment",
                   help="segment: NT embeddings + base stem -> dilated residual convolutions; bases: the same without NT; linear: token -> 6x3")
    t.add_argument("--channels", type=int, default=32)
    t.add_argument("--loss", choices=["ce", "focal"], default="focal")
    t.add_argument("--eval-every", type=int, default=200)
    t.add_argument("--patience", type=int, default=5)
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--lr", type=float)
    t.add_argument("--batch-size", type=int, default=4)
    t.add_argument("--max-minutes", type=float)
    t.add_argument("--site-weight", type=float, default=10.0, help="loss weight of acceptor/donor positions vs none")
    t.add_argument("--out", required=True)
    add_runtime_args(t, batch_tokens=False)
    t.set_defaults(func=train)

    e = ss.add_parser("evaluate", help="top-k accuracy and PR-AUC beside MaxEntScan and a PWM")
    e.add_argument("--splice-model", help="from `ntkit splice train` (omit for baselines only)")
    e.add_argument("--model", help="base model (IA3)")
    e.add_argument("--test", required=True)
    e.add_argument("--train", help="training windows (fits the PWM baseline)")
    e.add_argument("--maxentscan-dir", required=True, help="folder with maxentscan_score{5,3}_matrix.txt")
    e.add_argument("--out", help="CSV")
    add_runtime_args(e)
    e.set_defaults(func=evaluate)

    p = ss.add_parser("predict", help="per-base acceptor/donor probabilities in genome coordinates")
    p.add_argument("--splice-model", required=True)
    p.add_argument("--model")
    p.add_argument("--data", required=True, help="windows from `ntkit splice build`")
    p.add_argument("--min-prob", type=float, default=0.01)
    p.add_argument("--out", required=True, help=".tsv (and .bedgraph tracks beside it)")
    add_runtime_args(p)
    p.set_defaults(func=predict)

    v = ss.add_parser("score-variants", help="SpliceAI-style delta scores of VCF alleles from a trained splice model")
    v.add_argument("--splice-model", required=True)
    v.add_argument("--model", help="base model (IA3 / frozen splice models)")
    v.add_argument("--vcf", required=True)
    v.add_argument("--fasta", required=True)
    v.add_argument("--transcripts", required=True, help="SpliceAI canonical table or GTF/GFF (gene strand and span)")
    v.add_argument("--distance", type=int, default=50, help="bases each side of the variant where gains and losses are sought")
    v.add_argument("--out", required=True, nargs="+", help=".vcf/.vcf.gz (NT_SPLICE in INFO, SpliceAI's layout) and/or .tsv/.csv/.parquet")
    add_runtime_args(v, batch_tokens=False)
    v.set_defaults(func=score_variants)


def build(args) -> int:
    from ..genome import Genome
    from ..jobs import check_output
    from ..splice import build_windows, read_transcripts

    check_output(args.out, [args.fasta, args.transcripts])
    tx = read_transcripts(args.transcripts, args.chroms)
    w = build_windows(Genome(args.fasta), tx, args.window_bp, args.flank, args.max_windows, min_sites=args.min_sites, context=args.context)
    w.save(args.out)
    print(f"{len(tx)} transcripts -> {len(w)} windows of <= {args.window_bp} bp; labels {w.counts()}; skipped {dict(w.skipped) or 'none'}")
    return 0


def train(args) -> int:
    from ..jobs import check_output
    from ..splice import SpliceTrainConfig, SpliceWindows, save_splice_model, train_splice

    check_output(Path(args.out) / "splice_config.json", [args.data])
    base, device = runtime(args, args.model)
    data = SpliceWindows.load(args.data)
    valid = SpliceWindows.load(args.valid) if args.valid else None
    lr = args.lr or (1e-4 if args.method == "full" and args.head == "linear" else 1e-3 if args.head != "linear" else 3e-3)
    cfg = SpliceTrainConfig(method=args.method, head=args.head, channels=args.channels, lr=lr, epochs=args.epochs,
                            batch_size=args.batch_size, max_minutes=args.max_minutes, site_weight=args.site_weight, loss=args.loss,
                            eval_every=args.eval_every, patience=args.patience)
    m = train_splice(base, data, cfg, device=device, progress=args.progress, valid=valid)
    best = f"; best validation PR-AUC {m.best_valid_prauc:.3f}" if m.best_valid_prauc is not None else ""
    print(f"{m.trainable_parameters():,} trainable parameters, {m.steps} steps{best}; wrote {save_splice_model(m, args.out)}")
    return 0


def evaluate(args) -> int:
    from ..jobs import atomic_output, check_output
    from ..splice import MaxEntScan, SitePWM, SpliceWindows, evaluate_splice, load_splice_model, results_table

    if args.out:
        check_output(args.out, [args.test])
    base, device = runtime(args, args.model if args.splice_model else None)
    test = SpliceWindows.load(args.test)
    d = Path(args.maxentscan_dir)
    baselines = {"MaxEntScan": MaxEntScan(d / "maxentscan_score5_matrix.txt", d / "maxentscan_score3_matrix.txt")}
    if args.train:
        baselines["PWM"] = SitePWM().fit(SpliceWindows.load(args.train))
    model = load_splice_model(args.splice_model, base).to(device) if args.splice_model else None
    df = evaluate_splice(model, test, baselines, device=device)
    print(f"{len(test)} test windows, sites {test.counts()}")
    print(results_table(df))
    if args.out:
        with atomic_output(args.out) as tmp:
            df.to_csv(tmp, index=False)
    return 0


def predict(args) -> int:
    from ..jobs import atomic_output, check_output
    from ..splice import SpliceWindows, load_splice_model, predict_windows, to_genome_table, write_bedgraph

    out = check_output(args.out, [args.data])
    base, device = runtime(args, args.model)
    model = load_splice_model(args.splice_model, base).to(device)
    data = SpliceWindows.load(args.data)
    probs = predict_windows(model, data, device=device, progress=args.progress, batch_tokens=args.batch_tokens)
    t = to_genome_table(data, probs, args.min_prob)
    with atomic_output(out) as tmp:
        t.to_csv(tmp, sep="\t", index=False)
    for col in ("p_acceptor", "p_donor"):
        for strand, tag in (("+", "plus"), ("-", "minus")):
            write_bedgraph(t, out.with_name(f"{out.stem}.{col[2:]}.{tag}.bedgraph"), col, strand)
    print(f"wrote {out} ({len(t):,} positions with p >= {args.min_prob}) and bedGraph tracks")
    return 0


def score_variants(args) -> int:
    from ..jobs import check_output, write_dataframe
    from ..splice import load_splice_model, read_transcripts
    from ..splice.variants import splice_variant_scores, write_splice_vcf

    outs = [check_output(o, [args.vcf, args.fasta]) for o in args.out]
    base, device = runtime(args, args.model)
    model = load_splice_model(args.splice_model, base).to(device)
    table = splice_variant_scores(model, args.vcf, args.fasta, read_transcripts(args.transcripts), distance=args.distance,
                                  device=device, progress=args.progress)
    for out in outs:
        name = out.name.lower()
        if name.endswith((".vcf", ".vcf.gz", ".vcf.bgz")):
            write_splice_vcf(table, args.vcf, out)
        else:
            write_dataframe(table, out)
        print(f"wrote {out}")
    print(f"{int((table['status'] == 'scored').sum())}/{len(table)} alleles scored; skipped {table.loc[table['status'] != 'scored', 'status'].value_counts().to_dict() or 'none'}")
    return 0

"""``ntkit splice build | train | evaluate | predict``: splice sites at nucleotide resolution."""

from __future__ import annotations

import warnings
from pathlib import Path

from ntkit.cli.common import FORCE_HELP, MODEL_HELP, add_job_args, add_runtime_args, positive_int, runtime


def register(sub) -> None:
    from ntkit.cli.report import add_report_args
    from ntkit.cli.variants import add_gain_loss_args
    from ntkit.tasks.options import SpliceTrainConfig as C

    s = sub.add_parser("splice", help="nucleotide-level splice sites: build data, train, evaluate, predict")
    ss = s.add_subparsers(dest="splice_command", required=True)

    b = ss.add_parser("build", help="labelled windows from a FASTA and a transcript table")
    b.add_argument("--fasta", required=True, help="reference FASTA (bgzip + faidx, or plain)")
    b.add_argument("--transcripts", required=True, help="SpliceAI canonical table or GTF/GFF")
    b.add_argument("--chroms", nargs="+", help="keep these chromosomes")
    b.add_argument("--regions", nargs="+", help="keep transcripts lying inside these chrom:start-end regions (1-based), "
                   "e.g. a training and a test stretch of one chromosome")
    b.add_argument("--window-bp", type=int, default=5994, help="labelled bases per window")
    b.add_argument("--flank", type=int, default=0, help="bases before a transcript's start and after its end also windowed")
    b.add_argument("--max-windows", type=int, help="keep at most this many windows (default: all)")
    b.add_argument("--min-sites", type=int, default=0, help="keep windows with at least this many sites")
    b.add_argument("--context", type=int, default=0, help="bp of unlabelled sequence the model sees on each side of a window")
    b.add_argument("--out", required=True, help=".npz")
    b.set_defaults(func=build)

    t = ss.add_parser("train", help="train a per-nucleotide head on NT (frozen, IA3 or full) or on the bases alone")
    t.add_argument("--model", required=True, help=MODEL_HELP)
    t.add_argument("--data", required=True, help="windows from `ntkit splice build`")
    t.add_argument("--valid", help="validation windows (held-out genes): early stopping on their PR-AUC")
    t.add_argument("--method", choices=["ia3", "full", "frozen"], help="what of the base model trains (default: ia3; frozen with --head bases)")
    t.add_argument("--head", choices=["linear", "segment", "bases"], default=C.head,
                   help="segment: NT embeddings + base stem -> dilated residual convolutions; bases: the same without NT; linear: token -> 6x3")
    t.add_argument("--channels", type=int, default=C.channels, help="width of the convolutional heads")
    t.add_argument("--loss", choices=["ce", "focal"], default=C.loss, help="weighted cross-entropy, or its focal form (hard positions)")
    t.add_argument("--eval-every", type=int, default=C.eval_every, help="steps between validation evaluations (with --valid)")
    t.add_argument("--patience", type=int, default=C.patience, help="evaluations without a better validation PR-AUC before stopping")
    t.add_argument("--epochs", type=int, default=C.epochs, help="passes over the windows at most")
    t.add_argument("--lr", type=float, help="learning rate (default: 1e-3 convolutional heads; 3e-3 linear, 1e-4 linear + full)")
    t.add_argument("--batch-size", type=int, default=C.batch_size, help="windows per step")
    t.add_argument("--max-minutes", type=float, help="wall-time budget (default: none)")
    t.add_argument("--site-weight", type=float, default=C.site_weight, help="loss weight of acceptor/donor positions vs none")
    t.add_argument("--out", required=True, help="splice model folder")
    add_runtime_args(t, batch_tokens=False)
    t.set_defaults(func=train)

    e = ss.add_parser("evaluate", help="top-k accuracy and PR-AUC beside MaxEntScan and a PWM")
    e.add_argument("--splice-model", nargs="*", default=[], help="splice models to compare: folders of `ntkit splice train`, "
                   "`spliceai` (SpliceAI's published ensemble: `pip install --no-deps spliceai`; weights CC BY-NC 4.0) or a folder "
                   "of its .h5 files (omit for baselines only)")
    e.add_argument("--fasta", help="reference FASTA: the context SpliceAI reads beyond each window (5,000 bases each side; "
                   "without it, N)")
    e.add_argument("--model", help="base model (IA3)")
    e.add_argument("--test", required=True, help="windows from `ntkit splice build` (held-out genes or chromosomes)")
    e.add_argument("--train", help="training windows (fits the PWM baseline)")
    e.add_argument("--maxentscan-dir", help="folder with maxentscan_score{5,3}_matrix.txt (`ntkit data fetch maxentscan`); "
                   "without it MaxEntScan is left out")
    e.add_argument("--out", help="CSV")
    e.add_argument("--force", action="store_true", help=FORCE_HELP)
    add_runtime_args(e)
    e.set_defaults(func=evaluate)

    p = ss.add_parser("predict", help="per-base acceptor/donor probabilities in genome coordinates")
    p.add_argument("--splice-model", required=True, help="folder from `ntkit splice train`, or `spliceai` (SpliceAI's published "
                   "ensemble) or a folder of its .h5 files")
    p.add_argument("--model", help="base model (for IA3 / frozen splice models)")
    p.add_argument("--data", required=True, help="windows from `ntkit splice build`")
    p.add_argument("--fasta", help="reference FASTA: SpliceAI's context beyond each window (without it, N)")
    p.add_argument("--min-prob", type=float, default=0.01, help="positions with a lower acceptor and donor probability are left out of the table")
    p.add_argument("--out", required=True, help=".tsv (and .bedgraph tracks beside it)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    add_runtime_args(p)
    p.set_defaults(func=predict)

    v = ss.add_parser("score-variants", help="SpliceAI-style delta scores of VCF alleles per gene from a trained splice model "
                      "(score-variants --splice-model; sharded, resumable)")
    v.add_argument("--splice-model", required=True, help="folder from `ntkit splice train`, or `spliceai` (SpliceAI's published "
                   "ensemble: `pip install --no-deps spliceai`; weights CC BY-NC 4.0) or a folder of its .h5 files")
    v.add_argument("--model", help="base model (IA3 / frozen splice models)")
    v.add_argument("--vcf", required=True, help="VCF (sorted)")
    v.add_argument("--fasta", required=True, help="reference FASTA")
    v.add_argument("--transcripts", "--annotation", dest="transcripts", required=True,
                   help="genes: grch37 / grch38 (SpliceAI's gene tables, its -A), a SpliceAI transcript table or a GTF/GFF")
    add_gain_loss_args(v)
    v.add_argument("--tile-stride-bp", type=positive_int(), help="grid step of the shared reference windows (default 128, "
                   "SpliceAI 1024; alleles up to this long)")
    v.add_argument("--out", required=True, nargs="+", help=".vcf/.vcf.gz (NT_SPLICE in INFO, SpliceAI's layout) and/or .tsv/.csv/.parquet")
    v.add_argument("--force", action="store_true", help=FORCE_HELP)
    add_job_args(v, "records")
    add_report_args(v)
    add_runtime_args(v)
    v.set_defaults(func=score_variants)


def build(args) -> int:
    from ntkit.io.genome import Genome
    from ntkit.runtime.jobs import check_output
    from ntkit.tasks.splice import build_windows, read_transcripts

    check_output(args.out, [args.fasta, args.transcripts])
    tx = read_transcripts(args.transcripts, args.chroms)
    if args.regions:
        from ntkit.io.genome import Interval

        ivs = [Interval.parse(r) for r in args.regions]
        tx = [t for t in tx if any(iv.overlaps(t.chrom, t.start, t.end) and iv.start <= t.start and t.end <= iv.end for iv in ivs)]
    w = build_windows(Genome(args.fasta), tx, args.window_bp, args.flank, args.max_windows, min_sites=args.min_sites, context=args.context)
    w.save(args.out)
    print(f"{len(tx)} transcripts -> {len(w)} windows of <= {args.window_bp} bp; labels {w.counts()}; skipped {dict(w.skipped) or 'none'}")
    return 0


def train(args) -> int:
    from ntkit.runtime.jobs import check_output
    from ntkit.tasks.splice import SpliceTrainConfig, SpliceWindows, save_splice_model, train_splice

    check_output(Path(args.out) / "splice_config.json", [args.data])
    base, rt = runtime(args, args.model)
    data = SpliceWindows.load(args.data)
    valid = SpliceWindows.load(args.valid) if args.valid else None
    cfg = SpliceTrainConfig(method=args.method, head=args.head, channels=args.channels, lr=args.lr, epochs=args.epochs,
                            batch_size=args.batch_size, max_minutes=args.max_minutes, site_weight=args.site_weight, loss=args.loss,
                            eval_every=args.eval_every, patience=args.patience)
    m = train_splice(base, data, cfg, valid=valid, runtime=rt)
    best = f"; best validation PR-AUC {m.best_valid_prauc:.3f}" if m.best_valid_prauc is not None else ""
    print(f"{m.trainable_parameters():,} trainable parameters, {m.steps} steps{best}; wrote {save_splice_model(m, args.out)}")
    return 0


def evaluate(args) -> int:
    from ntkit.io.genome import Genome
    from ntkit.runtime.jobs import atomic_output, check_output
    from ntkit.tasks.predictors import is_spliceai, load_predictor, splice_window_probabilities
    from ntkit.tasks.splice import MaxEntScan, SitePWM, SpliceWindows, evaluate_splice, load_splice_model, results_table

    if args.out:
        check_output(args.out, [args.test])
    ours = [m for m in args.splice_model if not is_spliceai(m)]
    if len(ours) > 1:
        raise ValueError("one splice model of `ntkit splice train` per evaluation (plus any SpliceAI models)")
    base, rt = runtime(args, args.model if ours else None)
    test = SpliceWindows.load(args.test)
    baselines = {}
    if args.maxentscan_dir:
        d = Path(args.maxentscan_dir)
        baselines["MaxEntScan"] = MaxEntScan(d / "maxentscan_score5_matrix.txt", d / "maxentscan_score3_matrix.txt")
    if args.train:
        baselines["PWM"] = SitePWM().fit(SpliceWindows.load(args.train))
    model = load_splice_model(ours[0], base, force=args.force) if ours else None
    genome = Genome(args.fasta) if args.fasta else None
    predictions = {}
    for m in args.splice_model:
        if is_spliceai(m):
            p = load_predictor(None, splice_model=m)
            if genome is None:
                warnings.warn(f"{m}: without --fasta each window is read with N beyond it: SpliceAI sees less context than it "
                              "was trained with")
            predictions[f"{p.name} ({m})"] = splice_window_probabilities(p, test, genome, rt)
    df = evaluate_splice(model, test, baselines, runtime=rt, predictions=predictions)
    print(f"{len(test)} test windows, sites {test.counts()}")
    print(results_table(df))
    if args.out:
        with atomic_output(args.out) as tmp:
            df.to_csv(tmp, index=False)
    return 0


def predict(args) -> int:
    from ntkit.io.genome import Genome
    from ntkit.runtime.jobs import atomic_output, check_output
    from ntkit.tasks.predictors import is_spliceai, load_predictor, splice_window_probabilities
    from ntkit.tasks.splice import SpliceWindows, load_splice_model, predict_windows, to_genome_table, write_bedgraph

    out = check_output(args.out, [args.data])
    data = SpliceWindows.load(args.data)
    if is_spliceai(args.splice_model):
        _, rt = runtime(args, None)
        probs = splice_window_probabilities(load_predictor(None, splice_model=args.splice_model), data,
                                            Genome(args.fasta) if args.fasta else None, rt)
    else:
        base, rt = runtime(args, args.model)
        probs = predict_windows(load_splice_model(args.splice_model, base, force=args.force), data, runtime=rt)
    t = to_genome_table(data, probs, args.min_prob)
    with atomic_output(out) as tmp:
        t.to_csv(tmp, sep="\t", index=False)
    for col in ("p_acceptor", "p_donor"):
        for strand, tag in (("+", "plus"), ("-", "minus")):
            write_bedgraph(t, out.with_name(f"{out.stem}.{col[2:]}.{tag}.bedgraph"), col, strand)
    print(f"wrote {out} ({len(t):,} positions with p >= {args.min_prob}) and bedGraph tracks")
    return 0


def score_variants(args) -> int:
    from ntkit.cli.common import report_job
    from ntkit.cli.report import write as write_report
    from ntkit.cli.variants import table_of
    from ntkit.tasks.perturb import EffectOptions, variant_effects_to_files
    from ntkit.tasks.predictors import SpliceSites, is_spliceai, load_predictor
    from ntkit.tasks.splice import load_splice_model

    if is_spliceai(args.splice_model):
        _, rt = runtime(args, None)
        predictor = load_predictor(None, splice_model=args.splice_model)
    else:
        base, rt = runtime(args, args.model)
        predictor = SpliceSites(load_splice_model(args.splice_model, base, force=args.force))
    res = variant_effects_to_files(predictor, args.vcf, args.fasta, args.out, transcripts=args.transcripts,
                                   options=EffectOptions(distance=args.distance, mask=args.mask, tile_stride_bp=args.tile_stride_bp),
                                   chunk_size=args.chunk_size, shard=args.shard, restart=args.restart, runtime=rt)
    if report_job(res, args.out[0]):
        print(res["summary"])
        for o in res["outputs"]:
            print(f"wrote {o}")
        if args.report:
            write_report(args, table_of(args.out), args.fasta, args.report, predictor=predictor, transcripts=args.transcripts,
                         runtime_=rt)
    return 0

"""``ntkit segment train | evaluate``: SegmentNT-style segmentation trained from a GTF/GFF and BED
files (``ntkit.tasks.segmentation``); ``ntkit annotate`` runs the result over a genome."""

from __future__ import annotations

from pathlib import Path

from ntkit.cli.common import MODEL_HELP, add_runtime_args, named_files, positive_int, runtime


def _add_data(s) -> None:
    s.add_argument("--fasta", required=True, help="reference FASTA (bgzip + faidx, or plain)")
    s.add_argument("--gtf", help="GTF/GFF: genes, exons, introns, UTRs and splice sites are derived from it")
    s.add_argument("--transcripts", help="SpliceAI's transcript table: protein-coding genes, exons, introns and splice sites "
                   "(no UTRs, no lncRNA)")
    s.add_argument("--bed", nargs="*", default=[], metavar="ELEMENT=FILE", help="BED file of one element type, e.g. CTCF-bound=ctcf.bed")
    s.add_argument("--features", nargs="+", help="element types, in output order (default: a SegmentNT model's own; "
                   "else the GTF's elements and the --bed names)")
    s.add_argument("--window-bp", type=positive_int(), default=6000, help="bases per window (at most the model's context)")
    s.add_argument("--max-windows", type=positive_int(), default=2000, help="windows per set at most (a seeded sample, with elements)")


def register(sub) -> None:
    from ntkit.tasks.options import SegmentTrainConfig as C

    s = sub.add_parser("segment", help="train and evaluate SegmentNT-style segmentation from GTF/BED annotations")
    ss = s.add_subparsers(dest="segment_command", required=True)
    t = ss.add_parser("train", help="a SegmentNT head on an NT v2 model (or a SegmentNT model further trained)")
    t.add_argument("--model", required=True, help=MODEL_HELP + "; NT v2 or SegmentNT")
    _add_data(t)
    t.add_argument("--train-contigs", nargs="+", required=True, help="contigs of the training windows")
    t.add_argument("--valid-contigs", nargs="*", default=[], help="contigs of validation windows (early stopping on mean PR-AUC)")
    t.add_argument("--test-contigs", nargs="*", default=[], help="contigs evaluated after training (metrics.tsv)")
    t.add_argument("--method", choices=["frozen", "ia3", "lora", "full"], default=C.method, help="what of the backbone trains")
    t.add_argument("--epochs", type=int, default=C.epochs, help="passes over the windows at most")
    t.add_argument("--lr", type=float, help="learning rate (default: 1e-3; 1e-4 with --method full)")
    t.add_argument("--batch-size", type=positive_int(), default=C.batch_size, help="windows per step")
    t.add_argument("--max-minutes", type=float, help="wall-time budget (default: none)")
    t.add_argument("--loss", choices=["focal", "ce"], default=C.loss, help="focal loss (SegmentNT) or cross-entropy")
    t.add_argument("--eval-every", type=int, default=C.eval_every, help="steps between validation evaluations")
    t.add_argument("--patience", type=int, default=C.patience, help="evaluations without a better validation PR-AUC before stopping")
    t.add_argument("--seed", type=int, default=C.seed, help="seed of the head, the window sample and the batches")
    t.add_argument("--out", required=True, help="output folder: a SegmentNT checkpoint (HF layout) + training.json (+ metrics.tsv)")
    add_runtime_args(t, batch_tokens=False)
    t.set_defaults(func=train)

    e = ss.add_parser("evaluate", help="per-element MCC and PR-AUC (top-k for splice sites) of a SegmentNT model")
    e.add_argument("--model", required=True, help=MODEL_HELP + "; a SegmentNT model")
    _add_data(e)
    e.add_argument("--contigs", nargs="+", required=True, help="contigs of the evaluation windows")
    e.add_argument("--out", help="TSV of the metrics")
    add_runtime_args(e)
    e.set_defaults(func=evaluate)


def _targets(args, model, genome):
    from ntkit.models.segment_nt.model import SegmentNTModel
    from ntkit.tasks.segmentation import GTF_ELEMENTS, TRANSCRIPT_ELEMENTS, Targets
    from ntkit.tasks.splice import read_transcripts

    beds = named_files(args.bed, "--bed")
    features = args.features
    if features is None:
        if isinstance(model, SegmentNTModel):
            features = list(model.config.features)
        else:
            table = list(TRANSCRIPT_ELEMENTS) if args.transcripts else []
            features = (list(GTF_ELEMENTS) if args.gtf else table) + [b for b in beds if b not in GTF_ELEMENTS]
    if not features:
        raise ValueError("no element types: give --gtf, --transcripts, --bed ELEMENT=FILE or --features")
    return Targets(features, args.gtf, beds, read_transcripts(args.transcripts) if args.transcripts else None, genome=genome)


def train(args) -> int:
    import json

    from ntkit.io.genome import Genome
    from ntkit.models.nt.model import NTModel
    from ntkit.models.segment_nt.model import SegmentNTModel, save_folder
    from ntkit.runtime.jobs import check_output, write_dataframe, write_text_atomic
    from ntkit.tasks.segmentation import SegmentTrainConfig, build_windows, evaluate_segmentation, from_backbone, train_segmentation

    check_output(Path(args.out) / "config.json")
    genome = Genome(args.fasta)
    genome.check_disjoint({"--train-contigs": args.train_contigs, "--valid-contigs": args.valid_contigs,
                           "--test-contigs": args.test_contigs})
    model, rt = runtime(args, args.model)
    targets = _targets(args, model, genome)
    cfg = SegmentTrainConfig(method=args.method, lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, max_minutes=args.max_minutes,
                             loss=args.loss, eval_every=args.eval_every, patience=args.patience, seed=args.seed)
    if isinstance(model, NTModel):
        model = from_backbone(model, targets.features, cfg.num_layers_head, seed=args.seed)
    elif not isinstance(model, SegmentNTModel):
        raise ValueError(f"{args.model}: segmentation trains on an NT v2 or SegmentNT model")
    elif list(model.config.features) != targets.features:
        raise ValueError(f"{args.model} predicts {model.config.features}; --features must be the same (or train a new head on its backbone)")
    sets = {name: build_windows(genome, targets, contigs, args.window_bp, max_windows=args.max_windows, seed=args.seed)
            for name, contigs in (("train", args.train_contigs), ("valid", args.valid_contigs), ("test", args.test_contigs)) if contigs}
    if not len(sets["train"]):
        raise ValueError(f"no training window with an element on {args.train_contigs} (check contig names and annotation)")
    print("windows: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()) + f"; elements: {', '.join(targets.features)}")
    train_segmentation(model, sets["train"], cfg, valid=sets.get("valid"), runtime=rt)
    out = save_folder(model, args.out)
    summary = {**model.train_result, "features": targets.features, "window_bp": args.window_bp,
               "windows": {k: len(v) for k, v in sets.items()}, "base_model": args.model}
    if "test" in sets:
        m = evaluate_segmentation(model, sets["test"], runtime=rt)
        write_dataframe(m, out / "metrics.tsv")
        print(m.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        summary["test_mean_prauc"] = float(m.prauc.mean())
    write_text_atomic(out / "training.json", json.dumps(summary, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


def evaluate(args) -> int:
    from ntkit.io.genome import Genome
    from ntkit.models.segment_nt.model import SegmentNTModel
    from ntkit.tasks.segmentation import build_windows, evaluate_segmentation

    model, rt = runtime(args, args.model)
    if not isinstance(model, SegmentNTModel):
        raise ValueError(f"{args.model} is not a SegmentNT model")
    genome = Genome(args.fasta)
    targets = _targets(args, model, genome)
    if targets.features != list(model.config.features):
        raise ValueError(f"{args.model} predicts {model.config.features}; --features must name the same elements")
    data = build_windows(genome, targets, args.contigs, args.window_bp, max_windows=args.max_windows)
    if not len(data):
        raise ValueError(f"no window of {args.window_bp:,} bases with an annotated element on {', '.join(args.contigs)} "
                         "(contigs without genes or elements in the annotation): choose annotated --contigs")
    m = evaluate_segmentation(model, data, runtime=rt)
    print(m.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        from ntkit.runtime.jobs import write_dataframe

        write_dataframe(m, args.out)
        print(f"wrote {args.out}")
    return 0

"""``ntkit annotate`` (SegmentNT: elements at nucleotide resolution) and ``ntkit tracks predict``
(NTv3: functional tracks and elements of a species, or of a track model): regions of a FASTA -> one
bigWig per channel, called elements as BED, parquet on request, as one sharded, resumable job;
``ntkit tracks train``: track heads on an NTv3 trunk from the user's bigWig and BED files."""

from __future__ import annotations

from ntkit.cli.common import FORCE_HELP, MODEL_HELP, add_job_args, add_runtime_args, named_files, positive_int, report_job, runtime


def _add_common(s, window_help: str) -> None:
    from ntkit.tasks.options import AnnotateOptions

    d = AnnotateOptions()
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument("--fasta", required=True, help="reference FASTA (bgzip + faidx, or plain)")
    s.add_argument("--regions", nargs="*", default=[], help="chrom:start-end (1-based, inclusive) or whole contigs (default: every contig)")
    s.add_argument("--bed", help="BED file of regions (0-based half-open)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--prefix", help="output file names: <prefix>.<channel>.bw, <prefix>.bed, <prefix>.parquet")
    s.add_argument("--window-bp", type=int, default=d.window_bp, help=window_help)
    s.add_argument("--channels", nargs="*", default=d.channels, help="the channels to write (default: all, up to 64)")
    s.add_argument("--threshold", type=float, default=d.threshold, help="elements: a base is called where p >= threshold")
    s.add_argument("--min-length", type=int, default=d.min_length, help="elements: bases of the shortest call")
    s.add_argument("--parquet", action="store_true", help="also write a per-base parquet table (large: one row per base)")
    add_job_args(s, "windows")
    s.set_defaults(chunk_size=d.windows_per_chunk)
    add_runtime_args(s)


def register(sub) -> None:
    from ntkit.tasks.options import AnnotateOptions

    s = sub.add_parser("annotate", help="SegmentNT: per-base element probabilities of regions as bigWig, called elements as BED")
    _add_common(s, "bases per model input (default: the model's context, 30 kb for the released SegmentNT)")
    s.add_argument("--flank-bp", type=int, default=AnnotateOptions().flank_bp,
                   help="bases each side of a window that are only context (windows overlap by twice this; default: window / 8)")
    s.add_argument("--rescaling-factor", type=float,
                   help="rotary rescaling for longer inputs (InstaDeep's rule: tokens / 2048); default: the checkpoint's")
    s.set_defaults(func=run_annotate)

    tr = sub.add_parser("tracks", help="NTv3: predicted functional tracks (bigWig) and elements (BED); train track heads on your own")
    ts = tr.add_subparsers(dest="tracks_command", required=True)
    t = ts.add_parser("predict", help="tracks and elements of regions from a post-trained NTv3 (--species) or a trained track model (--adapter)")
    _add_common(t, "bases per model input, a multiple of 2**num_downsamples (default: 131,072 or the model's context; "
                   "a track model: its training length); the tracks cover its centre crop")
    t.add_argument("--species", help="species of a post-trained model's heads (ntkit info lists them)")
    t.add_argument("--adapter", help="a track model folder of `ntkit tracks train` (on --model, its base)")
    t.add_argument("--force", action="store_true", help=FORCE_HELP)
    t.set_defaults(func=run_tracks)

    from ntkit.tasks.options import TrackTrainConfig as C

    g = ts.add_parser("train", help="track heads (bigWig: Poisson or MSE) and element heads (BED: cross-entropy) on an NTv3 trunk")
    g.add_argument("--model", required=True, help=MODEL_HELP + "; an NTv3 model (pre- or post-trained)")
    g.add_argument("--fasta", required=True, help="reference FASTA (bgzip + faidx, or plain)")
    g.add_argument("--bigwig", nargs="*", default=[], metavar="TRACK=FILE", help="tracks to learn, e.g. dnase=ENCFF.bw")
    g.add_argument("--bed", nargs="*", default=[], metavar="ELEMENT=FILE", help="elements to learn, e.g. enhancer=enh.bed")
    g.add_argument("--species", help="a post-trained trunk's species conditioning (default: none; required for post-trained models)")
    g.add_argument("--train-contigs", nargs="+", required=True, help="contigs of the training windows")
    g.add_argument("--valid-contigs", nargs="*", default=[], help="contigs of validation windows (early stopping)")
    g.add_argument("--window-bp", type=positive_int(), default=C.window_bp, help="bases per window, a multiple of 2**num_downsamples")
    g.add_argument("--max-windows", type=positive_int(), default=1000, help="windows per set at most (a seeded sample)")
    g.add_argument("--crop-fraction", type=float, help="centre fraction of a window the heads predict (default: the model's, else 0.375)")
    g.add_argument("--method", choices=["frozen", "ia3", "lora", "full"], default=C.method, help="what of the trunk trains")
    g.add_argument("--loss", choices=["poisson", "mse"], default=C.loss, help="track loss")
    g.add_argument("--epochs", type=int, default=C.epochs, help="passes over the windows at most")
    g.add_argument("--lr", type=float, help="learning rate (default: 1e-3; 1e-4 with --method full)")
    g.add_argument("--batch-size", type=positive_int(), default=C.batch_size, help="windows per step")
    g.add_argument("--max-minutes", type=float, help="wall-time budget (default: none)")
    g.add_argument("--eval-every", type=int, default=C.eval_every, help="steps between validation evaluations")
    g.add_argument("--seed", type=int, default=C.seed, help="seed of the heads, the window sample and the batches")
    g.add_argument("--out", required=True, help="track model folder")
    add_runtime_args(g, batch_tokens=False)
    g.set_defaults(func=train_tracks)


def _options(args):
    from ntkit.tasks.options import AnnotateOptions

    return AnnotateOptions(window_bp=args.window_bp, flank_bp=getattr(args, "flank_bp", None), threshold=args.threshold,
                           min_length=args.min_length, channels=args.channels or None, parquet=args.parquet,
                           windows_per_chunk=args.chunk_size)


def _run(args, predictor, rt, prefix: str) -> int:
    from ntkit.tasks.annotate import annotate_to_files

    res = annotate_to_files(predictor, args.fasta, args.out, regions=args.regions, bed=args.bed, prefix=args.prefix or prefix,
                            opts=_options(args), shard=args.shard, restart=args.restart, runtime=rt)
    if report_job(res, args.out):
        print(res["summary"])
        for o in res["outputs"]:
            print(f"wrote {o}")
    return 0


def run_annotate(args) -> int:
    from ntkit.tasks.predictors import Elements
    from ntkit.tasks.support import require

    model, rt = runtime(args, args.model)
    require(model, "annotate")
    if args.rescaling_factor is not None:
        model.set_rescaling(args.rescaling_factor)
    return _run(args, Elements(model), rt, "annotation")


def run_tracks(args) -> int:
    from ntkit.tasks.predictors import Tracks, TrainedTracks
    from ntkit.tasks.support import kind_of, require
    from ntkit.tasks.tracks import TrackModel

    model, rt = runtime(args, args.model)
    if args.adapter and kind_of(model) in ("ntv3-pre", "ntv3-post"):  # a track model's heads on its NTv3 trunk
        return _run(args, TrainedTracks(TrackModel.load(model, args.adapter, force=args.force)), rt, "tracks")
    require(model, "tracks predict")
    if not args.species:
        raise ValueError(f"--species is needed for a post-trained model: one of {model.config.species}")
    return _run(args, Tracks(model, args.species), rt, args.species)


def train_tracks(args) -> int:
    import json

    from ntkit.io.genome import Genome
    from ntkit.runtime.jobs import check_output, write_text_atomic
    from ntkit.tasks.tracks import TrackTargets, TrackTrainConfig, evaluate_tracks, track_windows
    from ntkit.tasks.tracks import train_tracks as train

    check_output(f"{args.out}/tracks_config.json")
    genome = Genome(args.fasta)
    genome.check_disjoint({"--train-contigs": args.train_contigs, "--valid-contigs": args.valid_contigs})
    targets = TrackTargets(named_files(args.bigwig, "--bigwig"), named_files(args.bed, "--bed"), genome=genome)
    model, rt = runtime(args, args.model)
    cfg = TrackTrainConfig(method=args.method, loss=args.loss, tracks=targets.tracks, elements=targets.elements, species=args.species,
                           window_bp=args.window_bp, crop_fraction=args.crop_fraction, lr=args.lr, epochs=args.epochs,
                           batch_size=args.batch_size, max_minutes=args.max_minutes, eval_every=args.eval_every, seed=args.seed)
    if args.window_bp % model.config.multiple or args.window_bp > model.config.max_tokens:
        raise ValueError(f"--window-bp {args.window_bp}: a multiple of {model.config.multiple} up to {model.config.max_tokens:,}")
    train_w = track_windows(genome, args.train_contigs, args.window_bp, max_windows=args.max_windows, seed=args.seed)
    valid_w = track_windows(genome, args.valid_contigs, args.window_bp, max_windows=args.max_windows, seed=args.seed) if args.valid_contigs else None
    if not len(train_w):
        raise ValueError(f"no training window of {args.window_bp} bases on {args.train_contigs}")
    tm = train(model, genome, targets, train_w, cfg, valid=valid_w, runtime=rt)
    out = tm.save(args.out)
    summary = {**tm.train_result, "windows": {"train": len(train_w), "valid": len(valid_w) if valid_w else 0}}
    if valid_w is not None and len(valid_w):
        summary["valid"] = evaluate_tracks(tm, valid_w, targets, runtime=rt)
        print(json.dumps(summary["valid"], indent=2))
    write_text_atomic(out / "training.json", json.dumps(summary, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0

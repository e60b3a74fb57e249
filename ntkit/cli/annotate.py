"""``ntkit annotate`` (SegmentNT: elements at nucleotide resolution) and ``ntkit tracks`` (NTv3
post-trained: functional tracks and elements of a species): regions of a FASTA -> one bigWig per
channel, called elements as BED, parquet on request, as one sharded, resumable job."""

from __future__ import annotations

from .common import MODEL_HELP, add_job_args, add_runtime_args, report_job, runtime


def _add_common(s, window_help: str) -> None:
    from ..annotate import AnnotateOptions

    d = AnnotateOptions()
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument("--fasta", required=True, help="reference FASTA (bgzip + faidx, or plain)")
    s.add_argument("--regions", nargs="*", default=[], help="chrom:start-end (1-based, inclusive) or whole contigs (default: every contig)")
    s.add_argument("--bed", help="BED file of regions (0-based half-open)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--prefix", help="output file names: <prefix>.<channel>.bw, <prefix>.bed, <prefix>.parquet")
    s.add_argument("--window-bp", type=int, default=d.window_bp, help=window_help)
    s.add_argument("--channels", nargs="*", default=d.channels, help=f"the channels to write (default: all, up to 64)")
    s.add_argument("--threshold", type=float, default=d.threshold, help="elements: a base is called where p >= threshold")
    s.add_argument("--min-length", type=int, default=d.min_length, help="elements: bases of the shortest call")
    s.add_argument("--parquet", action="store_true", help="also write a per-base parquet table (large: one row per base)")
    add_job_args(s, "windows")
    s.set_defaults(chunk_size=d.windows_per_chunk)
    add_runtime_args(s)


def register(sub) -> None:
    from ..annotate import AnnotateOptions

    s = sub.add_parser("annotate", help="SegmentNT: per-base element probabilities of regions as bigWig, called elements as BED")
    _add_common(s, "bases per model input (default: the model's context, 30 kb for the released SegmentNT)")
    s.add_argument("--flank-bp", type=int, default=AnnotateOptions().flank_bp,
                   help="bases each side of a window that are only context (windows overlap by twice this; default: window / 8)")
    s.add_argument("--rescaling-factor", type=float,
                   help="rotary rescaling for longer inputs (InstaDeep's rule: tokens / 2048); default: the checkpoint's")
    s.set_defaults(func=run_annotate)

    t = sub.add_parser("tracks", help="NTv3 post-trained: predicted functional tracks (bigWig) and elements (BED) of a species")
    _add_common(t, "bases per model input, a multiple of 2**num_downsamples (default: 131,072 or the model's context); "
                   "the tracks cover its centre crop")
    t.add_argument("--species", required=True, help="species name of the model's heads (ntkit info lists them)")
    t.set_defaults(func=run_tracks)


def _options(args):
    from ..annotate import AnnotateOptions

    return AnnotateOptions(window_bp=args.window_bp, flank_bp=getattr(args, "flank_bp", None), threshold=args.threshold,
                           min_length=args.min_length, channels=args.channels or None, parquet=args.parquet,
                           windows_per_chunk=args.chunk_size)


def _run(args, predictor, rt, prefix: str) -> int:
    from ..annotate import annotate_to_files

    res = annotate_to_files(predictor, args.fasta, args.out, regions=args.regions, bed=args.bed, prefix=args.prefix or prefix,
                            opts=_options(args), shard=args.shard, restart=args.restart, runtime=rt)
    if report_job(res, args.out):
        print(res["summary"])
        for o in res["outputs"]:
            print(f"wrote {o}")
    return 0


def run_annotate(args) -> int:
    from ..predictors import Elements
    from ..segment_nt import SegmentNTModel

    model, rt = runtime(args, args.model)
    if not isinstance(model, SegmentNTModel):
        raise ValueError(f"{args.model} is not a SegmentNT model (ntkit annotate needs one; NTv3 tracks: ntkit tracks)")
    if args.rescaling_factor is not None:
        model.set_rescaling(args.rescaling_factor)
    return _run(args, Elements(model), rt, "annotation")


def run_tracks(args) -> int:
    from ..ntv3 import NTv3Model
    from ..predictors import Tracks

    model, rt = runtime(args, args.model)
    if not isinstance(model, NTv3Model) or not model.config.conditions_vocab_size:
        raise ValueError(f"{args.model} is not a post-trained NTv3 model (ntkit tracks needs its track heads)")
    return _run(args, Tracks(model, args.species), rt, args.species)

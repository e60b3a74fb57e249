"""``ntkit mutagenesis``: saturation mutagenesis of regions (table, bedGraph tracks, heatmap), for
NT's zero-shot scores or any predictor (``--adapter``, ``--splice-model``)."""

from __future__ import annotations

from ntkit.cli.common import MODEL_HELP, add_job_args, add_runtime_args, report_job, runtime
from ntkit.cli.report import add_report_args
from ntkit.cli.report import write as write_report
from ntkit.cli.variants import add_predictor_args, add_score_args, effect_options, load_predictor, model_for


def register(sub) -> None:
    from ntkit.tasks.options import MUTAGENESIS_SCORES as DEFAULT_SCORES

    s = sub.add_parser("mutagenesis", help="in-silico saturation mutagenesis of regions: table, bedGraph tracks, heatmap")
    s.add_argument("--fasta", required=True, help="reference FASTA (bgzip + faidx, or plain)")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--regions", nargs="*", default=[], help="chrom:start-end (1-based, inclusive) or whole contigs")
    s.add_argument("--bed", help="BED file of regions (0-based half-open; names carried into the table's region column)")
    s.add_argument("--out", required=True, help="output folder")
    add_score_args(s, default=DEFAULT_SCORES)
    add_predictor_args(s)
    add_job_args(s, "bases")
    add_report_args(s)
    add_runtime_args(s)
    s.set_defaults(func=run)


def run(args) -> int:
    from ntkit.tasks.mutagenesis import mutagenesis_to_files

    model, rt = runtime(args, model_for(args))
    predictor = load_predictor(args, model)
    res = mutagenesis_to_files(predictor or model, args.fasta, args.out, args.regions, bed=args.bed, transcripts=args.transcripts,
                               options=effect_options(args) if predictor else None, scores=args.scores, layers=args.layers,
                               window_tokens=args.window_tokens, tile_stride_bp=args.tile_stride_bp, both_strands=args.both_strands,
                               chunk_size=args.chunk_size, shard=args.shard, restart=args.restart, runtime=rt)
    if res["n_bases_skipped"]:
        print(f"skipped {res['n_bases_skipped']:,} reference bases that are N")
    if report_job(res, f"{args.out}/mutagenesis.parquet"):
        print(res["summary"])
        for o in res["outputs"]:
            print(f"wrote {o}")
        if args.report:  # the highest-scoring substitutions, with the per-position score tracks
            write_report(args, f"{args.out}/mutagenesis.parquet", args.fasta, args.report, predictor=predictor,
                         transcripts=args.transcripts, tracks=[o for o in res["outputs"] if str(o).endswith(".bedgraph")], runtime_=rt)
    return 0

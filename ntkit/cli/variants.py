"""``ntkit score-variants``: VCF + FASTA -> annotated VCF / tables (sharded, resumable)."""

from __future__ import annotations

from typing import Sequence

from .common import MODEL_HELP, add_job_args, add_runtime_args, positive_int, report_job, runtime


def add_score_args(s, default: Sequence[str]) -> None:
    """What is scored and in which windows (``ScoreOptions``): shared by score-variants and mutagenesis."""
    from ..variants import SCORES

    s.add_argument("--scores", nargs="+", choices=SCORES, default=list(default),
                   help="llr: masked marginal; llr_unmasked: wild-type marginal; embedding: L1/L2/cosine/dot distances (the "
                   "score for indels). score-variants defaults to llr + embedding; mutagenesis to the two marginals, which "
                   "share forwards across a region's SNVs (README: Scores)")
    s.add_argument("--layers", type=int, nargs="+", default=[-1], help="layers of the embedding distances")
    s.add_argument("--window-tokens", type=positive_int(), help="tile length in tokens (default: the model's context)")
    s.add_argument("--tile-stride-bp", type=positive_int(), help="tile grid step, a multiple of 6 (default: a quarter of the window)")
    s.add_argument("--both-strands", action="store_true", help="average every score over the tile and its reverse complement")


def register(sub) -> None:
    s = sub.add_parser("score-variants", help="zero-shot variant effect scores: VCF + FASTA -> annotated VCF / table")
    s.add_argument("--vcf", required=True, help="VCF/BCF (sorted; bgzip + tabix for random access); multi-allelic records are split")
    s.add_argument("--fasta", required=True, help="reference FASTA (bgzip + faidx, or plain); chr20 and 20 are the same contig")
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument("--out", required=True, nargs="+", help="output files: .vcf/.vcf.gz (annotated), .tsv/.csv/.parquet (table)")
    add_score_args(s, default=("llr", "embedding"))
    s.add_argument("--unmasked-llr", action="store_true", help="also the wild-type marginal (same as adding llr_unmasked to --scores)")
    s.add_argument("--label-key", help="INFO key holding a 0/1 label (or a Flag): report AUROC/AUPRC")
    add_job_args(s, "records")
    add_runtime_args(s)
    s.set_defaults(func=run)


def run(args) -> int:
    from ..variants import evaluate_table, is_vcf, score_variants_to_files

    model, device = runtime(args, args.model)
    res = score_variants_to_files(model, args.vcf, args.fasta, args.out, layers=args.layers, window_tokens=args.window_tokens,
                                  both_strands=args.both_strands, unmasked_llr=args.unmasked_llr, label_key=args.label_key,
                                  scores=args.scores, tile_stride_bp=args.tile_stride_bp, chunk_size=args.chunk_size,
                                  shard=args.shard, restart=args.restart, batch_tokens=args.batch_tokens, device=device,
                                  progress=args.progress)
    if not report_job(res, args.out[0]):
        return 0
    print(res["summary"])
    for o in res["outputs"]:
        print(f"wrote {o}")
    if args.label_key:
        table = next((o for o in res["outputs"] if not is_vcf(o)), None)
        if table:
            print(evaluate_table(table).to_string(index=False))
    return 0

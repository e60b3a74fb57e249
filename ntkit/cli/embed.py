"""``ntkit embed``: embeddings of a FASTA or table into parquet (sharded, resumable)."""

from __future__ import annotations

from ntkit.cli.common import MODEL_HELP, add_job_args, add_runtime_args, add_sequence_columns, add_species_arg, report_job, runtime


def register(sub) -> None:
    s = sub.add_parser("embed", help="embeddings of sequences (FASTA or table) from any layers")
    s.add_argument("input", help="FASTA or TSV/CSV/parquet with a sequence column")
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument("--out", required=True, help=".parquet (pooled: one column per dimension; token/nucleotide: list columns)")
    s.add_argument("--layers", type=int, nargs="+", default=[-1], help="0 = embeddings, i = block i, -1 = last (after the final LayerNorm); NTv3: 0 = the stem, "
                   "then the U-Net's levels (down, transformer, up; -1 the output), each per base")
    s.add_argument("--pooling", choices=["mean", "cls", "token", "nucleotide"], default="mean",
                   help="mean over tokens (<cls> excluded), the <cls> vector, per token, or per nucleotide")
    s.add_argument("--reverse-complement", action="store_true", help="average with the reverse-complement strand")
    s.add_argument("--bins", type=int, default=1, help="mean pooling: the means of this many equal segments of each sequence, "
                   "concatenated (bins x hidden columns per layer)")
    s.add_argument("--phases", type=int, default=1, help="mean pooling, 6-mer models: averaged over this many frames of each "
                   "strand (6: every 6-mer; default 1: the frame from the first base)")
    s.add_argument("--overlap-bp", type=int, help="overlap of the chunks of long sequences (default 600 bp)")
    add_species_arg(s)
    add_sequence_columns(s)
    add_job_args(s, "sequences")
    add_runtime_args(s)
    s.set_defaults(func=run)


def run(args) -> int:
    from ntkit.tasks.embed import embed_to_file

    model, rt = runtime(args, args.model)
    res = embed_to_file(model, args.input, args.out, layers=args.layers, pooling=args.pooling,
                        reverse_complement=args.reverse_complement, overlap_bp=args.overlap_bp, sequence_column=args.sequence_column,
                        id_column=args.id_column, chunk_size=args.chunk_size,
                        shard=args.shard, restart=args.restart, runtime=rt, species=args.species, bins=args.bins,
                        phases=args.phases)
    if report_job(res, args.out):
        print(f"wrote {args.out}: {res['sequences']} sequences, layers {args.layers}, {args.pooling} pooling"
              + (f" over {args.bins} segments" if args.bins > 1 else "") + (f", {args.phases} frames" if args.phases > 1 else ""))
    return 0

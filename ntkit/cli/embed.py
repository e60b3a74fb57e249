"""``ntkit embed``: embeddings of a FASTA or table into parquet (sharded, resumable)."""

from __future__ import annotations

from .common import add_job_args, add_runtime_args, report_job, runtime


def register(sub) -> None:
    s = sub.add_parser("embed", help="embeddings of sequences (FASTA or table) from any layers")
    s.add_argument("input", help="FASTA or TSV/CSV/parquet with a sequence column")
    s.add_argument("--model", required=True)
    s.add_argument("--out", required=True, help=".parquet (pooled: one column per dimension; token/nucleotide: list columns)")
    s.add_argument("--layers", type=int, nargs="+", default=[-1])
    s.add_argument("--pooling", choices=["mean", "cls", "token", "nucleotide"], default="mean")
    s.add_argument("--reverse-complement", action="store_true", help="average with the reverse-complement strand")
    s.add_argument("--overlap-bp", type=int, help="overlap of the chunks of long sequences (default 600 bp)")
    add_job_args(s, "sequences")
    add_runtime_args(s)
    s.set_defaults(func=run)


def run(args) -> int:
    from ..embed import embed_to_file

    model, device = runtime(args, args.model)
    res = embed_to_file(model, args.input, args.out, layers=args.layers, pooling=args.pooling,
                        reverse_complement=args.reverse_complement, overlap_bp=args.overlap_bp, chunk_size=args.chunk_size,
                        shard=args.shard, restart=args.restart, batch_tokens=args.batch_tokens, device=device,
                        progress=args.progress)
    if report_job(res, args.out):
        print(f"wrote {args.out}: {res['sequences']} sequences, layers {args.layers}, {args.pooling} pooling")
    return 0

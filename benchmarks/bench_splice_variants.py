"""Splice variant scoring: the perturbation layer (``ntkit.tasks.perturb`` over ``predictors.SpliceSites``)
against the scoring ntkit 0.1 shipped (``legacy_splice_variants.py``), and peak memory against size.

    python benchmarks/bench_splice_variants.py [--head bases] [--context-tokens 2048] [--ratio-snvs 300] [--scale 10000 100000]

- Input: GRCh37 chr20 SNVs inside the genes of SpliceAI's canonical table, at 1000 Genomes density
  (Poisson positions, one per 35 bp of gene body), from the data folder (``NTKIT_DATA``, else the
  data shipped with ntkit: 20:30-36 Mb; the full chr20 for more than ~50k SNVs).
- Model: a splice model on the ``tiny-cpu`` NT shape with ``--context-tokens`` tokens (512 as
  trained by the recipe; 2048 is NT v2's context, 12 kb), random weights (speed and memory do not
  depend on them), head ``--head`` (``bases``: the convolutional head that BENCHMARKS' splice rows
  rank first, exact; ``segment``: NT + convolution). The legacy scorer reads two windows of the
  whole context per allele; the new one the head's receptive field and the distance.
- Ratio: both scorers on the same SNVs, each in a fresh process (one job at a time: run it on an
  idle machine); the scores are compared (exact head: equal to 1e-5 where an allele has one gene).
- Scale: the new scorer as a job (``variant_effects_to_files`` to parquet) at each size, peak RSS
  above the process's level before the job.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import PeakMemory, fmt_bytes, run_isolated


def data_paths() -> tuple[Path, Path]:
    from ntkit.io.datasets import data_dir

    d = data_dir()
    return d / "genomes" / "GRCh37_chr20.fa.gz", d / "splice" / "spliceai_canonical_dataset_hg19.txt"


def gene_snv_vcf(path: Path, n: int, every_bp: int = 35, seed: int = 0) -> Path:
    """``n`` SNVs inside chr20 gene bodies (merged), Poisson positions one per ``every_bp`` bases,
    REF from the FASTA (N skipped), one random ALT, in position order."""
    import numpy as np

    from ntkit.io.genome import Genome
    from ntkit.tasks.splice import read_transcripts

    fasta, tx = data_paths()
    g = Genome(fasta)
    spans = sorted((t.start, t.end) for t in read_transcripts(tx) if t.chrom.removeprefix("chr") == "20")
    merged: list[list[int]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    rng = np.random.default_rng(seed)
    written = 0
    with open(path, "w") as f:
        f.write(f"##fileformat=VCFv4.2\n##contig=<ID=20,length={g.length('20')}>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for s, e in merged:
            seq = g.fetch("20", s, e)
            pos = int(rng.geometric(1 / every_bp)) - 1
            while pos < len(seq) and written < n:
                ref = seq[pos]
                if ref in "ACGT":
                    f.write(f"20\t{s + pos + 1}\t.\t{ref}\t{rng.choice([b for b in 'ACGT' if b != ref])}\t.\t.\t.\n")
                    written += 1
                pos += int(rng.geometric(1 / every_bp))
            if written == n:
                return path
    raise SystemExit(f"only {written} SNVs fit in the genes of {fasta} at 1/{every_bp} bp; set NTKIT_DATA to the full data folder")


def splice_model(head: str, context_tokens: int):
    import torch

    import ntkit
    from ntkit.tasks.splice.model import SpliceModel

    cfg = ntkit.get_preset("nt-v2-small").replace(max_tokens=context_tokens, hidden_size=128, ffn_size=512, num_heads=4, num_layers=4)
    torch.manual_seed(0)
    return SpliceModel(ntkit.build(cfg, seed=0), "frozen", head=head).eval()


def worker(mode: str, head: str, vcf: str, out: str, threads: int, context_tokens: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from ntkit import Runtime

    fasta, tx = data_paths()
    m = splice_model(head, context_tokens)
    with PeakMemory() as pm:
        t = time.perf_counter()
        if mode == "legacy":
            from legacy_splice_variants import splice_variant_scores
            from ntkit.tasks.splice import read_transcripts

            table = splice_variant_scores(m, vcf, fasta, read_transcripts(tx), distance=50)
            table.to_parquet(out)
            n = len(table)
        else:
            from ntkit.tasks.perturb import variant_effects_to_files
            from ntkit.tasks.predictors import SpliceSites

            r = variant_effects_to_files(SpliceSites(m), vcf, fasta, [out], transcripts=tx, runtime=Runtime(progress=False))
            n = r["alleles"]
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "peak": pm.peak, "alleles": n}


def compare(legacy: Path, new: Path) -> dict:
    """Largest |difference| of the four delta scores over SNVs with one gene, and how many."""
    import pandas as pd

    a = pd.read_parquet(legacy).query("status == 'scored'")
    b = pd.read_parquet(new).query("status == 'scored'")
    single = b.groupby(["chrom", "pos", "alt"]).filter(lambda g: len(g) == 1)
    j = a.merge(single, on=["chrom", "pos", "alt"], suffixes=("_old", "_new"))
    cols = ["DS_AG", "DS_AL", "DS_DG", "DS_DL"]
    diff = max(float((j[f"{c}_old"] - j[f"{c}_new"]).abs().max()) for c in cols) if len(j) else float("nan")
    return {"compared": len(j), "max_abs_diff": diff, "legacy_scored": len(a), "new_rows": len(b)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=4, metavar=("MODE", "HEAD", "VCF", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--head", default="bases", choices=["bases", "segment"])
    ap.add_argument("--ratio-snvs", type=int, default=300, help="SNVs scored by both (0: skip)")
    ap.add_argument("--scale", type=int, nargs="*", default=[10_000, 100_000], help="SNV counts for the new scorer's peak memory")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--context-tokens", type=int, default=512, help="the NT context of the splice model's base")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, threads=args.threads, context_tokens=args.context_tokens)))
        return
    import torch

    print(f"splice variant scoring, head {args.head}, tiny-cpu NT shape ({args.context_tokens} tokens), threads={args.threads}, "
          f"torch {torch.__version__}; one process at a time")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.ratio_snvs:
            vcf = gene_snv_vcf(tmp / "ratio.vcf", args.ratio_snvs)
            old = run_isolated(__file__, ["legacy", args.head, str(vcf), str(tmp / "old.parquet"), "--threads", str(args.threads), "--context-tokens", str(args.context_tokens)])
            new = run_isolated(__file__, ["new", args.head, str(vcf), str(tmp / "new.parquet"), "--threads", str(args.threads), "--context-tokens", str(args.context_tokens)])
            c = compare(tmp / "old.parquet", tmp / "new.parquet")
            print(f"| {args.ratio_snvs:,} SNVs | legacy {old['seconds']:.1f} s, peak {fmt_bytes(old['peak'])} "
                  f"| new {new['seconds']:.1f} s, peak {fmt_bytes(new['peak'])} | {old['seconds'] / new['seconds']:.1f}x |"
                  f" {c['compared']} single-gene SNVs, max |delta difference| {c['max_abs_diff']:.2e} |", flush=True)
        for n in args.scale:
            vcf = gene_snv_vcf(tmp / f"s{n}.vcf", n)
            r = run_isolated(__file__, ["new", args.head, str(vcf), str(tmp / f"s{n}.parquet"), "--threads", str(args.threads), "--context-tokens", str(args.context_tokens)])
            print(f"| {n:,} SNVs | {r['seconds']:.1f} s ({n / r['seconds']:.0f} SNVs/s) | peak {fmt_bytes(r['peak'])} |", flush=True)
            (tmp / f"s{n}.parquet").unlink()


if __name__ == "__main__":
    sys.exit(main())

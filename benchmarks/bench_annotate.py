"""Genome annotation job at scale: throughput and peak memory of ``annotate_to_files`` for a region
and one 10x longer (flat memory: windows stream through parts; bigWig entries are written window by
window), with SegmentNT's tiny preset (random weights: the job, not the model, is measured).

    python benchmarks/bench_annotate.py [--bases 200000 2000000]

Each size runs in a fresh process on GRCh37 chr20 from 30 Mb (random sequence without the data).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, PeakMemory, fmt_bytes, run_isolated


def worker(bases: int, threads: int) -> dict:
    import warnings

    import numpy as np
    import pysam
    import torch

    from ntkit.models import segment_nt
    from ntkit.tasks.annotate import AnnotateOptions, annotate_to_files
    from ntkit.io.genome import write_fasta
    from ntkit.tasks.predictors import Elements

    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")
    d = Path(tempfile.mkdtemp())
    fa = DATA / "genomes" / "GRCh37_chr20.fa.gz"
    if fa.exists():
        fasta, region = fa, f"20:30,000,001-{30_000_000 + bases:,}"
    else:
        rng = np.random.default_rng(0)
        write_fasta(d / "g.fa", [("20", "".join(rng.choice(list("ACGT"), bases)))])
        pysam.faidx(str(d / "g.fa"))
        fasta, region = d / "g.fa", f"20:1-{bases}"
    model = segment_nt.build("segment-nt-tiny")
    with PeakMemory("cpu") as pm:
        t = time.perf_counter()
        res = annotate_to_files(Elements(model), fasta, d / "out", regions=[region], opts=AnnotateOptions(window_bp=6000))
        dt = time.perf_counter() - t
    size = sum(p.stat().st_size for p in (d / "out").iterdir())
    return {"bases": res["bases"], "seconds": dt, "bases_per_s": res["bases"] / dt, "peak_bytes": pm.peak, "output_bytes": size,
            "calls": res["calls"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bases", type=int, nargs="+", default=[200_000, 2_000_000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--n", type=int)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.n, args.threads)))
        return
    print(f"annotate_to_files, segment-nt-tiny, 6 kb windows (flank 750 bp), 14 channels -> bigWig + BED, threads={args.threads}")
    print(f"{'bases':>12}{'seconds':>10}{'bases/s':>10}{'peak mem':>12}{'outputs':>12}")
    for n in args.bases:
        r = run_isolated(__file__, ["--n", str(n), "--threads", str(args.threads)])
        print(f"{r['bases']:>12,}{r['seconds']:>10.1f}{r['bases_per_s']:>10,.0f}{fmt_bytes(r['peak_bytes']):>12}{fmt_bytes(r['output_bytes']):>12}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

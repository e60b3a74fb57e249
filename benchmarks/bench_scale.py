"""Peak memory against input size, and a 2-process ``torchrun`` against one process, through the
CLI as a user runs it (each run a fresh process; peak RSS from ``wait4``, the kernel's high-water mark).

    python benchmarks/bench_scale.py [--snvs 10000 100000 1000000] [--seqs 10000 100000 1000000]

- ``ntkit score-variants --scores llr_unmasked``: GRCh37 chr20 SNVs at 1000 Genomes density
  (one per 35 bp), written to a VCF (bgzipped) and a parquet table;
- ``ntkit embed --pooling mean``: chr20 windows of 100-300 bp (FASTA), layers 1 and -1, to parquet;
- ``torchrun --nproc_per_node 2`` (CPU) on the 100k-SNV job: each rank takes its shard from
  RANK/WORLD_SIZE (no process group is needed), the last to finish merges; the outputs are
  compared with the one-process outputs row by row.
Model: ``nt-v2-tiny`` (random weights: speed and memory do not depend on them), 128-token tiles.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, fmt_bytes, snv_vcf

ROOT = Path(__file__).resolve().parents[1]


def run_peak(cmd: list[str], env=None) -> tuple[float, int, str]:
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        log.seek(0)
        text = log.read()
    if status:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{text[-2000:]}")
    return time.perf_counter() - t, ru.ru_maxrss * 1024, text


def fasta_windows(genome, path: Path, n: int, seed: int = 0) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    chrom = genome.fetch("20", 30_000_000, 40_000_000)
    with open(path, "w") as f:
        pos = 0
        for i in range(n):
            L = int(rng.integers(100, 301))
            if pos + L > len(chrom):
                pos = 0
            f.write(f">w{i}\n{chrom[pos : pos + L]}\n")
            pos += L
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--snvs", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--seqs", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--torchrun-snvs", type=int, default=100_000, help="0: skip the torchrun comparison")
    ap.add_argument("--window-tokens", type=int, default=128)
    args = ap.parse_args()
    import pandas as pd

    from ntkit.models.checkpoint import save_checkpoint
    from ntkit.io.genome import Genome

    import ntkit

    tmp = Path(tempfile.mkdtemp(prefix="ntkit-scale-"))
    model = tmp / "model"
    save_checkpoint(ntkit.build("nt-v2-tiny", seed=0), model)
    genome = Genome(DATA / "genomes/GRCh37_chr20.fa.gz")
    fasta = str(DATA / "genomes/GRCh37_chr20.fa.gz")
    py = [sys.executable, "-m", "ntkit.cli"]
    print(f"nt-v2-tiny, {args.window_tokens}-token tiles; {os.cpu_count()} CPUs")
    print(f"{'job':<44}{'input':>10}{'seconds':>9}{'items/s':>10}{'peak RSS':>11}")
    sv = lambda vcf, outs: [*py, "score-variants", "--vcf", str(vcf), "--fasta", fasta, "--model", str(model),  # noqa: E731
                            "--scores", "llr_unmasked", "--window-tokens", str(args.window_tokens), "--no-progress",
                            "--out", *map(str, outs)]
    vcfs = {}
    for n in sorted(set(args.snvs) | ({args.torchrun_snvs} - {0})):
        vcfs[n] = snv_vcf(genome, tmp / f"snv{n}.vcf", n, every_bp=35, start=30_000_000 if n <= 500_000 else 200_000)
    for n in args.snvs:
        outs = [tmp / f"s{n}.parquet", tmp / f"s{n}.vcf.gz"]
        sec, peak, _ = run_peak(sv(vcfs[n], outs))
        print(f"{'score-variants llr_unmasked (parquet + VCF)':<44}{n:>10,}{sec:>9.1f}{n / sec:>10.0f}{fmt_bytes(peak):>11}", flush=True)
    for n in args.seqs:
        fa = fasta_windows(genome, tmp / f"w{n}.fa", n)
        sec, peak, _ = run_peak([*py, "embed", str(fa), "--model", str(model), "--layers", "1", "-1", "--no-progress",
                                 "--out", str(tmp / f"e{n}.parquet")])
        print(f"{'embed mean, layers 1 and -1 (parquet)':<44}{n:>10,}{sec:>9.1f}{n / sec:>10.0f}{fmt_bytes(peak):>11}", flush=True)
        fa.unlink()
    if args.torchrun_snvs:
        n = args.torchrun_snvs
        one = [tmp / f"t1.{n}.parquet", tmp / f"t1.{n}.vcf.gz"]
        two = [tmp / f"t2.{n}.parquet", tmp / f"t2.{n}.vcf.gz"]
        sec1, peak1, _ = run_peak(sv(vcfs[n], one))
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        sec2, _, log = run_peak([*torchrun, "-m", "ntkit.cli", *sv(vcfs[n], two)[3:]], env=env)
        a, b = pd.read_parquet(one[0]), pd.read_parquet(two[0])
        same = a.equals(b)
        import pysam

        same_vcf = all(str(x) == str(y) for x, y in zip(pysam.VariantFile(str(one[1])), pysam.VariantFile(str(two[1]))))
        print(f"torchrun 2 processes (1 thread each) vs 1 process (2 threads), {n:,} SNVs: "
              f"{sec1:.1f} s vs {sec2:.1f} s; table identical: {same}; VCF records identical: {same_vcf}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

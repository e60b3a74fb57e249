"""Splice sites at nucleotide resolution: train on chrX genes, test on chr20 genes (GRCh37),
beside MaxEntScan and a PWM, with SpliceAI's top-k accuracy and PR-AUC.

    python benchmarks/splice_chrx_chr20.py --model runs/tiny-cpu/model --minutes 10 [--method full]

Training windows: chrX (truncated FASTA: genes beyond its end are skipped) windows with >= 1 site;
test windows: every window of the first ``--test-genes`` chr20 genes (sites and the rest).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import DATA  # noqa: E402

import ntkit  # noqa: E402
from ntkit.genome import Genome  # noqa: E402
from ntkit.splice import (MaxEntScan, SitePWM, SpliceTrainConfig, build_windows, evaluate_splice, read_transcripts,  # noqa: E402
                          results_table, train_splice)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--method", choices=["ia3", "full"], default="full")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--site-weight", type=float, default=1.0, help="loss weight of splice sites vs none")
    ap.add_argument("--window-tokens", type=int, help="default: the model's context")
    ap.add_argument("--test-genes", type=int, default=60)
    ap.add_argument("--train-windows", type=int, default=3000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    model = ntkit.load(args.model)
    T = args.window_tokens or model.config.max_tokens
    wbp = (T - 1) * 6
    table = DATA / "splice/spliceai_canonical_dataset_hg19.txt"
    t0 = time.time()
    train = build_windows(Genome(DATA / "genomes/GRCh37_chrX_trunc.fa.gz"), read_transcripts(table, ["chrX"]), wbp,
                          max_windows=args.train_windows, min_sites=1)
    test = build_windows(Genome(DATA / "genomes/GRCh37_chr20.fa.gz"), read_transcripts(table, ["chr20"])[: args.test_genes], wbp)
    print(f"train: {len(train)} chrX windows of {wbp} bp, sites {train.counts()}, skipped {dict(train.skipped)}")
    print(f"test: {len(test)} chr20 windows, sites {test.counts()} ({time.time() - t0:.0f} s)")
    cfg = SpliceTrainConfig(method=args.method, lr=args.lr or (3e-3 if args.method == "ia3" else 1e-3), epochs=100,
                            batch_size=4, max_minutes=args.minutes, site_weight=args.site_weight)
    m = train_splice(model, train, cfg, progress=False)
    d = DATA / "splice"
    base = {"MaxEntScan": MaxEntScan(d / "maxentscan_score5_matrix.txt", d / "maxentscan_score3_matrix.txt"), "PWM (fitted on chrX)": SitePWM().fit(train)}
    df = evaluate_splice(m, test, base)
    print(f"\nntkit {args.method}: {m.trainable_parameters():,} trainable parameters, {args.minutes} min of training on CPU\n")
    print(results_table(df))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()

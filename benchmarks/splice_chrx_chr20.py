"""Splice sites at nucleotide resolution, ablations in one table: train on chrX genes, test on
chr20 genes (GRCh37), SpliceAI's top-k accuracy and PR-AUC, the same training budget per row.

    python benchmarks/splice_chrx_chr20.py --model runs/demo/pretrain/model --minutes 3

Rows: the convolutional head on the bases alone (no NT); the segment head on a randomly
initialised NT of the same shape (frozen); on the pretrained NT frozen, with IA3, fully trained;
NT's linear 6 x 3 head (pretrained, fully trained); MaxEntScan; a PWM fitted on the chrX sites.
Windows: ``--window-bp`` labelled bases with ``--context`` unlabelled bases each side (the model's
context allowing). Training: chrX windows with >= 1 site, validation (early stopping on PR-AUC)
on held-out chrX genes, weighted focal loss. Test: every window of the first ``--test-genes`` chr20 genes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import DATA  # noqa: E402

import ntkit  # noqa: E402
from ntkit import Runtime
from ntkit.io.genome import Genome
from ntkit.tasks.splice import MaxEntScan, SitePWM, SpliceTrainConfig, build_windows, predict_windows, read_transcripts, splice_metrics, train_splice

ROWS = [  # (label, head, method, base weights)
    ("conv head on bases only (no NT)", "bases", "frozen", "pretrained"),
    ("segment head + random NT (frozen)", "segment", "frozen", "random"),
    ("segment head + pretrained NT (frozen)", "segment", "frozen", "pretrained"),
    ("segment head + pretrained NT (IA3)", "segment", "ia3", "pretrained"),
    ("segment head + pretrained NT (full)", "segment", "full", "pretrained"),
    ("linear 6x3 head + pretrained NT (full)", "linear", "full", "pretrained"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--minutes", type=float, default=3, help="training budget per row")
    ap.add_argument("--window-bp", type=int, default=1500)
    ap.add_argument("--context", type=int, help="default: what the model's context leaves, split over both sides")
    ap.add_argument("--test-genes", type=int, default=40)
    ap.add_argument("--valid-genes", type=int, default=40)
    ap.add_argument("--valid-windows", type=int, default=400, help="the first windows of the validation genes")
    ap.add_argument("--train-windows", type=int, default=3000)
    ap.add_argument("--site-weight", type=float, default=10.0)
    ap.add_argument("--only", nargs="+", type=int, help="row numbers to run (0-based)")
    ap.add_argument("--eval-every", type=int, default=150, help="steps between validation evaluations")
    ap.add_argument("--patience", type=int, default=4, help="evaluations without improvement before stopping")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    model = ntkit.load(args.model)
    ctx = args.context if args.context is not None else max(0, ((model.config.max_tokens - 1) * 6 - args.window_bp) // 2)
    table = DATA / "splice/spliceai_canonical_dataset_hg19.txt"
    t0 = time.time()
    chrx = read_transcripts(table, ["chrX"])
    gx = Genome(DATA / "genomes/GRCh37_chrX_trunc.fa.gz")
    valid_tx, train_tx = chrx[: args.valid_genes], chrx[args.valid_genes :]
    train = build_windows(gx, train_tx, args.window_bp, max_windows=args.train_windows, min_sites=1, context=ctx)
    valid = build_windows(gx, valid_tx, args.window_bp, context=ctx, max_windows=args.valid_windows)
    test = build_windows(Genome(DATA / "genomes/GRCh37_chr20.fa.gz"), read_transcripts(table, ["chr20"])[: args.test_genes],
                         args.window_bp, context=ctx)
    print(f"{args.model}: windows of {args.window_bp} bp + {ctx} bp context each side; train {len(train)} chrX windows "
          f"{train.counts()}; valid {len(valid)} ({valid.counts()}); test {len(test)} chr20 windows {test.counts()} "
          f"({time.time() - t0:.0f} s)", flush=True)
    print("| method | trainable params | train min | steps | acceptor top-k | acceptor PR-AUC | donor top-k | donor PR-AUC |")
    print("|---|---|---|---|---|---|---|---|")
    for i, (label, head, method, weights) in enumerate(ROWS):
        if args.only and i not in args.only:
            continue
        base = ntkit.load(args.model) if weights == "pretrained" else ntkit.build(model.config, seed=1)
        lr = 1e-4 if (method == "full" and head == "linear") else 1e-3
        cfg = SpliceTrainConfig(method=method, head=head, lr=lr, epochs=1000, batch_size=4, max_minutes=args.minutes,
                                site_weight=args.site_weight, loss="focal", eval_every=args.eval_every, patience=args.patience)
        t = time.time()
        m = train_splice(base, train, cfg, valid=valid, runtime=Runtime(device=args.device))
        minutes = (time.time() - t) / 60
        r = splice_metrics(test.labels, predict_windows(m, test, runtime=Runtime(device=args.device)))
        print(f"| {label} | {m.trainable_parameters():,} | {minutes:.1f} | {m.steps} | {r['acceptor_topk']:.3f} | "
              f"{r['acceptor_prauc']:.3f} | {r['donor_topk']:.3f} | {r['donor_prauc']:.3f} |", flush=True)
    d = DATA / "splice"
    for label, b in (("MaxEntScan (published tables)", MaxEntScan(d / "maxentscan_score5_matrix.txt", d / "maxentscan_score3_matrix.txt")),
                     ("PWM fitted on the chrX sites", SitePWM().fit(train))):
        r = splice_metrics(test.labels, [b.site_scores(s) for s in test.sequences])
        print(f"| {label} | - | - | - | {r['acceptor_topk']:.3f} | {r['acceptor_prauc']:.3f} | {r['donor_topk']:.3f} | "
              f"{r['donor_prauc']:.3f} |", flush=True)


if __name__ == "__main__":
    main()

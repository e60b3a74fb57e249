"""Genome segmentation at nucleotide resolution (SegmentNT's task), in one table: train on chrX
genes, test on chr20 genes (GRCh37; elements from SpliceAI's canonical transcripts of
protein-coding genes: the gene spans, exons, introns, splice donor and acceptor dinucleotides),
per-element MCC (p >= 0.5) and PR-AUC (scikit-learn), SpliceAI's top-k for the splice sites; the
same training budget per trained row.

    python benchmarks/segment_chrx_chr20.py --model runs/tiny-cpu/model --minutes 4

Rows: a SegmentNT head (1-D U-Net, 2 levels, ``segmentation.from_backbone``) on the NT v2 model
of ``--model``, its backbone frozen or fully trained; the bases-only convolutional head (no NT:
SpliceAI's residual dilated convolutions on the one-hot bases, ``segmentation.BasesSegmenter``);
MaxEntScan for the splice sites (its donor score placed on the GT after the scored exon base, its
acceptor score on the AG before it, both strands, the larger kept); and the prevalence (a constant
score: PR-AUC = the fraction of positive bases, MCC 0). Windows of ``--window-bp`` bases, a seeded
sample of the contig's tiling (``segmentation.build_windows``, genic and intergenic alike, at most
10% N): ``--train-windows`` on chrX, ``--test-windows`` on chr20. Focal loss (gamma 2), AdamW ``--lr``, no validation (a fixed budget).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import DATA  # noqa: E402

import ntkit  # noqa: E402
from ntkit import Runtime
from ntkit.io.genome import Genome
from ntkit.tasks.segmentation import TRANSCRIPT_ELEMENTS, BasesSegmenter, SegmentTrainConfig, Targets, build_windows, from_backbone, segmentation_metrics, train_segmentation
from ntkit.core.sequence import reverse_complement
from ntkit.tasks.splice import MaxEntScan, read_transcripts

FEATURES = list(TRANSCRIPT_ELEMENTS)  # gene, exon, intron, splice_donor, splice_acceptor: FEATURES[3:] are the splice sites
ROWS = [  # (label, model kind, method)
    ("conv head on bases only (no NT)", "bases", "full"),
    ("SegmentNT head + NT (frozen)", "segment", "frozen"),
    ("SegmentNT head + NT (IA3)", "segment", "ia3"),
    ("SegmentNT head + NT (full)", "segment", "full"),
]
NEG = -1e300  # a score below every other (MaxEntScan's -inf where no site can be)


def maxentscan_sites(mes: MaxEntScan, seq: str) -> np.ndarray:
    """[len, 2] scores (splice_donor, splice_acceptor) per base of the + strand ``seq``: MaxEntScan
    scores the exon-side base of a site read 5' -> 3'; the segmentation labels are the intron's two
    bases next to it (donor: the GT after the exon's last base; acceptor: the AG before its first)."""
    out = np.full((len(seq), 2), NEG)
    for strand in "+-":
        s = seq if strand == "+" else reverse_complement(seq)
        sc = np.nan_to_num(mes.site_scores(s).astype(np.float64), nan=NEG, neginf=NEG)
        d = np.full((len(s), 2), NEG)
        for k in (1, 2):
            d[k:, 0] = np.maximum(d[k:, 0], sc[:-k, 2])  # donor base i -> i + 1, i + 2
            d[:-k, 1] = np.maximum(d[:-k, 1], sc[k:, 1])  # acceptor base i -> i - 2, i - 1
        out = np.maximum(out, d if strand == "+" else d[::-1])
    return out


def cell(r, f: str, mcc: bool = True) -> str:
    x = r[r.element == f].iloc[0]
    top = f" / {x.topk:.3f}" if f.startswith("splice") else ""
    return (f"{x.mcc:.3f}" if mcc else "-") + f" / {x.prauc:.4f}{top}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="an NT v2 (rotary) checkpoint: the SegmentNT backbone")
    ap.add_argument("--minutes", type=float, default=4, help="training budget per trained row")
    ap.add_argument("--window-bp", type=int, default=3000)
    ap.add_argument("--train-windows", type=int, default=2000)
    ap.add_argument("--test-windows", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--only", nargs="+", type=int, help="row numbers to run (0-based)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    t0 = time.time()
    table = DATA / "splice/spliceai_canonical_dataset_hg19.txt"
    train_targets = Targets(FEATURES, transcripts=read_transcripts(table, ["chrX"]))
    test_targets = Targets(FEATURES, transcripts=read_transcripts(table, ["chr20"]))
    train = build_windows(Genome(DATA / "genomes/GRCh37_chrX_trunc.fa.gz"), train_targets, ["X"], args.window_bp,
                          max_windows=args.train_windows, annotated_only=False, seed=0)
    test = build_windows(Genome(DATA / "genomes/GRCh37_chr20.fa.gz"), test_targets, ["20"], args.window_bp,
                         max_windows=args.test_windows, annotated_only=False, seed=0)
    pos = np.concatenate(test.labels).mean(0)
    print(f"{args.model}: windows of {args.window_bp} bp; train {len(train)} chrX windows, test {len(test)} chr20 windows "
          f"({sum(map(len, test.sequences)):,} bases; positive fraction "
          + ", ".join(f"{f} {p:.4f}" for f, p in zip(FEATURES, pos)) + f") ({time.time() - t0:.0f} s)", flush=True)
    print("cells: MCC / PR-AUC (/ top-k for splice sites)")
    print("| method | trainable params | train min | steps | " + " | ".join(FEATURES) + " |")
    print("|---|---|---|---|" + "---|" * len(FEATURES))
    rt = Runtime(device=args.device, progress=False)
    for i, (label, kind, method) in enumerate(ROWS):
        if args.only and i not in args.only:
            continue
        if kind == "bases":
            import torch

            torch.manual_seed(0)
            model = BasesSegmenter(FEATURES)
        else:
            model = from_backbone(ntkit.load(args.model), FEATURES, seed=0)
        cfg = SegmentTrainConfig(method=method, lr=args.lr, epochs=1000, batch_size=4, max_minutes=args.minutes)
        t = time.time()
        train_segmentation(model, train, cfg, runtime=rt)
        minutes = (time.time() - t) / 60
        # every weight (bases-only, full), else the head's (IA3 adds its scaling vectors, merged after training)
        trainable = (sum(p.numel() for p in model.parameters()) if kind == "bases" or method == "full" else
                     sum(p.numel() for n, p in model.named_parameters() if not n.startswith("nt.")))
        r = segmentation_metrics(test.labels, model.predict(test.sequences, runtime=rt), FEATURES)
        print(f"| {label} | {trainable:,} | {minutes:.1f} | {model.train_result['steps']:,} | "
              + " | ".join(cell(r, f) for f in FEATURES) + " |", flush=True)
    d = DATA / "splice"
    mes = MaxEntScan(d / "maxentscan_score5_matrix.txt", d / "maxentscan_score3_matrix.txt")
    scores = [maxentscan_sites(mes, s) for s in test.sequences]
    r = segmentation_metrics([y[:, 3:] for y in test.labels], scores, FEATURES[3:], threshold=None)  # log-odds: no MCC
    print("| MaxEntScan (published tables) | - | - | - | - | - | - | " + " | ".join(cell(r, f, mcc=False) for f in FEATURES[3:]) + " |")
    r = segmentation_metrics(test.labels, [np.tile(pos, (len(y), 1)) for y in test.labels], FEATURES)
    print("| prevalence (a constant) | - | - | - | " + " | ".join(cell(r, f) for f in FEATURES) + " |")


if __name__ == "__main__":
    main()

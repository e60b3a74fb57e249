"""SpliceAI-10k (the published ensemble, `pip install --no-deps spliceai`) on the chr20 test windows
of ``splice_chrx_chr20.py``: every window of the first ``--test-genes`` chr20 genes of SpliceAI's
canonical table (1,500 labelled bases + 783 of context each side), scored as ``ntkit splice
evaluate --splice-model spliceai --fasta`` does (5,000 bases beyond each window from the genome;
adjacent windows read as one input), next to MaxEntScan on the same positions. chr20 is one of
SpliceAI's *training* chromosomes (its test chromosomes are 1, 3, 5, 7, 9): an upper bound.

    python benchmarks/spliceai_chr20.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from common import DATA
from ntkit.io.datasets import data_file
from ntkit.io.genome import Genome
from ntkit.runtime.engine import Runtime
from ntkit.tasks.predictors import load_predictor, splice_window_probabilities
from ntkit.tasks.splice import MaxEntScan, build_windows, read_transcripts, splice_metrics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--test-genes", type=int, default=40)
    ap.add_argument("--window-bp", type=int, default=1500)
    ap.add_argument("--context", type=int, default=783)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    genome = Genome(DATA / "genomes/GRCh37_chr20.fa.gz")
    table = data_file(DATA, "splice/spliceai_canonical_dataset_hg19.txt")
    test = build_windows(genome, read_transcripts(table, ["chr20"])[: args.test_genes], args.window_bp, context=args.context)
    print(f"test: {len(test)} chr20 windows {test.counts()}", flush=True)
    print("| method | seconds | acceptor top-k | acceptor PR-AUC | donor top-k | donor PR-AUC |\n|---|---|---|---|---|---|")
    t = time.perf_counter()
    pred = load_predictor(None, splice_model="spliceai")
    r = splice_metrics(test.labels, splice_window_probabilities(pred, test, genome, Runtime(device=args.device, progress=False)))
    print(f"| SpliceAI-10k (published ensemble; chr20 is in its training set) | {time.perf_counter() - t:.0f} | {r['acceptor_topk']:.3f} | "
          f"{r['acceptor_prauc']:.3f} | {r['donor_topk']:.3f} | {r['donor_prauc']:.3f} |", flush=True)
    d = DATA / "splice"
    mes = MaxEntScan(d / "maxentscan_score5_matrix.txt", d / "maxentscan_score3_matrix.txt")
    t = time.perf_counter()
    r = splice_metrics(test.labels, [mes.site_scores(s) for s in test.sequences])
    print(f"| MaxEntScan (published tables) | {time.perf_counter() - t:.0f} | {r['acceptor_topk']:.3f} | {r['acceptor_prauc']:.3f} | "
          f"{r['donor_topk']:.3f} | {r['donor_prauc']:.3f} |", flush=True)


if __name__ == "__main__":
    main()

"""Evaluate a pretrained model on the held-out region of its recipe against count baselines.

    python benchmarks/eval_pretrain.py --model runs/tiny-cpu/model --config tiny-cpu

The unigram 6-mer and order-5 Markov baselines are fitted here on the recipe's training sequence
(every source contig minus the held-out regions, both strands) and scored on exactly the masked
6-mers the model is scored on (same windows, same masking seed, every masked token -> <mask>).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ntkit
from ntkit.tasks.baselines import baseline_table, compare_with_baselines
from ntkit.tasks.pretrain import PretrainConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--windows", type=int, default=256, help="held-out windows to score")
    p.add_argument("--seed", type=int, default=1234, help="masking seed")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args()

    cfg = PretrainConfig.from_yaml(args.config)
    t0 = time.time()
    res = compare_with_baselines(ntkit.load(args.model), cfg, n_windows=args.windows, seed=args.seed)
    meta = res["_meta"]
    print(f"held-out: {', '.join(meta['regions'])}; {meta['windows']} windows of {meta['window_bp']} bp; "
          f"{res['model']['n_kmer']:,} masked 6-mers; baselines fitted on {meta['training_bp']:,} bp x 2 strands "
          f"({time.time() - t0:.0f} s)\n")
    print(baseline_table(res))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

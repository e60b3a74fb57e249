"""How to read a frozen NTv3 for a probe: pooling and level, against 6-mer counts and the random
twin (BENCHMARKS.md, "Where along the sequence"; issue 41).

For one pretrained model folder, every task of the shipped NT downstream sample, both strands,
5-fold CV on ``--seeds`` splits (each split its own random twin, as ``bench_cpu_recipe.py``),
logistic regression (``ntkit.tasks.probe``, C tuned on inner folds) on:

- ``mean``: the mean over the sequence of the U-Net's per-base output (``ntkit demo``'s old probe);
- ``meanstd`` / ``meanmax``: that mean with the per-channel standard deviation / maximum;
- ``bins3`` / ``bins5``: the means of 3 / 5 equal segments, concatenated (``embed(..., bins=)``);
- ``L0`` ... ``L{n-1}`` (``--levels``): the mean of each level of the U-Net (down blocks before
  pooling, transformer blocks, up blocks; the last is the output), and ``select``: the level
  chosen per outer fold by the inner folds' MCC (with C);
- ``kmer`` and ``kmer-bins3``: 6-mer counts of both strands over the whole sequence and over each
  third, concatenated (the baseline given the same positional information).

Every feature is computed from the per-base vectors that ``embed(..., pooling="nucleotide",
reverse_complement=True)`` returns (both strands averaged position by position), so ``mean`` and
``bins3`` are ``embed``'s own mean and ``bins=3`` vectors.

    NTKIT_DATA=../../shared/data python bench_probe_pooling.py runs/cpu_recipe/tiny/model --levels --out runs/pooling/tiny.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from sklearn.metrics import matthews_corrcoef

import ntkit
from ntkit.core.sequence import reverse_complement
from ntkit.io.datasets import data_dir, data_file
from ntkit.models import registry
from ntkit.runtime.engine import Runtime
from ntkit.tasks.benchmark import folds_for, kmer_features, load_tasks
from ntkit.tasks.demo import TASKS  # the shipped 18-task NT sample, under the data folder
from ntkit.tasks.embed import bin_edges, bin_means, embed
from ntkit.tasks.probe import fit_predict_probe, make_probe


def pooled(model, seqs: list[str]) -> dict[str, np.ndarray]:
    """Pooling name -> [N, width] from the per-base output (both strands)."""
    per_base = embed(model, seqs, pooling="nucleotide", reverse_complement=True, runtime=Runtime(progress=False))[-1]
    rows = [{"mean": h.mean(0), "meanstd": np.concatenate([h.mean(0), h.std(0)]), "meanmax": np.concatenate([h.mean(0), h.max(0)]),
             "bins3": bin_means(h, 3), "bins5": bin_means(h, 5)} for h in per_base]
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


@torch.no_grad()
def level_means(model, seqs: list[str]) -> list[np.ndarray]:
    """Per U-Net level, [N, C_level]: the mean over a sequence's positions at that level, both
    strands averaged (one sequence per forward, so no row is padded; ``all_hidden_states``)."""
    tok, out = model.tokenizer, []
    for s in seqs:
        per_strand = []
        for x in (s, reverse_complement(s)):
            ids = torch.from_numpy(np.asarray(tok.encode(x), dtype=np.int64))[None]
            res = model(ids, return_logits=False, output_hidden_states=True)
            per_strand.append([h[0].float().mean(0).numpy() for h in res.all_hidden_states])
        out.append([(a + b) / 2 for a, b in zip(*per_strand)])
    return [np.stack([o[i] for o in out]) for i in range(len(out[0]))]


def cv(X, task, seed: int) -> float:
    """Mean MCC over the split's folds: the probe of ``ntkit.tasks.benchmark``."""
    folds, _ = folds_for(task, 5, seed)
    y = task.labels
    return float(np.mean([matthews_corrcoef(y[ev], fit_predict_probe(X[tr], y[tr], X[ev], seed=seed + f))
                          for f, (tr, ev, _) in enumerate(folds)]))


def cv_select(Xs: list[np.ndarray], task, seed: int) -> tuple[float, list[int]]:
    """Per outer fold, the level (and C) with the best inner-fold MCC on the training part only."""
    folds, _ = folds_for(task, 5, seed)
    y, mcc, picks = task.labels, [], []
    for f, (tr, ev, _) in enumerate(folds):
        inner = int(min(3, np.bincount(y[tr]).min()))
        if inner < 2:  # too few of a class for inner folds: the output level, as the probe does
            picks.append(len(Xs) - 1)
            mcc.append(matthews_corrcoef(y[ev], fit_predict_probe(Xs[-1][tr], y[tr], Xs[-1][ev], seed=seed + f)))
            continue
        fits = [make_probe("logreg", "classification", inner, seed + f).fit(X[tr], y[tr]) for X in Xs]
        best = int(np.argmax([g.best_score_ for g in fits]))
        picks.append(best)
        mcc.append(matthews_corrcoef(y[ev], fits[best].predict(Xs[best][ev])))
    return float(np.mean(mcc)), picks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a pretrained NTv3 folder (bench_cpu_recipe.py's runs/cpu_recipe/<variant>/model)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--levels", action="store_true", help="also every U-Net level and the level chosen by inner CV (slower)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="JSON of every task's MCC per split")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tasks = load_tasks(data_file(data_dir(None), TASKS))
    model = ntkit.load(args.model).eval()
    t0 = time.time()
    feats = {t.name: pooled(model, t.sequences) for t in tasks}
    levels = {t.name: level_means(model, t.sequences) for t in tasks} if args.levels else {}
    kmers = {t.name: {"kmer": kmer_features(t.sequences, both_strands=True),
                      "kmer-bins3": np.concatenate([kmer_features([s[slice(*bin_edges(len(s), 3)[j])] for s in t.sequences], both_strands=True)
                                                    for j in range(3)], 1)} for t in tasks}
    res: dict[str, dict[str, list[float]]] = {}

    def add(name, task, value):
        res.setdefault(name, {}).setdefault(task, []).append(value)

    for seed in args.seeds:
        twin = registry.random_like(model, seed=seed + 1).eval()  # as run_benchmark draws it
        for t in tasks:
            rfeats = pooled(twin, t.sequences)
            for k, X in kmers[t.name].items():
                add(k, t.name, cv(X, t, seed))
            for k in feats[t.name]:
                add(k, t.name, cv(feats[t.name][k], t, seed))
                add("random-" + k, t.name, cv(rfeats[k], t, seed))
            if args.levels:
                rlev = level_means(twin, t.sequences)
                for i, (X, R) in enumerate(zip(levels[t.name], rlev)):
                    add(f"L{i}", t.name, cv(X, t, seed))
                    add(f"random-L{i}", t.name, cv(R, t, seed))
                add("select", t.name, cv_select(levels[t.name], t, seed)[0])
                add("random-select", t.name, cv_select(rlev, t, seed)[0])
        print(f"split {seed} done, {time.time() - t0:.0f} s", flush=True)
    mean = {k: float(np.mean([np.mean(v) for v in d.values()])) for k, d in res.items()}
    print("| features | mean MCC | - 6-mer | random twin | tasks > random twin | tasks at or below it |\n|---|---|---|---|---|---|")
    for k in (k for k in res if not k.startswith("random-")):
        twin_k = "random-" + k
        if twin_k in res:
            per = {t: (np.mean(res[k][t]), np.mean(res[twin_k][t])) for t in res[k]}
            below = [t for t, (a, b) in per.items() if a <= b]
            print(f"| {k} | {mean[k]:.3f} | {mean[k] - mean['kmer']:+.3f} | {mean[twin_k]:.3f} | {len(per) - len(below)}/{len(per)} "
                  f"| {', '.join(below)} |")
        else:
            print(f"| {k} | {mean[k]:.3f} | {mean[k] - mean['kmer']:+.3f} | | | |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": args.model, "seeds": args.seeds, "mcc": res}, indent=1))


if __name__ == "__main__":
    main()

"""A pretraining run's model pulled back towards its own initial weights: does the probe keep what
the random architecture reads (base composition on H3K4me3) and what the hour learnt?
(BENCHMARKS.md, "Back towards the initial weights"; issue 41.)

For a ``bench_cpu_recipe.py`` run folder, W1 is its final ``model`` and W0 its initial weights,
rebuilt from the run's seed (``--init-seed``, the recipe's ``seed``; checked: W0 must be nearer the
run's first checkpoint than another seed's weights are, else the script stops). Each ``--alphas``
value a gives the model W0 + a (W1 - W0) (every floating-point tensor; a = 1: the run's model). On
each ``--seeds`` split every model is measured as ``bench_cpu_recipe.py`` measures
(``ntkit.tasks.modelcard.downstream``: both strands, ``--bins`` thirds, logistic regression with C
chosen on inner folds, 5 folds), with 6-mer counts and the split's random twin (seed + 1: never the
run's seed 0 for seeds >= 0). Per-split summaries go to ``--out``; the table at the end gives, per
a, the mean probe MCC, its margin over 6-mer counts (± 2 SE over splits), the tasks above the
twins and the ones below (mean difference ± 2 SE).

    NTKIT_DATA=../../shared/data python bench_init_interpolation.py runs/cpu_interp/tiny --alphas 0.25 0.5 0.75 1 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import torch

import ntkit
from ntkit.io.datasets import data_dir, data_file
from ntkit.models import registry
from ntkit.tasks.benchmark import load_tasks
from ntkit.tasks.demo import TASKS  # the shipped 18-task NT sample, under the data folder
from ntkit.tasks.modelcard import downstream
from ntkit.tasks.options import DEMO_BINS


def distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """The Euclidean distance between two models' floating-point tensors."""
    sa, sb = a.state_dict(), b.state_dict()
    return sum(float((sa[k].double() - sb[k].double()).norm() ** 2) for k in sa if sa[k].is_floating_point()) ** 0.5


def towards(w0: torch.nn.Module, w1: torch.nn.Module, a: float) -> torch.nn.Module:
    """W0 + a (W1 - W0), tensor by tensor (integer buffers: W1's)."""
    if a == 1.0:
        return w1
    s0, s1 = w0.state_dict(), w1.state_dict()
    m = copy.deepcopy(w1)
    m.load_state_dict({k: s0[k] + a * (s1[k] - s0[k]) if s1[k].is_floating_point() else s1[k] for k in s1})
    return m.eval()


def pm(x: float) -> str:
    """`` ± x`` (2 SE over splits); nothing for one split."""
    return "" if np.isnan(x) else f" ± {x:.3f}"


def table(out: Path, alphas: list[float]) -> str:
    """Per a over the splits summarised in ``out``: probe, margin over 6-mer counts, tasks above the twins."""
    base = pd.concat(pd.read_csv(f) for f in sorted(out.glob("base_seed*.csv"))).set_index(["seed", "task", "method"])["mcc_mean"]
    kmer, twin = base.xs("kmer", level="method"), base.xs("random-probe", level="method")
    lines = ["| a | splits | 6-mer | random twin | probe | probe - 6-mer (± 2 SE) | tasks > random twin | below its twins (± 2 SE) |",
             "|---|---|---|---|---|---|---|---|"]
    for a in alphas:
        probe = pd.concat(pd.read_csv(f) for f in sorted(out.glob(f"a{a:g}_seed*.csv"))).set_index(["seed", "task"])["mcc_mean"]
        n = probe.index.get_level_values("seed").nunique()
        margin = probe.groupby(level="seed").mean() - kmer.groupby(level="seed").mean().loc[probe.index.unique("seed")]
        diff = (probe - twin.loc[probe.index]).groupby(level="task")
        mean, se2 = diff.mean(), 2 * diff.std(ddof=1) / np.sqrt(n)
        below = ", ".join(f"{t} {mean[t]:+.3f}{pm(se2[t])}" for t in mean.index if mean[t] <= 0)
        lines.append(f"| {a:g} | {n} | {kmer.loc[probe.index].mean():.3f} | {twin.loc[probe.index].mean():.3f} | {probe.mean():.3f} "
                     f"| {margin.mean():+.3f}{pm(2 * margin.std(ddof=1) / np.sqrt(n))} | {int((mean > 0).sum())}/{len(mean)} | {below} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a bench_cpu_recipe.py run folder (model/, checkpoints/step_*)")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--init-seed", type=int, default=0, help="the run's seed (its recipe's seed)")
    p.add_argument("--bins", type=int, default=DEMO_BINS)
    p.add_argument("--tasks", default=TASKS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/cpu_interp/measure"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    w1 = ntkit.load(args.run_dir / "model").eval()
    w0 = registry.random_like(w1, seed=args.init_seed).eval()
    first = min((args.run_dir / "checkpoints").glob("step_*"), key=lambda q: int(q.name.split("_")[1]))
    start = ntkit.load(first)
    near, other = distance(w0, start), distance(registry.random_like(w1, seed=args.init_seed + 12345), start)
    print(f"W0 (seed {args.init_seed}) to {first.name}: {near:.2f}; another seed's weights: {other:.2f}; W0 to W1: {distance(w0, w1):.2f}",
          flush=True)
    if not near < other / 2:
        sys.exit(f"W0 rebuilt from seed {args.init_seed} is not the run's initial state; give the recipe's seed (--init-seed)")

    tasks = load_tasks(data_file(data_dir(None), args.tasks))
    models = {a: towards(w0, w1, a) for a in args.alphas}
    caches: dict[float, dict] = {a: {} for a in args.alphas}  # each model's embeddings: once for every split
    for seed in args.seeds:
        t0 = time.time()
        base = downstream(w1, tasks, methods=["kmer", "random-probe"], seed=seed, bins=args.bins)["summary"]
        base.assign(seed=seed).to_csv(args.out / f"base_seed{seed}.csv", index=False)
        line = base.groupby("method")["mcc_mean"].mean().round(3).to_dict()
        for a, m in models.items():
            probe = downstream(m, tasks, methods=["probe"], seed=seed, bins=args.bins, features=caches[a])["summary"]
            probe.assign(seed=seed).to_csv(args.out / f"a{a:g}_seed{seed}.csv", index=False)
            line[f"a={a:g}"] = round(float(probe["mcc_mean"].mean()), 3)
        print(f"seed {seed}: {line} ({time.time() - t0:.0f} s)", flush=True)
    print(table(args.out, args.alphas))


if __name__ == "__main__":
    main()

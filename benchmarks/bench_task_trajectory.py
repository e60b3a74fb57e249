"""One task along a pretraining run: the probe against its random twins at each checkpoint
(BENCHMARKS.md, "When H3K4me3 is lost"; issue 41).

``bench_cpu_recipe.py`` measures a run's snapshots on every task (about 26 minutes for 20 splits);
a question about one task ("when does the model fall below its twins on H3K4me3?") needs only that
task at many checkpoints. For each ``--steps`` checkpoint of a ``bench_cpu_recipe.py`` run folder
(``checkpoints/step_*``; 0: the final ``model``), the task is measured exactly as there
(``ntkit.tasks.modelcard.downstream``: both strands, ``--bins`` thirds, logistic regression with C
chosen on inner folds, 5 folds, on ``--seeds`` splits, each split with its own random twin: the
same twins for every checkpoint, as they depend on the architecture and the seed only). One JSON
line per checkpoint: its step and wall minutes in the run, the mean probe and twin MCC over the
splits, their difference with 2 SE over splits and the splits above.

    NTKIT_DATA=../../shared/data python bench_task_trajectory.py runs/cpu_mask40/tiny-mask40 --steps 500 1000 2000 8000 32000 0
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

import ntkit
from ntkit.io.datasets import data_dir, data_file
from ntkit.tasks.benchmark import load_tasks
from ntkit.tasks.demo import TASKS  # the shipped 18-task NT sample, under the data folder
from ntkit.tasks.modelcard import downstream
from ntkit.tasks.options import DEMO_BINS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a bench_cpu_recipe.py run folder (log.csv, checkpoints/, model/)")
    p.add_argument("--steps", type=int, nargs="+", required=True, help="checkpoint steps; 0 = the final model")
    p.add_argument("--task", default="H3K4me3", help="a task of --tasks")
    p.add_argument("--tasks", default=TASKS, help="task file under the data folder")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(20)), help="fold splits")
    p.add_argument("--bins", type=int, default=DEMO_BINS)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tasks = load_tasks(data_file(data_dir(None), args.tasks), [args.task])
    with open(args.run_dir / "log.csv") as f:
        elapsed = {int(r["step"]): float(r["elapsed_s"]) for r in csv.DictReader(f)}
    for step in args.steps:
        folder = args.run_dir / "model" if step == 0 else args.run_dir / "checkpoints" / f"step_{step:07d}"
        model = ntkit.load(folder).eval()
        features, probe, twin = {}, [], []
        for seed in args.seeds:
            s = downstream(model, tasks, methods=["probe", "random-probe"], folds=5, seed=seed, reverse_complement=True, bins=args.bins,
                           features=features)["summary"].set_index("method")["mcc_mean"]
            probe.append(s["probe"])
            twin.append(s["random-probe"])
        d = np.array(probe) - np.array(twin)
        last = max(elapsed)  # the final model: the last logged step's time (the run's last step is at most log_every past it)
        print(json.dumps({"task": args.task, "step": step or "final", "minutes": round(elapsed[step or last] / 60, 2), "probe": round(float(np.mean(probe)), 3),
                          "twin": round(float(np.mean(twin)), 3), "probe_minus_twin": round(float(d.mean()), 3),
                          "2se": round(float(2 * d.std(ddof=1) / np.sqrt(len(d))), 3), "splits_above": int((d > 0).sum()),
                          "splits": len(d)}), flush=True)


if __name__ == "__main__":
    main()

"""One CPU hour of pretraining, and what it is worth downstream: the ``ntv3-small-cpu`` recipe and
its ablations (BENCHMARKS.md, "A DNA language model from one CPU hour").

Each variant is the shipped recipe with a few fields changed (``VARIANTS``); it is pretrained for
``--minutes`` on an otherwise idle machine, then every snapshot (``--snapshots``, minutes: the last
checkpoint written before that wall time, the final model at the budget) is measured the way
``ntkit demo`` measures its model (``ntkit.tasks.modelcard``):

- held-out masked-LM loss / perplexity / bits per base on the recipe's held-out chr20 end;
- frozen mean embeddings + logistic regression (``probe``) on every task of the shipped NT
  downstream sample, 5-fold CV, against 6-mer counts (``kmer``) and the same architecture at random
  initialisation (``random-probe``), the features of both strands as ``ntkit demo`` reads them
  (``--no-reverse-complement``: the forward strand), each sequence as the means of its three
  thirds (``--bins``, ``ntkit demo``'s default; ``--bins 1``: one mean), a 6-mer model's embeddings of each strand
  in one 6-mer frame or averaged over several (``--phases``, ``embed``'s); with ``--ia3`` also IA3 fine-tuning of the
  model and of its random twin (first split only). The tasks have 9-503 sequences, so one 5-fold
  split is noisy: the probes run on ``--seeds`` splits (default 2) and the table reports the mean
  over them, the per-task table also the first split's mean ± 2 SD over its folds, and the probe
  minus its random twin split by split (mean ± 2 SE over splits, splits above: the split-to-split
  spread is what a per-task "above the random twin" has to beat; 20 splits resolve about ±0.06).

The recipe's schedule is "anytime" (1/sqrt decay after warm-up, curriculum switched by step, windows
and masks seeded by index), so the snapshot at 15 minutes is the model a 15-minute run ends with
(give or take the steps between two checkpoints, reported as the snapshot's minutes).

    NTKIT_DATA=../shared/data python bench_cpu_recipe.py --variant recipe --minutes 60 --snapshots 15 30 60 --ia3
    NTKIT_DATA=../shared/data python bench_cpu_recipe.py --variant no-curriculum --minutes 15
    python bench_cpu_recipe.py --table            # the markdown table of every result so far; per task, split by split
    NTKIT_DATA=../shared/data python bench_cpu_recipe.py --variant recipe --run-dir runs/cpu_recipe/recipe \
        --snapshots 60 --tasks tasks/human_enhancers_cohn.tsv --seeds 0   # one large task (6,948 sequences)

Results are appended to ``--out``/results.jsonl (one line per variant x snapshot).
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import torch

import ntkit
from ntkit.io.datasets import data_dir, data_file
from ntkit.tasks.benchmark import load_tasks
from ntkit.tasks.demo import TASKS  # the shipped 18-task NT sample, under the data folder
from ntkit.tasks.modelcard import downstream, heldout_metrics
from ntkit.tasks.options import DEMO_BINS, DEMO_REVERSE_COMPLEMENT
from ntkit.tasks.pretrain import PretrainConfig, pretrain
from ntkit.tasks.pretrain_data import SourceConfig

RECIPE = "ntv3-small-cpu"
# Each variant: fields of the recipe replaced (PretrainConfig names).
VARIANTS: dict[str, dict] = {
    "recipe": {},
    "no-curriculum": {"length_schedule": []},
    "mini": {"model": "ntv3-mini"},
    "tiny": {"model": "ntv3-tiny"},
    # tiny on a mixture of genomes that differ in composition (GC: human chr20 ~44%, E. coli ~51%,
    # P. falciparum ~19%), sampled 4 : 1 : 1 (two thirds of the windows still human): sources are
    # (file under the data folder's genomes/, name, weight)
    "tiny-mix": {"model": "ntv3-tiny", "sources": [("GRCh37_chr20.fa.gz", "GRCh37-chr20", 4.0), ("Ecoli_536.fa.gz", "E.coli-536", 1.0),
                                                   ("Pfalciparum.fa.gz", "P.falciparum", 1.0)]},
    # tiny with 40% of the bases masked (80/10/10 as before) instead of 15%, on the hypothesis that with most
    # neighbours of a masked base masked too its prediction leans on the region (GC, CpG); it tied 15% (BENCHMARKS)
    "tiny-mask40": {"model": "ntv3-tiny", "mask_prob": 0.4},
    # tiny with the 15% masked in runs of 6 bases (span masking; 14.1% after overlaps) instead of independent bases, on the
    # hypothesis that with a masked base's nearest neighbours hidden too its prediction leans on the wider region; it lost
    # 0.032 to independent bases and left H3K4me3 where it was (BENCHMARKS)
    "tiny-span6": {"model": "ntv3-tiny", "mask_span": 6},
    # NT v2's architecture at about the same size (4.6M parameters), 6-mer tokens: 171 tokens = 1,020 bp
    # windows, 8 per step (8,160 bp per step, as the recipe's 8,192 bases)
    "nt-v2-small": {"model": "nt-v2-small", "model_overrides": {"max_tokens": 171}, "window_tokens": 171, "length_schedule": [],
                    "tokens_per_step": 8 * 171},
}
# the same with NT v2's smallest preset (64 wide, 2 layers, 4 heads): several times the steps in the hour
VARIANTS["nt-v2-tiny"] = {**VARIANTS["nt-v2-small"], "model": "nt-v2-tiny"}


def variant_config(name: str, out: Path, minutes: float) -> PretrainConfig:
    cfg = PretrainConfig.from_yaml(RECIPE)
    fields = copy.deepcopy(VARIANTS[name])
    if "sources" in fields:  # in the data folder the recipe's ${NTKIT_DATA} names; a missing one says how to fetch it
        fields["sources"] = [SourceConfig(fasta=str(data_file(data_dir(None), f"genomes/{f}")), name=n, weight=w)
                             for f, n, w in fields["sources"]]
    return dataclasses.replace(cfg, **fields, out_dir=str(out / name), max_minutes=minutes, keep_checkpoints=1000,
                               progress=False)  # validated again (__post_init__)


def snapshots(run_dir: Path, minutes: list[float]) -> list[tuple[float, int, Path]]:
    """(wall minutes, step, folder) of the checkpoint nearest each of ``minutes`` (its own minutes are
    reported); the final model at or past the run's end."""
    with open(run_dir / "log.csv") as f:
        rows = [r for r in csv.DictReader(f)]
    elapsed = {int(r["step"]): float(r["elapsed_s"]) for r in rows}
    ckpts = sorted((int(p.name.split("_")[1]), p) for p in (run_dir / "checkpoints").glob("step_*") if p.is_dir())
    last_logged = max(elapsed)
    final = max([last_logged] + [s for s, _ in ckpts])  # the run's last step (checkpointed when the time ran out)
    out = []
    for m in minutes:
        if m * 60 >= elapsed[last_logged]:
            out.append((elapsed[last_logged] / 60, final, run_dir / "model"))
            continue
        # a checkpoint's step is a multiple of log_every: its elapsed time is logged
        near = sorted((abs(elapsed[s] - m * 60), s, p) for s, p in ckpts if s in elapsed)
        if near:
            _, s, p = near[0]
            out.append((elapsed[s] / 60, s, p))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", choices=sorted(VARIANTS))
    p.add_argument("--minutes", type=float, default=15.0, help="pretraining wall-time budget")
    p.add_argument("--snapshots", type=float, nargs="+", help="minutes at which to measure (default: the end)")
    p.add_argument("--run-dir", type=Path, help="measure this finished run of the variant instead of training one")
    p.add_argument("--ia3", action="store_true", help="also IA3 fine-tuning of the model at the last snapshot (first split)")
    p.add_argument("--random-ia3", action="store_true", help="with --ia3: also of its random twin (as long again)")
    p.add_argument("--ia3-epochs", type=int, default=5)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                   help="fold splits (and random twins) of the probes: the mean over them is less noisy than one split")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tasks", default=TASKS, help="task file under the data folder; tasks/human_enhancers_cohn.tsv is one "
                   "task of 6,948 sequences, large enough to resolve a few hundredths of MCC")
    p.add_argument("--reverse-complement", action=argparse.BooleanOptionalAction, default=DEMO_REVERSE_COMPLEMENT,
                   help="frozen features of both strands, as ntkit demo measures (--no-reverse-complement: the forward strand; "
                   "results tagged, one kind per table)")
    p.add_argument("--bins", type=int, default=DEMO_BINS, help="the probes read the means of this many equal segments of each "
                   "sequence, as ntkit demo measures (1: one mean over the sequence; results tagged, one kind per table)")
    p.add_argument("--phases", type=int, default=1, help="6-mer models (nt-v2-*): the probes read the embeddings averaged over "
                   "this many frames of each strand (6: every 6-mer; results tagged, one kind per table)")
    p.add_argument("--out", type=Path, default=Path("runs/cpu_recipe"))
    p.add_argument("--table", action="store_true", help="print the table of --out/results.jsonl (and per task, the last "
                   "row of --variant) and stop")
    args = p.parse_args()
    results = args.out / "results.jsonl"
    if args.table:
        rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        # one task set and one strand setting per table (rows older than the setting read the forward strand)
        rows = [r for r in rows if r.get("tasks", TASKS) == args.tasks and r.get("reverse_complement", False) == args.reverse_complement
                and r.get("bins", 1) == args.bins and r.get("phases", 1) == args.phases]  # rows older than the setting: one mean, one frame
        rows = merge_splits(rows)
        print(table(rows))
        mine = [r for r in rows if r["variant"] == args.variant]
        if mine:
            print(f"\n{args.variant} at {mine[-1]['minutes']} min, per task:\n" + task_table(mine[-1]))
            margins = margin_table(mine[-1], args.out, result_tag(args))
            if margins:
                print(f"\n{args.variant} at {mine[-1]['minutes']} min, the probe against its random twins split by split:\n" + margins)
        return
    if not args.variant:
        p.error("--variant is needed (or --table)")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = variant_config(args.variant, args.out, args.minutes)
    run_dir = args.run_dir or Path(cfg.out_dir)
    if args.run_dir is None:
        if (run_dir / "model").exists():
            print(f"{run_dir} holds a finished run: measuring it", flush=True)
        else:
            t0 = time.time()
            pretrain(cfg)
            print(f"pretrained {args.variant} for {(time.time() - t0) / 60:.1f} min", flush=True)
    tasks = load_tasks(data_file(data_dir(None), args.tasks))
    tag = result_tag(args)
    snaps = snapshots(run_dir, args.snapshots or [args.minutes])
    for i, (minutes, step, folder) in enumerate(snaps):
        model = ntkit.load(folder).eval()
        t0 = time.time()
        held = heldout_metrics(model, cfg, n_windows=64)
        per_seed, features = [], {}  # the model's embeddings and 6-mer counts: once for every split
        for seed in args.seeds:
            ia3 = []  # fine-tuning is slow: the last snapshot, the first split
            if args.ia3 and i == len(snaps) - 1 and seed == args.seeds[0]:
                ia3 = ["ia3", "random-ia3"] if args.random_ia3 else ["ia3"]
            bench = downstream(model, tasks, methods=["kmer", "probe", "random-probe"] + ia3, folds=args.folds, seed=seed,
                               finetune_epochs=args.ia3_epochs, reverse_complement=args.reverse_complement, bins=args.bins,
                               phases=args.phases, features=features)
            bench["summary"].assign(seed=seed).to_csv(args.out / f"{args.variant}_{round(minutes)}min{tag}_seed{seed}_summary.csv", index=False)
            per_seed.append(bench)
            print(f"seed {seed}:\n{bench['table']}", flush=True)
        first = per_seed[0]
        mean_mcc = {k: sum(b["mean_mcc"].get(k, 0.0) for b in per_seed) / len(per_seed) for k in ("kmer", "probe", "random-probe")}
        mean_mcc.update({k: v for k, v in first["mean_mcc"].items() if k not in mean_mcc})  # IA3: the first split only
        tasks_mean = pd.concat([b["summary"] for b in per_seed]).groupby(["task", "method"], sort=False)["mcc_mean"].mean().reset_index()
        row = {"variant": args.variant, "tasks": args.tasks, "reverse_complement": args.reverse_complement, "bins": args.bins, "phases": args.phases, "model": cfg.model,
               "params": model.num_parameters(), "minutes": round(minutes, 1), "step": step, "tokens": tokens_at(run_dir, step, cfg.tokens_per_step), "heldout": held, "mean_mcc": mean_mcc, "seeds": args.seeds,
               "mean_mcc_per_seed": [b["mean_mcc"] for b in per_seed],
               "per_task": tasks_mean.to_dict(orient="records"),
               "per_task_first_seed": first["summary"][["task", "method", "mcc_mean", "mcc_2sd"]].to_dict(orient="records"),
               "eval_s": round(time.time() - t0, 1)}
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{args.variant} at {minutes:.1f} min (step {step}): held-out {held['bits_per_base']:.3f} bits/base; mean MCC over "
              f"{len(args.seeds)} splits " + ", ".join(f"{k} {v:.3f}" for k, v in mean_mcc.items()), flush=True)


def tokens_at(run_dir: Path, step: int, tokens_per_step: int) -> int:
    """Tokens read by ``step``: the log's count there, else (the final step, not logged) every step's
    ``tokens_per_step`` (each curriculum stage keeps it)."""
    with open(run_dir / "log.csv") as f:
        for r in csv.DictReader(f):
            if int(r["step"]) == step:
                return int(float(r["tokens"]))
    return step * tokens_per_step


def result_tag(args) -> str:
    """The file-name tag of a measurement's settings (task file, strands, bins, frames)."""
    return (("" if args.tasks == TASKS else "_" + Path(args.tasks).name.split(".")[0]) + ("_rc" if args.reverse_complement else "")
            + (f"_bins{args.bins}" if args.bins != 1 else "") + (f"_phases{args.phases}" if args.phases != 1 else ""))


def margin_table(row: dict, out: Path, tag: str) -> str | None:
    """Per task, probe minus random twin on each split (each split: its own folds and its own
    random initialisation): the mean over splits, 2 standard errors of that mean, and the splits
    on which the probe is above. From the per-split summaries beside results.jsonl; None without
    them (or with fewer than 2 splits)."""
    files = [out / f"{row['variant']}_{round(row['minutes'])}min{tag}_seed{seed}_summary.csv" for seed in row["seeds"]]
    if len(files) < 2 or not all(f.exists() for f in files):
        return None
    per = pd.concat([pd.read_csv(f) for f in files]).pivot_table(index=["task", "seed"], columns="method", values="mcc_mean")
    diff = (per["probe"] - per["random-probe"]).unstack("seed")
    n = diff.shape[1]
    lines = [f"| task | probe - random ({n} splits) | ± 2 SE | splits above | splits tied |", "|---|---|---|---|---|"]
    for task, d in diff.iterrows():
        lines.append(f"| {task} | {d.mean():+.3f} | {2 * d.std(ddof=1) / np.sqrt(n):.3f} | {int((d > 0).sum())}/{n} | {int((d == 0).sum())} |")
    means = diff.mean(axis=1)
    lines.append(f"| **tasks above** | {int((means > 0).sum())}/{len(means)} | | | |")
    return "\n".join(lines)


def merge_splits(rows: list[dict]) -> list[dict]:
    """Rows of one checkpoint (variant, step) measured on disjoint splits by separate runs (``--run-dir``
    with more ``--seeds``) as one row over all their splits: means over splits weighted by each row's
    split count, the first row's held-out figures and first split. Rows that share a split (the same
    splits measured again, e.g. after a probe change) stay apart."""
    out: list[dict] = []
    for r in rows:
        same = next((o for o in out if _checkpoint(o) == _checkpoint(r) and not set(o["seeds"]) & set(r["seeds"])
                     and "mean_mcc_per_seed" in o and "mean_mcc_per_seed" in r), None)
        if same is None:
            out.append(dict(r))
            continue
        n0, n1 = len(same["seeds"]), len(r["seeds"])
        w = lambda a, b: (a * n0 + b * n1) / (n0 + n1)  # noqa: E731
        same["mean_mcc"] = {**same["mean_mcc"], **{k: w(same["mean_mcc"][k], r["mean_mcc"][k]) for k in ("kmer", "probe", "random-probe")}}
        per = {(t["task"], t["method"]): t["mcc_mean"] for t in r["per_task"]}
        same["per_task"] = [{**t, "mcc_mean": w(t["mcc_mean"], per[(t["task"], t["method"])])} for t in same["per_task"]
                            if (t["task"], t["method"]) in per]
        same["seeds"] = same["seeds"] + r["seeds"]
        same["mean_mcc_per_seed"] = same["mean_mcc_per_seed"] + r["mean_mcc_per_seed"]
    return out


def _checkpoint(row: dict) -> tuple:
    """What identifies a row's checkpoint: variant, step, minutes and its held-out loss (the same seeded
    windows: another run of the variant that ended at the same step differs there)."""
    return row["variant"], row["step"], row["minutes"], round(row["heldout"]["bits_per_base"], 4)


def table(rows: list[dict]) -> str:
    """Per variant x snapshot: size, time, held-out figures, mean MCC of each method and the margins."""
    head = ("| variant | model | params | minutes | steps | held-out ppl | bits/base | 6-mer MCC | random-init MCC | probe MCC "
            "| probe - 6-mer (± 2 SE over splits) | tasks probe > random | IA3 MCC | random IA3 MCC |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        m, h = r["mean_mcc"], r["heldout"]
        per = {(t["task"], t["method"]): t["mcc_mean"] for t in r["per_task"]}
        tasks = sorted({t for t, _ in per})
        both = [t for t in tasks if (t, "probe") in per and (t, "random-probe") in per]
        wins = sum(per[(t, "probe")] > per[(t, "random-probe")] for t in both)
        ties = sum(per[(t, "probe")] == per[(t, "random-probe")] for t in both)  # e.g. both predict the majority class: MCC 0
        lines.append(f"| {r['variant']} | {r['model']} | {r['params'] / 1e6:.2f}M | {r['minutes']} | {r['step']:,} | {h['perplexity']:.3f} "
                     f"| {h['bits_per_base']:.3f} | {m['kmer']:.3f} | {m['random-probe']:.3f} | **{m['probe']:.3f}** "
                     f"| {m['probe'] - m['kmer']:+.3f}{_se(r)} | {wins}/{len(both)}{f' ({ties} tied)' if ties else ''} | {_f(m.get('ia3'))} | {_f(m.get('random-ia3'))} |")
    return "\n".join(lines)


def task_table(row: dict) -> str:
    """Per task for one variant x snapshot: the first split's mean ± 2 SD over folds, and the mean over splits."""
    first = {(t["task"], t["method"]): t for t in row["per_task_first_seed"]}
    mean = {(t["task"], t["method"]): t["mcc_mean"] for t in row["per_task"]}
    methods = [m for m in ("kmer", "random-probe", "probe", "ia3", "random-ia3") if any(k[1] == m for k in first)]
    head = "| task | " + " | ".join(f"{m} (split 0)" for m in methods) + " | " + " | ".join(f"{m} ({len(row['seeds'])} splits)" for m in methods[:3]) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for task in dict.fromkeys(t for t, _ in first):
        cells = [f"{first[(task, m)]['mcc_mean']:.3f} ± {first[(task, m)]['mcc_2sd']:.3f}" if (task, m) in first else "" for m in methods]
        cells += [f"{mean[(task, m)]:.3f}" if (task, m) in mean else "" for m in methods[:3]]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    seed0 = row["mean_mcc_per_seed"][0]
    lines.append("| **mean** | " + " | ".join(f"**{seed0[m]:.3f}**" if m in seed0 else "" for m in methods) + " | "
                 + " | ".join(f"**{row['mean_mcc'][m]:.3f}**" for m in methods[:3]) + " |")
    return "\n".join(lines)


def _se(row: dict) -> str:
    """`` ± 2 SE`` of the probe's margin over 6-mer counts across the row's splits ("" for one split)."""
    d = np.array([s["probe"] - s["kmer"] for s in row.get("mean_mcc_per_seed", [])])
    return f" ± {2 * d.std(ddof=1) / np.sqrt(len(d)):.3f}" if len(d) > 1 else ""


def _f(x) -> str:
    return "" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    main()

"""Downstream benchmark: the NT tasks (or any labelled sequence sets) with k-fold cross-validation.

Task files:
- a TSV/CSV/parquet table with a ``sequence`` (or ``seq``) column, a ``label`` column and, for
  several tasks in one file, a ``task`` column (e.g. ``nt_downstream_revised_subsample.tsv``);
  without ``task`` the file stem names the task;
- a folder with one sub-folder per task holding ``train`` and ``test`` files as published on the
  Hugging Face hub (``train.fna``/``test.fna`` FASTA with ``>name|label`` headers, or
  ``train*.parquet``/``.csv`` with sequence/label/name columns).

Protocol (fixed seeds): with a test split (NT's layout), fold ``k`` of a stratified 10-fold split of
the training set is the validation part (early stopping) and the model trained on the other nine
is scored on the test set; without one, the data itself is split 10-fold (train 9, test 1; the
validation part for early stopping is then taken from the training folds). Fewer folds are used,
and reported, when a class has fewer than 10 members. The metric is MCC (as in NT's revised
benchmark) with macro F1 beside it; mean and 2 SD over folds.

Methods: ``probe`` (logistic regression on mean embeddings of the pretrained model), ``mlp``,
``ia3``/``lora``/``full`` fine-tuning, and the baselines ``kmer`` (6-mer count logistic
regression) and ``random-probe`` / ``random-ia3`` (the same architecture, randomly initialised).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ntkit.io.genome import read_fasta_records
from ntkit.io.labels import Classes
from ntkit.io.plotting import figure, save_figure
from ntkit.io.sequences import read_sequences
from ntkit.models import adapters, registry
from ntkit.runtime.engine import as_runtime
from ntkit.runtime.jobs import atomic_output, write_text_atomic
from ntkit.runtime.progress import bar as progress_bar
from ntkit.tasks.baselines import kmer_counts
from ntkit.tasks.embed import check_bins, check_phases, embed
from ntkit.tasks.finetune import FinetuneConfig, finetune
from ntkit.tasks.options import METHODS  # noqa: F401  (re-exported)
from ntkit.tasks.probe import fit_predict_probe


@dataclass
class Task:
    """A labelled task; ``labels`` / ``test_labels`` are class indices into ``classes`` (the
    training labels' names, ``ntkit.io.labels``)."""

    name: str
    sequences: list[str]
    labels: np.ndarray
    test_sequences: list[str] | None = None
    test_labels: np.ndarray | None = None
    classes: tuple = ()

    @property
    def n_classes(self) -> int:
        if self.classes:
            return len(self.classes)
        return int(max(self.labels.max(), -1 if self.test_labels is None else self.test_labels.max()) + 1)


def _read_split(path: Path) -> tuple[list[str], list]:
    """(sequences, raw labels) of one file: FASTA with ``|label`` at the end of each header, or a table."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".fa", ".fna", ".fasta")):
        recs = list(read_fasta_records(path))
        return [s for _, s in recs], [h.rsplit("|", 1)[-1] if "|" in h else None for h, _ in recs]

    _, seqs, table = read_sequences(path)
    if table is None or "label" not in table:
        raise ValueError(f"{path}: no 'label' column")
    return seqs, table["label"].tolist()


def _task(name: str, train: tuple[list[str], list], test: tuple[list[str], list] | None, where: str) -> Task:
    classes = Classes.fit(train[1], f"{where} (task {name})")
    t = Task(name, train[0], classes.encode(train[1], where), classes=classes.names)
    if test is not None:
        t.test_sequences, t.test_labels = test[0], classes.encode(test[1], f"{where} (task {name}, test)")
    return t


def load_tasks(path: str | Path, tasks: Sequence[str] | None = None) -> list[Task]:
    path = Path(path)
    out: list[Task] = []
    if path.is_dir():
        for d in sorted(p for p in path.iterdir() if p.is_dir()):
            if tasks and d.name not in tasks:
                continue
            files = sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith("."))
            train = [f for f in files if f.name.startswith("train")]
            test = [f for f in files if f.name.startswith("test")]
            if not train:
                continue
            parts = [_read_split(f) for f in train]
            tp = [_read_split(f) for f in test]
            joined = lambda ps: (sum((p[0] for p in ps), []), sum((list(p[1]) for p in ps), []))  # noqa: E731
            out.append(_task(d.name, joined(parts), joined(tp) if tp else None, str(d)))
    else:
        _, seqs, table = read_sequences(path)
        if "label" not in table:
            raise ValueError(f"{path}: no 'label' column")
        table = table.assign(_seq=seqs)
        groups = table.groupby("task", sort=True) if "task" in table else [(path.name.split(".")[0], table)]
        for name, g in groups:
            if tasks and name not in tasks:
                continue
            out.append(_task(str(name), (g["_seq"].tolist(), g["label"].tolist()), None, str(path)))
    if tasks:
        missing = set(tasks) - {t.name for t in out}
        if missing:
            raise ValueError(f"tasks not found in {path}: {sorted(missing)}")
    if not out:
        raise ValueError(f"no tasks found in {path}")
    return out


# -- baselines ------------------------------------------------------------------------------------------


def kmer_features(sequences: Sequence[str], k: int = 6, both_strands: bool = False) -> np.ndarray:
    """Normalised counts of the 4**k k-mers (overlapping; windows with non-ACGT skipped);
    ``both_strands``: the reverse complement's k-mers counted too (a sequence and its reverse
    complement get the same vector)."""
    X = np.stack([kmer_counts([s], k, both_strands=both_strands) for s in sequences]).astype(np.float32)
    return X / np.maximum(X.sum(1, keepdims=True), 1)


# -- protocol ---------------------------------------------------------------------------------------------


def folds_for(task: Task, n_folds: int, seed: int):
    """[(train_idx, eval_idx, eval_on_test)] per fold, and the number of folds used."""
    from sklearn.model_selection import StratifiedKFold

    k = int(min(n_folds, np.bincount(task.labels).min()))
    if k < 2:
        return [], k
    skf = StratifiedKFold(k, shuffle=True, random_state=seed)
    return [(tr, ev, task.test_sequences is not None) for tr, ev in skf.split(np.zeros(len(task.labels)), task.labels)], k


def _scores(y, pred) -> dict:
    from sklearn.metrics import f1_score, matthews_corrcoef

    return {"mcc": float(matthews_corrcoef(y, pred)), "f1": float(f1_score(y, pred, average="macro"))}


def run_benchmark(
    tasks: list[Task],
    model=None,
    *,
    methods: Sequence[str] = ("kmer", "probe", "random-probe", "ia3"),
    n_folds: int = 10,
    layer: int = -1,
    reverse_complement: bool = False,
    bins: int = 1,
    phases: int = 1,
    seed: int = 0,
    finetune_epochs: int = 10,
    finetune_lr: float | None = None,
    batch_size: int = 16,
    runtime=None,
    features: dict | None = None,
) -> pd.DataFrame:
    """One row per (task, method, fold): mcc, f1, n_train, n_eval, folds. ``reverse_complement``:
    the frozen features read both strands, so that a sequence and its reverse complement get the
    same features: mean embeddings of the sequence and of its reverse complement averaged
    (``embed``'s ``reverse_complement``), 6-mer counts over both strands; fine-tuning trains on a
    random strand of each sequence and predicts the mean over both (``FinetuneConfig``'s
    ``reverse_complement``). Off, as NT's published protocol: the forward strand only. ``bins``:
    the frozen probes read the means of ``bins`` equal segments of each sequence, concatenated
    (``embed``'s ``bins``; 1, NT's protocol: one mean); 6-mer counts stay whole-sequence counts.
    ``phases``: a 6-mer model's embeddings averaged over that many frames of each strand
    (``embed``'s ``phases``; 1, NT's protocol: the frame from the first base).

    ``features``: a dict that the caller passes again to further calls with the same ``model`` and
    tasks (several fold ``seed``s): the 6-mer counts and ``model``'s embeddings are kept there and
    computed once; the random twin's are not (each seed draws its own)."""
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    if model is None and set(methods) - {"kmer"}:
        raise ValueError("a model is needed for every method but kmer")
    check_bins(bins)
    if model is not None:
        check_phases(phases, model.tokenizer.kmer)

    rt = as_runtime(runtime)
    quiet = rt.replace(progress=False)
    random_model = registry.random_like(model, seed=seed + 1) if model is not None and any(m.startswith("random") for m in methods) else None
    rows = []

    bar = progress_bar(total=len(tasks) * len(methods), unit="task-method", desc="benchmark", enabled=rt.progress)
    for task in tasks:
        folds, k = folds_for(task, n_folds, seed)
        if not folds:
            rows.append({"task": task.name, "method": "-", "fold": -1, "status": f"skipped: a class has {k} example(s)"})
            bar.update(len(methods))
            continue
        all_seqs = task.sequences + (task.test_sequences or [])
        n_train_pool = len(task.sequences)
        feats: dict[str, np.ndarray] = {}
        for method in methods:
            t0 = time.time()
            if method == "kmer":
                feats[method] = _cached(features, (task.name, len(all_seqs), method, reverse_complement),
                                        lambda: kmer_features(all_seqs, both_strands=reverse_complement))
            elif method in ("probe", "mlp", "random-probe"):
                m = random_model if method == "random-probe" else model
                key = "random" if method == "random-probe" else "pretrained"
                if key not in feats:
                    keep = None if key == "random" else (task.name, len(all_seqs), key, layer, reverse_complement, bins, phases)
                    feats[key] = _cached(features, keep, lambda: embed(m, all_seqs, layers=[layer], reverse_complement=reverse_complement,
                                                                       bins=bins, phases=phases,
                                                                       runtime=quiet.replace(batch_size=batch_size))[layer])
            for f, (tr, ev, on_test) in enumerate(folds):
                if on_test:  # NT layout: train on 9/10 of train, validate on 1/10, score on test
                    fit_idx, val_idx, eval_idx = tr, ev, np.arange(n_train_pool, len(all_seqs))
                else:
                    fit_idx, val_idx, eval_idx = tr, None, ev
                y_all = np.concatenate([task.labels, task.test_labels]) if task.test_labels is not None else task.labels
                y_eval = y_all[eval_idx]
                if method in ("kmer", "probe", "mlp", "random-probe"):
                    X = feats["kmer"] if method == "kmer" else feats["random" if method == "random-probe" else "pretrained"]
                    pred = fit_predict_probe(X[fit_idx], y_all[fit_idx], X[eval_idx], "mlp" if method == "mlp" else "logreg", seed=seed + f)
                else:
                    base = random_model if method == "random-ia3" else model
                    ft = "ia3" if method in ("ia3", "random-ia3") else method
                    cfg = FinetuneConfig(method=ft, n_classes=task.n_classes, epochs=finetune_epochs, lr=finetune_lr, batch_size=batch_size,
                                         seed=seed + f, classes=list(task.classes) or list(range(task.n_classes)),  # labels: indices
                                         reverse_complement=reverse_complement)
                    valid = ([all_seqs[i] for i in val_idx], y_all[val_idx]) if val_idx is not None else None
                    ftm = finetune(base, [all_seqs[i] for i in fit_idx], y_all[fit_idx], cfg, valid=valid, runtime=quiet)
                    pred = ftm.predict([all_seqs[i] for i in eval_idx], runtime=quiet.replace(batch_size=batch_size * 2)).argmax(1)
                    adapters.detach(base)  # leave the shared base model clean
                rows.append({"task": task.name, "method": method, "fold": f, "status": "ok", **_scores(y_eval, pred),
                             "n_train": len(fit_idx), "n_eval": len(eval_idx), "n_task": len(all_seqs), "folds": k,
                             "seconds": time.time() - t0})
                t0 = time.time()
            bar.update(1)
    bar.close()
    return pd.DataFrame(rows)


def _cached(cache: dict | None, key: tuple | None, compute):
    """``cache[key]``, computed on first use; ``compute()`` every time without a cache or a key."""
    if cache is None or key is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    ok = results[results["status"] == "ok"]
    g = ok.groupby(["task", "method"], sort=False)
    s = g.agg(mcc_mean=("mcc", "mean"), mcc_sd=("mcc", "std"), f1_mean=("f1", "mean"), f1_sd=("f1", "std"), folds=("folds", "first"),
              n=("n_task", "first"), n_eval=("n_eval", "min")).reset_index()
    s["mcc_2sd"] = 2 * s["mcc_sd"].fillna(0)
    s["f1_2sd"] = 2 * s["f1_sd"].fillna(0)
    return s.drop(columns=["mcc_sd", "f1_sd"])


FEW_EVAL_ROWS = 30  # fewer sequences than this per evaluation fold: the MCC of one fold swings widely


def markdown_table(summary: pd.DataFrame, results: pd.DataFrame | None = None) -> str:
    """Per task and method: MCC as mean ± 2 SD over the folds, with the task's size (n) and the
    fold count; tasks whose evaluation folds hold fewer than ``FEW_EVAL_ROWS`` sequences are flagged."""
    methods = list(dict.fromkeys(summary["method"]))
    lines = ["MCC per task: mean ± 2 SD over the cross-validation folds; n = sequences in the task.", "",
             "| task | n | folds | " + " | ".join(f"{m} MCC" for m in methods) + " |", "|---|---|---|" + "---|" * len(methods)]
    few = []
    for task, g in summary.groupby("task", sort=True):
        g = g.set_index("method")
        best = g["mcc_mean"].max()
        cells = []
        for m in methods:
            if m not in g.index:
                cells.append("-")
                continue
            v = f"{g.loc[m, 'mcc_mean']:.3f} ± {g.loc[m, 'mcc_2sd']:.3f}"
            cells.append(f"**{v}**" if math.isclose(g.loc[m, "mcc_mean"], best) else v)
        n, n_eval = int(g["n"].iloc[0]), int(g["n_eval"].min())
        flag = " ⚠" if n_eval < FEW_EVAL_ROWS else ""
        if flag:
            few.append(f"{task} ({n_eval} sequences per evaluation fold)")
        lines.append(f"| {task}{flag} | {n} | {int(g['folds'].iloc[0])} | " + " | ".join(cells) + " |")
    mean = summary.groupby("method", sort=False)["mcc_mean"].mean()
    lines.append("| **mean** | | | " + " | ".join(f"{mean[m]:.3f}" for m in methods) + " |")
    if few:
        lines.append(f"\n⚠ too few rows for a stable MCC: {', '.join(few)}; its ± is wide and a difference between methods "
                     "there means little.")
    if results is not None and "status" in results:
        for _, r in results[results["status"] != "ok"].iterrows():
            lines.append(f"\n{r['task']}: {r['status']}")
    return "\n".join(lines)


def plot(summary: pd.DataFrame, path: str | Path) -> Path:
    tasks = sorted(summary["task"].unique())
    methods = list(dict.fromkeys(summary["method"]))
    w = 0.8 / len(methods)
    fig = figure(figsize=(max(8, 0.6 * len(tasks) * max(1, len(methods) / 2)), 4.5))
    ax = fig.subplots()
    x = np.arange(len(tasks))
    for i, m in enumerate(methods):
        g = summary[summary["method"] == m].set_index("task").reindex(tasks)
        ax.bar(x + (i - (len(methods) - 1) / 2) * w, g["mcc_mean"], w, yerr=g["mcc_2sd"], capsize=2, label=m)
    ax.set_xticks(x, tasks, rotation=45, ha="right")
    ax.set_ylabel("MCC (mean ± 2 SD over folds)")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylim(-1.05, 1.05)  # MCC range; error bars beyond it are clipped
    ax.legend(fontsize=8, ncol=min(len(methods), 4))
    return save_figure(fig, path)


def write_report(results: pd.DataFrame, out_dir: str | Path, meta: dict | None = None) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(results)
    paths = {"results": out / "results.csv", "summary": out / "summary.csv", "table": out / "table.md", "plot": out / "mcc.png"}

    for key, table in (("results", results), ("summary", summary)):
        with atomic_output(paths[key]) as tmp:
            table.to_csv(tmp, index=False)
    write_text_atomic(paths["table"], markdown_table(summary, results) + "\n")
    if len(summary):
        plot(summary, paths["plot"])
    if meta:
        write_text_atomic(out / "meta.json", json.dumps(meta, indent=2, default=str))
    return paths

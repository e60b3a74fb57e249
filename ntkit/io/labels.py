"""Labels of labelled tables: classes are defined once, by the training data, and applied to every
later file (validation, test, prediction), so class ``k`` means the same label everywhere.

Class names are the label values as read (integers stay integers: ``1.0`` read from a table is 1;
anything else is a string), sorted: integers by value, strings alphabetically. Missing labels, a
single class, or a label unseen in training are errors; so are non-numeric or missing
regression targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ntkit.io.sequences import read_sequences


def _name(v, where: str):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        raise ValueError(f"{where}: missing label (empty or NaN); every row needs one")
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return int(v) if float(v).is_integer() else str(v)
    s = str(v).strip()
    if s == "" or s.lower() in ("nan", "na"):
        raise ValueError(f"{where}: missing label (empty or NaN); every row needs one")
    return int(s) if s.lstrip("-").isdigit() else s


@dataclass(frozen=True)
class Classes:
    names: tuple  # class k is names[k]

    @classmethod
    def fit(cls, values: Iterable, where: str = "labels") -> "Classes":
        names = {_name(v, where) for v in values}
        if len(names) < 2:
            raise ValueError(f"{where}: a classifier needs at least 2 classes, found {sorted(names, key=str) or 'none'}")
        return cls(tuple(sorted(names, key=lambda n: (isinstance(n, str), n if isinstance(n, str) else float(n), str(n)))))

    def encode(self, values: Iterable, where: str = "labels") -> np.ndarray:
        index = {n: k for k, n in enumerate(self.names)}
        out, unseen = [], set()
        for v in values:
            n = _name(v, where)
            if n not in index:
                unseen.add(n)
            out.append(index.get(n, -1))
        if unseen:
            raise ValueError(f"{where}: label(s) {sorted(unseen, key=str)} not among the training classes {list(self.names)}")
        return np.asarray(out, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.names)


def regression_targets(values: Iterable, where: str = "labels") -> np.ndarray:
    """float32 targets; non-numeric or missing values are errors."""
    out = []
    for i, v in enumerate(values):
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: row {i + 1}: regression target {v!r} is not a number") from None
        if not math.isfinite(x):
            raise ValueError(f"{where}: row {i + 1}: regression target {v!r} is missing or not finite")
        out.append(x)
    return np.asarray(out, dtype=np.float32)


def select_task(path, seqs: list[str], t, task_name: str | None, option: str = "--task-name"):
    """The rows of one task of a table: a table with a ``task`` column holding several tasks
    (as NT's downstream sample) is never pooled silently; ``task_name`` picks one."""
    if task_name is not None:
        if t is None or "task" not in t:
            raise ValueError(f"{path}: no 'task' column to pick task {task_name!r} from")
        keep = (t["task"].astype(str) == task_name).to_numpy()
        if not keep.any():
            raise ValueError(f"{path}: no rows of task {task_name!r} (tasks: {', '.join(sorted(map(str, t['task'].unique())))})")
        return [s for s, k in zip(seqs, keep) if k], t[keep].reset_index(drop=True)
    if t is not None and "task" in t and t["task"].nunique() > 1:
        names = sorted(map(str, t["task"].unique()))
        raise ValueError(f"{path} holds {len(names)} tasks in its 'task' column ({', '.join(names[:6])}{' ...' if len(names) > 6 else ''}): "
                         f"choose one with {option}, or run `ntkit benchmark` for every task")
    return seqs, t


def read_labelled(path, task: str, classes=None, label_column: str = "label", task_name: str | None = None,
                  sequence_column: str | None = None):
    """(sequences, targets, Classes or None) of a labelled table (of one task: ``select_task``): a
    file, or a table in memory (pandas, pyarrow, ``datasets.Dataset``: ``embed.read_sequences``);
    ``classes`` (from the training data) numbers the labels of every later file. Empty sequences
    and bad labels are errors."""
    from pathlib import Path

    _, seqs, t = read_sequences(path, sequence_column)
    where = str(path) if isinstance(path, (str, Path)) else "the table"  # a DataFrame / Dataset in memory
    if t is None or label_column not in t:
        raise ValueError(f"{where}: no {label_column!r} column (have {[] if t is None else list(t.columns)}); name it with "
                         "--label-column (Python: label_column=)")
    seqs, t = select_task(where, seqs, t, task_name)
    empty = [i + 1 for i, s in enumerate(seqs) if not s]
    if empty:
        raise ValueError(f"{where}: empty sequence in row(s) {empty[:5]}{' ...' if len(empty) > 5 else ''}")
    if task == "regression":
        return seqs, regression_targets(t[label_column], where), None
    classes = classes or Classes.fit(t[label_column], where)
    return seqs, classes.encode(t[label_column], where), classes

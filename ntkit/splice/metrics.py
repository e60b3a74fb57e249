"""SpliceAI's metrics (top-k accuracy, PR-AUC) and the evaluation table."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .data import CONTEXT, SpliceWindows
from .model import SpliceModel
from .predict import predict_windows


def topk_accuracy(y_true: np.ndarray, score: np.ndarray) -> float:
    """SpliceAI's top-k accuracy: k = number of true sites; fraction of them among the k best scores."""
    k = int(y_true.sum())
    if k == 0:
        return float("nan")
    top = np.argpartition(-score, k - 1)[:k]
    return float(y_true[top].sum() / k)


def splice_metrics(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> dict[str, float]:
    """Per class (acceptor, donor): top-k accuracy and PR-AUC over every position of every window."""
    from sklearn.metrics import average_precision_score

    y = np.concatenate(labels)
    s = np.concatenate(scores)
    keep = y != CONTEXT  # context bases are not scored
    y, s = y[keep], s[keep]
    out = {}
    for c, name in ((1, "acceptor"), (2, "donor")):
        t = (y == c).astype(np.int8)
        sc = np.nan_to_num(s[:, c].astype(np.float64), neginf=-1e300)
        out[f"{name}_topk"] = topk_accuracy(t, sc)
        out[f"{name}_prauc"] = float(average_precision_score(t, sc)) if t.any() else float("nan")
        out[f"{name}_sites"] = int(t.sum())
    return out


def evaluate_splice(model: SpliceModel | None, test: SpliceWindows, baselines: dict[str, object], *, runtime=None) -> pd.DataFrame:
    rows = []
    if model is not None:
        pred = predict_windows(model, test, runtime=runtime)
        rows.append({"method": f"ntkit ({model.head_kind} head, {model.method})", **splice_metrics(test.labels, pred)})
    for name, b in baselines.items():
        rows.append({"method": name, **splice_metrics(test.labels, [b.site_scores(s) for s in test.sequences])})
    return pd.DataFrame(rows)


def results_table(df: pd.DataFrame) -> str:
    lines = ["| method | acceptor top-k | acceptor PR-AUC | donor top-k | donor PR-AUC |", "|---|---|---|---|---|"]
    for _, r in df.iterrows():
        lines.append(f"| {r['method']} | {r['acceptor_topk']:.3f} | {r['acceptor_prauc']:.3f} | {r['donor_topk']:.3f} | {r['donor_prauc']:.3f} |")
    return "\n".join(lines)

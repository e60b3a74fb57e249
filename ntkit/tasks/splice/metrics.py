"""SpliceAI's metrics (top-k accuracy, PR-AUC) and the evaluation table."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ntkit.tasks.segmentation import segmentation_metrics
from ntkit.tasks.splice.data import CONTEXT, SpliceWindows
from ntkit.tasks.splice.model import SpliceModel
from ntkit.tasks.splice.predict import predict_windows


def splice_metrics(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> dict[str, float]:
    """Per class (acceptor, donor): top-k accuracy and PR-AUC over every position of every window:
    the two splice-site rows of ``segmentation.segmentation_metrics`` (one copy of the metric code)."""
    y = np.concatenate(labels)
    s = np.concatenate(scores)
    keep = y != CONTEXT  # context bases are not scored
    y, s = y[keep], s[keep]
    sites = np.stack([y == 1, y == 2], axis=1).astype(np.int8)
    sc = np.nan_to_num(s[:, 1:3].astype(np.float64), neginf=-1e300)
    r = segmentation_metrics([sites], [sc], ["splice_acceptor", "splice_donor"], threshold=None)  # no MCC: not reported
    out = {}
    for name, row in zip(("acceptor", "donor"), r.itertuples()):
        out[f"{name}_topk"], out[f"{name}_prauc"], out[f"{name}_sites"] = row.topk, row.prauc, int(row.positives)
    return out


def evaluate_splice(model: SpliceModel | None, test: SpliceWindows, baselines: dict[str, object], *, runtime=None,
                    predictions: dict[str, Sequence[np.ndarray]] | None = None) -> pd.DataFrame:
    """One row per method on ``test``: ``model`` (a splice model of ntkit), ``predictions`` (name ->
    [len, 3] probabilities per window of other predictors, e.g. SpliceAI), then the baselines."""
    rows = []
    if model is not None:
        pred = predict_windows(model, test, runtime=runtime)
        rows.append({"method": f"ntkit ({model.head_kind} head, {model.method})", **splice_metrics(test.labels, pred)})
    for name, pred in (predictions or {}).items():
        rows.append({"method": name, **splice_metrics(test.labels, pred)})
    for name, b in baselines.items():
        rows.append({"method": name, **splice_metrics(test.labels, [b.site_scores(s) for s in test.sequences])})
    return pd.DataFrame(rows)


def results_table(df: pd.DataFrame) -> str:
    lines = ["| method | acceptor top-k | acceptor PR-AUC | donor top-k | donor PR-AUC |", "|---|---|---|---|---|"]
    for _, r in df.iterrows():
        lines.append(f"| {r['method']} | {r['acceptor_topk']:.3f} | {r['acceptor_prauc']:.3f} | {r['donor_topk']:.3f} | {r['donor_prauc']:.3f} |")
    return "\n".join(lines)

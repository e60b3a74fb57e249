"""Probing frozen embeddings with simple classifiers (scikit-learn), hyperparameters chosen on
inner cross-validation folds of the training part only."""

from __future__ import annotations

import numpy as np


def make_probe(kind: str = "logreg", task: str = "classification", inner_folds: int = 3, seed: int = 0):
    """A scikit-learn estimator: standardise, then logistic regression (C tuned) or a one-hidden-
    layer MLP (L2 strength tuned), each wrapped in ``GridSearchCV`` over ``inner_folds`` folds.
    Regression uses ridge / an MLP regressor."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cls = task == "classification"
    if kind == "logreg":
        est = LogisticRegression(max_iter=2000) if cls else Ridge()
        grid = {"logisticregression__C": [0.01, 0.1, 1.0, 10.0]} if cls else {"ridge__alpha": [0.1, 1.0, 10.0, 100.0]}
    elif kind == "mlp":
        est = (MLPClassifier if cls else MLPRegressor)(hidden_layer_sizes=(256,), max_iter=300, early_stopping=True, random_state=seed)
        grid = {f"{type(est).__name__.lower()}__alpha": [1e-4, 1e-2, 1.0]}
    else:
        raise ValueError(f"probe must be logreg or mlp, not {kind!r}")
    cv = StratifiedKFold(inner_folds, shuffle=True, random_state=seed) if cls else KFold(inner_folds, shuffle=True, random_state=seed)
    return GridSearchCV(make_pipeline(StandardScaler(), est), grid, cv=cv, scoring="matthews_corrcoef" if cls else "r2", n_jobs=1)


def fit_predict_probe(X_train, y_train, X_test, kind: str = "logreg", task: str = "classification", seed: int = 0) -> np.ndarray:
    """Predicted labels (classification) or values (regression) for ``X_test``."""
    y_train = np.asarray(y_train)
    inner = 3
    if task == "classification":
        inner = int(min(3, np.bincount(y_train.astype(int)).min(initial=0)[()] if len(y_train) else 0))
        if inner < 2:  # too few of some class for inner folds: fixed C
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X_train, y_train).predict(X_test)
    return make_probe(kind, task, inner, seed).fit(X_train, y_train).predict(X_test)


def cross_validate_probe(X: np.ndarray, y: np.ndarray, kind: str = "logreg", n_folds: int = 10, seed: int = 0) -> dict:
    """Stratified ``n_folds`` CV of a probe: per-fold MCC / macro F1, mean and 2 SD."""
    from sklearn.metrics import f1_score, matthews_corrcoef
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    k = int(min(n_folds, np.bincount(y).min()))
    if k < 2:
        raise ValueError(f"a class has {k} example(s): cannot cross-validate")
    mcc, f1 = [], []
    for f, (tr, te) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(X, y)):
        pred = fit_predict_probe(X[tr], y[tr], X[te], kind, seed=seed + f)
        mcc.append(matthews_corrcoef(y[te], pred))
        f1.append(f1_score(y[te], pred, average="macro"))
    return {"folds": k, "mcc": mcc, "f1": f1, "mcc_mean": float(np.mean(mcc)), "mcc_2sd": float(2 * np.std(mcc, ddof=1)),
            "f1_mean": float(np.mean(f1)), "f1_2sd": float(2 * np.std(f1, ddof=1))}

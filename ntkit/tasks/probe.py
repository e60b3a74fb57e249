"""Probing frozen embeddings with simple classifiers (scikit-learn), hyperparameters chosen on
inner cross-validation folds of the training part only."""

from __future__ import annotations

import numpy as np


def _estimator(kind: str, classification: bool, seed: int, early_stopping: bool = True):
    """The probe's scikit-learn estimator, at its default hyperparameters, and the grid its tuned
    hyperparameter is chosen from (``early_stopping``: the MLP's)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    if kind == "logreg":
        if classification:
            return LogisticRegression(max_iter=2000), {"logisticregression__C": [0.01, 0.1, 1.0, 10.0]}
        return Ridge(), {"ridge__alpha": [0.1, 1.0, 10.0, 100.0]}
    if kind == "mlp":
        est = (MLPClassifier if classification else MLPRegressor)(hidden_layer_sizes=(256,), max_iter=300,
                                                                  early_stopping=early_stopping, random_state=seed)
        return est, {f"{type(est).__name__.lower()}__alpha": [1e-4, 1e-2, 1.0]}
    raise ValueError(f"probe must be logreg or mlp, not {kind!r}")


def make_probe(kind: str = "logreg", task: str = "classification", inner_folds: int = 3, seed: int = 0,
               early_stopping: bool = True):
    """A scikit-learn estimator: standardise, then logistic regression (C tuned) or a one-hidden-
    layer MLP (L2 strength tuned; ``early_stopping`` on a held-out 10% of each fit), each wrapped
    in ``GridSearchCV`` over ``inner_folds`` folds. Regression uses ridge / an MLP regressor."""
    from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cls = task == "classification"
    est, grid = _estimator(kind, cls, seed, early_stopping)
    cv = StratifiedKFold(inner_folds, shuffle=True, random_state=seed) if cls else KFold(inner_folds, shuffle=True, random_state=seed)
    return GridSearchCV(make_pipeline(StandardScaler(), est), grid, cv=cv, scoring="matthews_corrcoef" if cls else "r2", n_jobs=1)


def fit_probe(X_train, y_train, kind: str = "logreg", task: str = "classification", seed: int = 0):
    """The fitted probe. Its hyperparameter is chosen on inner folds of the training part (3, or
    as many as the smallest class has examples); a class with a single example leaves no inner
    folds to choose on, and the probe then keeps the estimator's default (C = 1 / alpha 1e-4,
    without early stopping: too few examples to hold some out)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y_train = np.asarray(y_train)
    inner, stop_early = 3, True
    if task == "classification":
        counts = np.unique(y_train, return_counts=True)[1]  # classes present only (bincount would count absent ids as 0)
        inner = int(min(3, counts.min(initial=len(y_train))))
        stop_early = _can_stop_early(counts, inner)
        if inner < 2:
            return make_pipeline(StandardScaler(), _estimator(kind, True, seed, stop_early)[0]).fit(X_train, y_train)
    return make_probe(kind, task, inner, seed, stop_early).fit(X_train, y_train)


def _can_stop_early(counts: np.ndarray, inner: int) -> bool:
    """Whether every fit of an MLP classifier (class sizes ``counts``) can hold out its early-
    stopping set: scikit-learn holds out ceil(10%) of the fit, stratified, so that part needs at
    least one example per class and each class at least two in the fit. The smallest fit on
    ``inner`` folds is (inner - 1) / inner of the examples, rounded down; with fewer than 2 inner
    folds, all of them (a class of one: never)."""
    if not len(counts):
        return False
    keep = (inner - 1) / inner if inner >= 2 else 1.0
    n_fit = int(counts.sum() * keep)
    held = int(np.ceil(0.1 * n_fit))
    return held >= len(counts) and n_fit - held >= len(counts) and int(counts.min() * keep) >= 2


def fit_predict_probe(X_train, y_train, X_test, kind: str = "logreg", task: str = "classification", seed: int = 0) -> np.ndarray:
    """Predicted labels (classification) or values (regression) for ``X_test`` (``fit_probe``)."""
    return fit_probe(X_train, y_train, kind, task, seed).predict(X_test)


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

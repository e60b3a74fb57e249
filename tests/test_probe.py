"""The probes: hyperparameters really chosen on inner folds, the kind asked for really fitted."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPClassifier

from ntkit.tasks.probe import fit_predict_probe, fit_probe, make_probe


def _data(n=40, d=30, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, d)) + 0.6 * y[:, None] * (np.arange(d) < 3)
    return X, y


def test_logreg_probe_tunes_C_on_inner_folds():
    # the old guard took the smallest class count with min(initial=0), which is always 0: every
    # classification probe fell back to a fixed C = 1 (and "mlp" to logistic regression)
    X, y = _data()
    fitted = fit_probe(X, y, "logreg", seed=3)
    assert isinstance(fitted, GridSearchCV)
    assert fitted.best_params_["logisticregression__C"] in (0.01, 0.1, 1.0, 10.0)
    expected = make_probe("logreg", "classification", 3, 3).fit(X, y)
    assert np.array_equal(fit_predict_probe(X, y, X, "logreg", seed=3), expected.predict(X))


def test_mlp_probe_is_an_mlp():
    X, y = _data()
    fitted = fit_probe(X, y, "mlp", seed=0)
    assert isinstance(fitted.best_estimator_[-1], MLPClassifier)


@pytest.mark.parametrize("kind, cls", [("logreg", LogisticRegression), ("mlp", MLPClassifier)])
def test_a_class_with_one_example_keeps_the_default_hyperparameters(kind, cls):
    X, y = _data(n=12)
    y = np.zeros(12, int)
    y[0] = 1  # one positive: no inner folds can hold it on both sides
    fitted = fit_probe(X, y, kind, seed=0)
    assert not isinstance(fitted, GridSearchCV) and isinstance(fitted[-1], cls)
    assert fit_predict_probe(X, y, X[:3], kind).shape == (3,)


def test_inner_folds_follow_the_smallest_class_present():
    # labels 0 and 2 only: the absent id 1 must not count as a class of 0 examples
    X, y = _data(n=20)
    y = np.where(np.arange(20) < 4, 0, 2)
    fitted = fit_probe(X, y, "logreg", seed=0)
    assert isinstance(fitted, GridSearchCV) and fitted.cv.n_splits == 3
    y = np.where(np.arange(20) < 2, 0, 2)
    assert fit_probe(X, y, "logreg", seed=0).cv.n_splits == 2


def test_unknown_probe_kind():
    with pytest.raises(ValueError, match="logreg or mlp"):
        fit_probe(*_data(), "svm")


@pytest.mark.parametrize("n", [8, 12])
def test_mlp_probe_on_few_examples_fits_without_an_early_stopping_set(n):
    # scikit-learn's early stopping holds out 10% of each fit, stratified: with a dozen examples
    # that is one, fewer than the two classes, and the fit would raise
    X, y = _data(n=n)
    fitted = fit_probe(X, y, "mlp", seed=0)
    assert fitted.best_estimator_[-1].early_stopping is False
    assert fit_predict_probe(X, y, X[:3], "mlp").shape == (3,)


@pytest.mark.parametrize("n", [20, 80])
def test_mlp_probe_stops_early_when_there_are_examples_to_hold_out(n):
    X, y = _data(n=n)  # 20: inner fits of 13, two held out, one per class
    assert fit_probe(X, y, "mlp", seed=0).best_estimator_[-1].early_stopping is True

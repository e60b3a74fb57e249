import numpy as np
import pandas as pd
import pytest

import ntkit
import ntkit.tasks.benchmark as bm
from ntkit.core.sequence import reverse_complement
from ntkit.io.genome import write_fasta
from ntkit.runtime.engine import Runtime
from ntkit.tasks.benchmark import kmer_features, load_tasks, markdown_table, run_benchmark, summarise, write_report
from ntkit.tasks.probe import cross_validate_probe


def test_load_tsv_tasks_and_hf_folder(tmp_path, shared_data):
    tasks = {t.name: t for t in load_tasks(shared_data / "tasks/nt_downstream_revised_subsample.tsv")}
    assert len(tasks) == 18 and len(tasks["splice_sites_all"].sequences) == 503 and tasks["enhancers_types"].n_classes == 3
    enh = load_tasks(shared_data / "tasks/human_enhancers_cohn.tsv")
    assert [t.name for t in enh] == ["human_enhancers_cohn"] and len(enh[0].sequences) == 6948
    d = tmp_path / "nt" / "promoter_tata"
    d.mkdir(parents=True)
    write_fasta(d / "train.fna", [("s1|1", "ACGT" * 10), ("s2|0", "TTTT" * 10)])
    pd.DataFrame({"sequence": ["ACGTAA", "GGGCCC"], "label": [0, 1], "name": ["a", "b"]}).to_parquet(d / "test.parquet")
    t = load_tasks(tmp_path / "nt")[0]
    assert t.name == "promoter_tata" and list(t.labels) == [1, 0] and list(t.test_labels) == [0, 1]


def test_kmer_features_normalised():
    X = kmer_features(["ACGTACGT", "AAAAAAA"])
    assert X.shape == (2, 4096) and np.allclose(X.sum(1), 1)
    assert X[1].max() == 1.0  # AAAAAA twice of 2


def test_kmer_features_both_strands_are_strand_symmetric():
    s = "ACGTTGCAAAGGCTTACGGATNNACGTAC"
    X = kmer_features([s, reverse_complement(s)], both_strands=True)
    assert np.array_equal(X[0], X[1]) and np.allclose(X.sum(1), 1)
    assert not np.array_equal(*kmer_features([s, reverse_complement(s)]))  # one strand: they differ


def test_benchmark_reverse_complement_reads_both_strands(tmp_path):
    """With ``reverse_complement`` a task and the same task on the other strand give the same
    results: both strands' 6-mers are counted (equal integer counts) and the two strands'
    embeddings averaged. A token budget of one 16-token row per forward makes every row its own
    forward, so a strand's vector does not depend on which rows shared its batch (kernels may round
    a row differently by its place in a batch); the two vectors are the same in both tasks and their
    sum does not depend on the order, so the features, and the probes' predictions, are equal."""
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 90, p=[0.45, 0.05, 0.05, 0.45] if i % 2 else [0.25] * 4)) for i in range(24)]
    for name, ss in (("fwd", seqs), ("rev", [reverse_complement(x) for x in seqs])):
        pd.DataFrame({"sequence": ss, "label": [i % 2 for i in range(24)]}).to_csv(tmp_path / f"{name}.tsv", sep="\t", index=False)
    model = ntkit.build(ntkit.get_preset("nt-v2-tiny"), seed=0)
    one_row = Runtime(batch_tokens=16)  # 90 bp: 15 6-mers + <cls>
    both, other = (run_benchmark(load_tasks(tmp_path / f"{name}.tsv"), model, methods=["kmer", "probe"], n_folds=3, reverse_complement=True,
                                 runtime=one_row) for name in ("fwd", "rev"))
    assert (both.status == "ok").all() and len(both) == 6
    np.testing.assert_allclose(both["mcc"], other["mcc"], atol=1e-12)
    assert both[both.method == "kmer"]["mcc"].mean() > 0.5  # AT-rich vs uniform: the 6-mers separate them


def test_benchmark_feature_cache_spans_seeds(tmp_path, monkeypatch):
    """A cache passed to several fold seeds: the model's embeddings and the 6-mer counts are computed
    once, the random twin's per seed (each seed draws its own twin), and the results equal runs
    without the cache (one row per forward, as above, so a vector is computed the same each time)."""
    rng = np.random.default_rng(1)
    pd.DataFrame({"sequence": ["".join(rng.choice(list("ACGT"), 60)) for _ in range(18)], "label": [i % 2 for i in range(18)]}).to_csv(
        tmp_path / "t.tsv", sep="\t", index=False)
    tasks = load_tasks(tmp_path / "t.tsv")
    model = ntkit.build(ntkit.get_preset("nt-v2-tiny"), seed=0)
    embedded, real_embed = [], bm.embed
    monkeypatch.setattr(bm, "embed", lambda m, *a, **k: embedded.append(m) or real_embed(m, *a, **k))
    methods, one_row, cache = ["kmer", "probe", "random-probe"], Runtime(batch_tokens=16), {}
    cached = [run_benchmark(tasks, model, methods=methods, n_folds=3, seed=s, runtime=one_row, features=cache) for s in (0, 1)]
    assert len(embedded) == 3 and sum(m is model for m in embedded) == 1  # the model once, a random twin per seed
    assert sorted(k[2] for k in cache) == ["kmer", "pretrained"]
    for s, got in zip((0, 1), cached):
        np.testing.assert_allclose(got["mcc"], run_benchmark(tasks, model, methods=methods, n_folds=3, seed=s, runtime=one_row)["mcc"], atol=1e-12)


def test_benchmark_bins_probe_segment_means(tmp_path, monkeypatch):
    """``bins``: the probes read ``embed(..., bins=)`` (3 x hidden values per sequence), cached apart
    from one-mean features; a task whose classes differ only in where a motif lies (5' or 3' end;
    the same non-overlapping 6-mer tokens) is separated by the thirds' means on every fold, not by
    one mean (far from the bound on any CPU)."""
    rng = np.random.default_rng(3)
    motif = "GGGGGGGGGGGG"
    seqs, labels = [], []
    for i in range(24):
        bg = "".join(rng.choice(list("AT"), 48))
        seqs.append(motif + bg if i % 2 else bg + motif)  # class 1: motif at the 5' end; class 0: at the 3' end
        labels.append(i % 2)
    pd.DataFrame({"sequence": seqs, "label": labels}).to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    tasks = load_tasks(tmp_path / "t.tsv")
    model = ntkit.build(ntkit.get_preset("nt-v2-tiny"), seed=0)
    widths, real_embed = [], bm.embed
    monkeypatch.setattr(bm, "embed", lambda m, *a, **k: (lambda out: widths.append(out[-1].shape[1]) or out)(real_embed(m, *a, **k)))
    cache = {}
    one = run_benchmark(tasks, model, methods=["kmer", "probe"], n_folds=3, features=cache)
    three = run_benchmark(tasks, model, methods=["probe"], n_folds=3, bins=3, features=cache)
    assert widths == [64, 192] and sorted(k[-2] for k in cache if k[2] == "pretrained") == [1, 3]  # (..., bins, phases)
    assert (three["mcc"] == 1.0).all() and one[one.method == "probe"]["mcc"].mean() < 0.6  # one mean: 0.25 here
    with pytest.raises(ValueError, match="bins=0"):  # refused before the 6-mer counts of the first task
        run_benchmark(tasks, model, methods=["kmer", "probe"], n_folds=3, bins=0)


def test_benchmark_phases_probe_frame_averaged_embeddings(tmp_path, monkeypatch):
    """``phases``: the probes read ``embed(..., phases=)`` (each strand's six 6-mer frames
    averaged), cached apart from the one-frame features; the 6-mer counts do not change; a phases
    value the model cannot read is refused before any compute."""
    rng = np.random.default_rng(4)
    seqs = ["".join(rng.choice(list("ACGT"), 60)) for _ in range(12)]
    pd.DataFrame({"sequence": seqs, "label": [i % 2 for i in range(12)]}).to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    tasks = load_tasks(tmp_path / "t.tsv")
    model = ntkit.build(ntkit.get_preset("nt-v2-tiny"), seed=0)
    calls, real_embed = [], bm.embed
    monkeypatch.setattr(bm, "embed", lambda m, *a, **k: calls.append(k.get("phases")) or real_embed(m, *a, **k))
    cache = {}
    run_benchmark(tasks, model, methods=["kmer", "probe"], n_folds=3, reverse_complement=True, features=cache)
    run_benchmark(tasks, model, methods=["kmer", "probe"], n_folds=3, reverse_complement=True, phases=6, features=cache)
    assert calls == [1, 6] and sorted(k[-1] for k in cache if k[2] == "pretrained") == [1, 6]
    assert len([k for k in cache if k[2] == "kmer"]) == 1  # one set of 6-mer counts for both reads
    six = next(v for k, v in cache.items() if k[2] == "pretrained" and k[-1] == 6)
    np.testing.assert_array_equal(six, real_embed(model, seqs, reverse_complement=True, phases=6)[-1])
    for bad in (7, 0):
        with pytest.raises(ValueError, match=f"phases={bad}"):
            run_benchmark(tasks, model, methods=["kmer", "probe"], n_folds=3, phases=bad)
    assert calls == [1, 6]


def test_probe_cv_equals_sklearn_metric():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = (X[:, 0] > 0).astype(int)
    r = cross_validate_probe(X, y, n_folds=5)
    assert r["folds"] == 5 and r["mcc_mean"] > 0.7


def test_benchmark_end_to_end_on_real_slices(shared_data, tmp_path):
    df = pd.read_csv(shared_data / "tasks/nt_downstream_revised_subsample.tsv", sep="\t")
    slice_ = df[df.task.isin(["promoter_tata", "enhancers"])]
    slice_.to_csv(tmp_path / "s.tsv", sep="\t", index=False)
    tasks = load_tasks(tmp_path / "s.tsv")
    model = ntkit.build(ntkit.get_preset("nt-v2-tiny"), seed=0)
    res = run_benchmark(tasks, model, methods=["kmer", "probe", "random-probe", "ia3"], n_folds=3, finetune_epochs=1)
    s = summarise(res)
    assert set(s["task"]) == {"promoter_tata", "enhancers"} and set(s["method"]) == {"kmer", "probe", "random-probe", "ia3"}
    ok = res[res.status == "ok"]
    assert (ok.groupby(["task", "method"]).size() == ok.groupby(["task", "method"])["folds"].first()).all()
    assert set(ok[ok.task == "enhancers"]["folds"]) == {3} and set(ok[ok.task == "promoter_tata"]["folds"]) == {2}  # 2 of a class
    assert s["mcc_mean"].between(-1, 1).all()
    paths = write_report(res, tmp_path / "out")
    table = paths["table"].read_text()
    assert paths["plot"].stat().st_size > 1000 and "mean ± 2 SD over the cross-validation folds" in table
    assert "| enhancers ⚠ | 72 | 3 |" in table and "| promoter_tata ⚠ | 9 | 2 |" in table  # n per task, flagged: few rows per fold
    assert "too few rows for a stable MCC: enhancers (24 sequences per evaluation fold)" in table
    # metric values are scikit-learn's on the saved predictions' folds
    assert "mean" in markdown_table(s)


def test_tiny_class_is_reported_not_crashed(tmp_path):
    pd.DataFrame({"sequence": ["ACGTACGTAC"] * 6, "label": [0, 0, 0, 0, 0, 1]}).to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    res = run_benchmark(load_tasks(tmp_path / "t.tsv"), None, methods=["kmer"])
    assert res.iloc[0]["status"].startswith("skipped")

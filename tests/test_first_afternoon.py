"""What a new user meets on a first afternoon: presets are refused as models unless asked for,
multi-task tables are never pooled, finished jobs are recognised, warnings are one line, fine-tuned
predictions are saved, outputs keep their classes and negative layer keys work."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import ntkit
from ntkit.models.checkpoint import save_checkpoint
from ntkit.cli import main
from ntkit.io.genome import write_fasta

RNG = np.random.default_rng(5)


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("afternoon")
    save_checkpoint(ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=41), seed=0), d / "model")
    seqs = ["".join(RNG.choice(list("ACGT"), 60)) for _ in range(60)]
    write_fasta(d / "seqs.fa", [(f"s{i}", s) for i, s in enumerate(seqs[:8])])
    pd.DataFrame({"sequence": seqs, "label": [i % 2 for i in range(60)], "task": ["a"] * 30 + ["b"] * 30}).to_csv(
        d / "two_tasks.tsv", sep="\t", index=False)
    return d


def one_error_line(capsys) -> str:
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("ntkit ")]
    assert len(err) == 1, err
    return err[0]


def test_a_preset_is_refused_as_a_model_unless_random_init(d, tmp_path, capsys):
    assert main(["embed", str(d / "seqs.fa"), "--model", "nt-v2-50m", "--out", str(tmp_path / "e.parquet")]) == 2
    err = one_error_line(capsys)
    assert "nt-v2-50m is a preset" in err and "InstaDeepAI/nucleotide-transformer-v2-50m-multi-species" in err
    assert "--random-init" in err and not (tmp_path / "e.parquet").exists()
    assert main(["embed", str(d / "seqs.fa"), "--model", "nt-v2-tiny", "--out", str(tmp_path / "e.parquet"), "--random-init",
                 "--no-progress"]) == 0
    assert len(pd.read_parquet(tmp_path / "e.parquet")) == 8
    capsys.readouterr()
    assert main(["info", "nt-v2-500m"]) == 0  # shapes only, no 2 GB of random weights
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] > 400e6 and "InstaDeepAI/nucleotide-transformer-v2-500m-multi-species" in info["weights"]


def test_download_offline_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "nt-v2-50m", "--cache-dir", str(tmp_path)]) == 2
    err = one_error_line(capsys)
    assert "InstaDeepAI/nucleotide-transformer-v2-50m-multi-species" in err
    assert main(["download", "nt-v2-tiny"]) == 2 and "without published weights" in one_error_line(capsys)


def test_multi_task_tables_are_never_pooled(d, tmp_path, capsys):
    assert main(["finetune", str(d / "two_tasks.tsv"), "--model", str(d / "model"), "--out", str(tmp_path / "ad")]) == 2
    assert "holds 2 tasks in its 'task' column (a, b): choose one with --task-name" in one_error_line(capsys)
    assert main(["probe", str(d / "two_tasks.tsv"), "--model", str(d / "model"), "--folds", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| a | 30 | -1 | 3 |" in out and "| b | 30 | -1 | 3 |" in out  # one probe per task, n shown
    assert main(["probe", str(d / "two_tasks.tsv"), "--model", str(d / "model"), "--task-name", "b", "--folds", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| b | 30 |" in out and "| a |" not in out


def test_finetune_test_predictions_and_one_class_warning(d, tmp_path, capsys):
    pd.DataFrame({"sequence": ["ACGTTGCA" * 8] * 30, "label": [0, 1] * 15, "task": "a"}).to_csv(tmp_path / "same.tsv", sep="\t", index=False)
    args = ["finetune", str(d / "two_tasks.tsv"), "--task-name", "a", "--model", str(d / "model"), "--out", str(tmp_path / "ad"),
            "--test", str(tmp_path / "same.tsv"), "--epochs", "1", "--method", "head", "--no-progress"]  # one sequence: one class
    with pytest.warns(UserWarning, match="predicts one class .* for every test sequence"):
        assert main(args) == 0
    pred = pd.read_csv(tmp_path / "ad" / "test_predictions.tsv", sep="\t")
    assert list(pred.columns) == ["label", "predicted", "prob_0", "prob_1"] and len(pred) == 30
    assert json.loads((tmp_path / "ad" / "finetune_config.json").read_text())["finetune"]["classes"] == [0, 1]


def test_a_finished_job_is_recognised_not_recomputed(d, tmp_path, capsys):
    args = ["embed", str(d / "seqs.fa"), "--model", str(d / "model"), "--out", str(tmp_path / "e.parquet"), "--no-progress"]
    assert main(args) == 0
    first = (tmp_path / "e.parquet").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args + ["--shard", "1/2"]) == 0  # a shard of the finished job: nothing to do, no stale parts
    out = capsys.readouterr().out
    assert out.startswith("already done: ") and "--restart" in out
    assert (tmp_path / "e.parquet").stat().st_mtime_ns == first and not (tmp_path / "e.parquet.parts").exists()
    assert main(args + ["--layers", "1"]) == 0  # other options: a new job, the output rewritten
    assert "wrote" in capsys.readouterr().out and (tmp_path / "e.parquet").stat().st_mtime_ns != first


def test_job_mismatch_names_the_option_and_both_values(d, tmp_path, capsys):
    from ntkit.runtime import jobs

    store = jobs.PartStore(tmp_path / "x.parquet", {"job": "embed", "options": {"layers": [-1], "pooling": "mean"}})
    store.part(0).write_bytes(b"")  # an unfinished run's leftovers
    with pytest.raises(ValueError, match=r"options.layers: \[-1\] -> \[1\]; options.pooling: \"mean\" -> \"cls\""):
        jobs.PartStore(tmp_path / "x.parquet", {"job": "embed", "options": {"layers": [1], "pooling": "cls"}})


def test_warnings_are_one_line_without_source(d, tmp_path):
    import gzip

    (tmp_path / "v.vcf.gz").write_bytes(gzip.compress(b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"))
    write_fasta(tmp_path / "ref.fa.gz", [("20", "ACGT" * 100)])
    (tmp_path / "ref.fa.gz").write_bytes(gzip.compress(b">20\n" + b"ACGT" * 100 + b"\n"))  # plain gzip: a warning
    r = subprocess.run([sys.executable, "-m", "ntkit.cli", "score-variants", "--vcf", str(tmp_path / "v.vcf.gz"), "--fasta",
                        str(tmp_path / "ref.fa.gz"), "--model", str(d / "model"), "--out", str(tmp_path / "s.tsv"), "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    warn = [l for l in r.stderr.splitlines() if l.strip()]
    assert warn and all(l.startswith("ntkit: warning: ") for l in warn), warn  # no "file.py:116: UserWarning" nor source lines
    assert any("plain gzip, not bgzip" in l for l in warn)
    quiet = subprocess.run([sys.executable, "-m", "ntkit.cli", "--quiet", "score-variants", "--vcf", str(tmp_path / "v.vcf.gz"),
                            "--fasta", str(tmp_path / "ref.fa.gz"), "--model", str(d / "model"), "--out", str(tmp_path / "q.tsv")],
                           capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr.strip() == ""


def test_negative_layer_keys():
    model = ntkit.build("nt-v2-tiny", seed=0)
    ids, mask = model.tokenizer.batch_encode(["ACGTACGTAAAC"]).to_torch()
    with torch.no_grad():
        out = model(ids, mask, repr_layers=[-1, 0], need_attentions=[-1])
    assert out.hidden_states[-1] is out.hidden_states[2] and -1 in out.hidden_states and 1 not in out.hidden_states
    assert out.attentions[-1] is out.attentions[2]
    with pytest.raises(KeyError, match="layer 1 was not requested"):
        out.hidden_states[1]


def test_api_finetune_stores_the_classes_of_its_labels(tmp_path):
    from ntkit.tasks.finetune import FinetuneConfig, FinetunedModel, finetune

    base = ntkit.build("nt-v2-tiny", seed=0)
    seqs = ["ACGT" * 10, "GGCC" * 10] * 6
    ft = finetune(base, seqs, ["enhancer", "other"] * 6, FinetuneConfig(method="head", epochs=1))
    assert ft.cfg.classes == ["enhancer", "other"] and ft.cfg.n_classes == 2
    ft.save_adapter(tmp_path / "ad")
    assert FinetunedModel.load_adapter(base, tmp_path / "ad").cfg.classes == ["enhancer", "other"]

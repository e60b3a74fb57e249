import csv
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import ntkit
from ntkit.io.genome import write_fasta
from ntkit.tasks.pretrain import PretrainConfig, TrainingDiverged, latest_checkpoint, load_trainer_state, lr_at, mask_window, pretrain
from ntkit.models.nt.tokenizer import Tokenizer


def _long_window(tok: Tokenizer, seed: int) -> np.ndarray:
    """200,000 random standard tokens with a <cls> every 97 and 50 <pad> at the end."""
    ids = np.random.default_rng(seed).choice(tok.standard_ids, size=200_000)
    ids[::97] = tok.cls_id
    ids[-50:] = tok.pad_id
    return ids


def test_mask_window_proportions_and_determinism():
    tok = Tokenizer("v2")
    ids = _long_window(tok, 0)
    out, labels = mask_window(ids, tok, seed=5, index=3)
    sel = labels >= 0
    assert not sel[np.isin(ids, tok.special_ids)].any()
    assert np.array_equal(labels[sel], ids[sel])
    assert abs(sel.mean() - 0.15) < 0.003
    masked = out[sel] == tok.mask_id
    kept = out[sel] == ids[sel]
    rand = ~masked & ~kept
    assert abs(masked.mean() - 0.8) < 0.01
    assert abs((rand.mean() + kept.mean()) - 0.2) < 0.01 and abs(kept.mean() - 0.1) < 0.01  # a random draw may equal the original
    assert np.isin(out[sel][rand], tok.standard_ids).all()
    assert np.array_equal(out[~sel], ids[~sel])
    out2, labels2 = mask_window(ids, tok, seed=5, index=3)
    assert np.array_equal(out, out2) and np.array_equal(labels, labels2)
    assert not np.array_equal(mask_window(ids, tok, seed=5, index=4)[1], labels)
    ev, ev_labels = mask_window(ids, tok, seed=5, index=3, eval_mode=True)
    assert np.array_equal(ev_labels, labels) and (ev[sel] == tok.mask_id).all()


def test_mask_window_spans():
    """Span masking: runs of ``span`` tokens from starts drawn at mask_prob / span; specials stay out."""
    tok = Tokenizer("v2")
    ids = _long_window(tok, 1)
    one = mask_window(ids, tok, seed=5, index=3)
    assert all(np.array_equal(a, b) for a, b in zip(one, mask_window(ids, tok, seed=5, index=3, span=1)))  # the default stream
    out, labels = mask_window(ids, tok, seed=5, index=3, span=6)
    sel = labels >= 0
    assert not sel[np.isin(ids, tok.special_ids)].any() and np.array_equal(labels[sel], ids[sel])
    # expected fraction: 1 - (1 - 0.15/6)**6 = 0.1412 of the tokens (overlaps), less the specials' share
    assert abs(sel.mean() - 0.1412) < 0.004
    edges = np.flatnonzero(np.diff(np.r_[0, sel.astype(np.int8), 0]))
    runs = edges[1::2] - edges[::2]
    whole = [r for s0, r in zip(edges[::2], runs) if not np.isin(ids[max(0, s0 - 6):s0 + r + 6], tok.special_ids).any()]
    assert min(whole) >= 6 and np.median(whole) == 6  # runs away from specials: 6 tokens, longer where two overlap
    assert abs((out[sel] == tok.mask_id).mean() - 0.8) < 0.01  # 80/10/10 per token
    assert np.array_equal(out[~sel], ids[~sel])
    with pytest.raises(ValueError, match="mask_span"):
        PretrainConfig(mask_span=0)


def test_lr_schedule_nt():
    cfg = PretrainConfig(lr_init=5e-5, lr_peak=1e-4, warmup_steps=16_000)
    assert lr_at(0, cfg) == 5e-5
    assert lr_at(8_000, cfg) == pytest.approx(7.5e-5)
    assert lr_at(16_000, cfg) == pytest.approx(1e-4)
    assert lr_at(64_000, cfg) == pytest.approx(5e-5)  # 1e-4 * sqrt(16k / 64k)


def test_yaml_recipes_parse(monkeypatch):
    from ntkit.recipes import names

    import dataclasses

    from ntkit.models import ntv3

    assert names() == ["1000g", "human-ref", "multispecies", "ntv3-small-cpu", "ntv3-tiny-cpu", "tiny-cpu"]
    for path in names():  # shipped recipes, by name (package data: they work from an installed wheel too)
        cfg = PretrainConfig.from_yaml(path)
        assert cfg.sources and all(os.path.isabs(s.fasta) for s in cfg.sources), path
        preset = ntv3.PRESETS[cfg.model] if cfg.model in ntv3.PRESETS else ntkit.get_preset(cfg.model)
        context = dataclasses.replace(preset, **cfg.model_overrides).max_tokens
        assert max([cfg.window_tokens] + [w for _, w in cfg.length_schedule]) <= context, path
    monkeypatch.setenv("NTKIT_DATA", "/data/nt")
    assert PretrainConfig.from_yaml("tiny-cpu").sources[0].fasta == "/data/nt/genomes/GRCh37_chr20.fa.gz"
    with pytest.raises(FileNotFoundError, match="recipe not found: tiny-gpu"):
        PretrainConfig.from_yaml("tiny-gpu")
    with pytest.raises(ValueError, match="unknown"):
        PretrainConfig.from_dict({"learning_rate": 1})


# -- end-to-end runs on a small synthetic genome -------------------------------------------------------


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    d = tmp_path_factory.mktemp("pretrain")
    rng = np.random.default_rng(1)
    motif = "".join(rng.choice(list("ACGT"), 300))
    chunks = ["".join(rng.choice(list("ACGT"), 700)) + motif for _ in range(60)]  # repeats to learn
    write_fasta(d / "genome.fa", [("chrS", "".join(chunks)), ("chrV", "".join(rng.choice(list("ACGT"), 20_000)))])
    cfg = {
        "model": "nt-v2-tiny", "model_overrides": {"max_tokens": 64},
        "sources": [{"fasta": "genome.fa", "contigs": ["chrS"]}], "valid_regions": ["chrV"],
        "window_tokens": 64, "batch_size": 2, "tokens_per_step": 512, "max_steps": 6,
        "lr_init": 1e-4, "lr_peak": 2e-3, "warmup_steps": 2, "checkpoint_every": 3, "eval_every": 3,
        "eval_windows": 8, "log_every": 1, "precision": "fp32", "progress": False, "seed": 3,
    }
    (d / "recipe.yaml").write_text(yaml.safe_dump(cfg))
    return d


def run_cli(recipe, out, *extra, env=None, nproc=1):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)] if nproc > 1 else [sys.executable]
    cmd = launcher + ["-m", "ntkit.cli", "pretrain", "--config", str(recipe / "recipe.yaml"), "--out-dir", str(out), *extra]
    return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, capture_output=True, text=True, timeout=600)


def read_log(out):
    with open(out / "log.csv") as fh:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(fh)]


def weights(path):
    return {k: v for k, v in ntkit.load(path).state_dict().items()}


@pytest.fixture(scope="module")
def reference_run(recipe):
    out = recipe / "uninterrupted"
    r = run_cli(recipe, out)
    assert r.returncode == 0, r.stderr
    return out


def test_pretrain_runs_logs_and_saves_hf_model(reference_run):
    log = read_log(reference_run)
    assert [int(r["step"]) for r in log] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(r["loss"]) for r in log)
    assert log[-1]["loss"] < log[0]["loss"]
    assert "valid_perplexity" in log[2] and "valid_perplexity" in log[5]
    model = ntkit.load(reference_run / "model")
    assert model.config.max_tokens == 64 and model.config.name == "nt-v2-tiny"
    assert latest_checkpoint(reference_run).name == "step_0000006"
    state = load_trainer_state(latest_checkpoint(reference_run))
    assert state["step"] == 6 and state["extra"]["windows_seen"] == 6 * 8
    assert sorted(p.name for p in latest_checkpoint(reference_run).glob("trainer_state*")) == ["trainer_state.json", "trainer_state.safetensors"]


def test_kill_and_resume_is_bit_exact(recipe, reference_run):
    out = recipe / "killed"
    # a real SIGKILL right after step 4 (last checkpoint: step 3), through the public on_step callback
    kill = ("import os, signal, sys\nfrom ntkit.tasks.pretrain import PretrainConfig, pretrain\n"
            "cfg = PretrainConfig.from_yaml(sys.argv[1], out_dir=sys.argv[2])\n"
            "pretrain(cfg, on_step=lambda s: s == 4 and os.kill(os.getpid(), signal.SIGKILL))\n")
    r = subprocess.run([sys.executable, "-c", kill, str(recipe / "recipe.yaml"), str(out)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == -9, r.stderr
    assert latest_checkpoint(out).name == "step_0000003" and not (out / "model").exists()
    r = run_cli(recipe, out)
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stdout
    a, b = weights(reference_run / "model"), weights(out / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ref_log = {int(r["step"]): r["loss"] for r in read_log(reference_run)}
    for row in read_log(out):  # steps 4 is logged twice (before the kill and after resuming): same loss
        assert row["loss"] == ref_log[int(row["step"])]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(recipe, reference_run, strategy):
    out = recipe / f"torchrun-{strategy}"
    r = run_cli(recipe, out, "--strategy", strategy, nproc=2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world=2" in r.stdout
    one = read_log(reference_run)
    two = read_log(out)
    assert [int(r["step"]) for r in two] == [int(r["step"]) for r in one]
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["valid_loss"] == pytest.approx(a["valid_loss"], rel=1e-4) if "valid_loss" in a else True
    a, b = weights(reference_run / "model"), weights(out / "model")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4)


def test_nan_loss_stops_with_checkpoint_intact(recipe, monkeypatch):
    import ntkit.tasks.pretrain as pt

    real = pt.F.cross_entropy
    calls = {"n": 0}

    def poisoned(*a, **kw):
        calls["n"] += 1
        loss = real(*a, **kw)
        return loss * float("nan") if calls["n"] > 13 else loss  # step 4 (4 micro-batches per step + the checkpoint probe of step 3)

    cfg = PretrainConfig.from_yaml(recipe / "recipe.yaml", out_dir=str(recipe / "nan"), eval_every=100)
    monkeypatch.setattr(pt.F, "cross_entropy", poisoned)
    with pytest.raises(TrainingDiverged, match="step 4"):
        pretrain(cfg)
    assert latest_checkpoint(recipe / "nan").name == "step_0000003"
    ntkit.load(latest_checkpoint(recipe / "nan"))  # loads: finite weights


def test_divergence_keeps_the_last_healthy_checkpoint(recipe):
    """lr 1 (no clipping): the weights explode after an update whose loss looked fine; the
    checkpoint probe measures the weights about to be saved and refuses them."""
    cfg = PretrainConfig.from_yaml(recipe / "recipe.yaml", out_dir=str(recipe / "diverge"), lr_peak=1.0, lr_init=1.0,
                                   grad_clip=0.0, checkpoint_every=1, eval_every=100)
    with pytest.raises(TrainingDiverged, match="checkpoint not written"):
        pretrain(cfg)
    last = latest_checkpoint(recipe / "diverge")
    if last is not None:  # whatever was written passed the check
        w = weights(last)
        assert max(float(v.abs().max()) for v in w.values()) < 20


def test_resume_with_another_recipe_is_refused(recipe, reference_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference_run, out)
    cfg = PretrainConfig.from_yaml(recipe / "recipe.yaml", out_dir=str(out), lr_peak=5e-3, seed=4, max_steps=8)
    with pytest.raises(ValueError, match=r"another recipe \(lr_peak: 0.002 -> 0.005; seed: 3 -> 4\)"):
        pretrain(cfg)
    cfg = PretrainConfig.from_yaml(recipe / "recipe.yaml", out_dir=str(out), mask_span=6, max_steps=8)
    with pytest.raises(ValueError, match=r"another recipe \(mask_span: 1 -> 6\)"):
        pretrain(cfg)


def test_crafted_pickle_in_a_checkpoint_never_runs(recipe, reference_run, tmp_path):
    import pickle
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference_run, out)
    ck = latest_checkpoint(out)
    for f in ck.glob("trainer_state*"):
        f.unlink()
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (ck / "trainer_state.pt").write_bytes(pickle.dumps({"step": Payload()}))
    cfg = PretrainConfig.from_yaml(recipe / "recipe.yaml", out_dir=str(out), max_steps=8)
    with pytest.raises(ValueError, match=r"trainer_state.pt: not a trainer state that can be read safely .* delete .* to resume"):
        pretrain(cfg)
    assert not marker.exists()


def test_full_disk_during_a_checkpoint_is_one_line_and_its_leftovers_go(recipe, tmp_path, monkeypatch, capsys):
    """A checkpoint that cannot be written (a full disk: safetensors raises its own error type):
    exit 2 with one line, no half-written step folder; a stale one from a killed run is removed
    at the next start."""
    import ntkit.tasks.pretrain as pt
    from ntkit.cli import main

    class SafetensorError(Exception):
        pass

    def full(*a, **kw):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })")

    out = tmp_path / "run"
    monkeypatch.setattr(pt, "save_trainer_state", full)
    rc = main(["pretrain", "--config", str(recipe / "recipe.yaml"), "--out-dir", str(out), "--max-steps", "4"])
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("ntkit ")]
    assert rc == 2 and len(err) == 1, err
    assert "writing checkpoint step 3" in err[0] and "No space left on device" in err[0] and "free space" in err[0]
    assert not list((out / "checkpoints").glob(".step_*")) and latest_checkpoint(out) is None
    (out / "checkpoints" / ".step_0000009.tmp").mkdir(parents=True)  # as a kill -9 mid-write leaves it
    monkeypatch.undo()
    assert main(["pretrain", "--config", str(recipe / "recipe.yaml"), "--out-dir", str(out), "--max-steps", "3"]) == 0
    assert not (out / "checkpoints" / ".step_0000009.tmp").exists() and latest_checkpoint(out).name == "step_0000003"


def test_divergence_goes_to_stderr_without_a_none_checkpoint(recipe, tmp_path, capsys):
    from ntkit.cli import main

    d = yaml.safe_load((recipe / "recipe.yaml").read_text())
    d.update(lr_peak=1.0, lr_init=1.0, grad_clip=0.0, checkpoint_every=1, eval_every=100,
             sources=[{"fasta": str(recipe / "genome.fa"), "contigs": ["chrS"]}])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(d))
    rc = main(["pretrain", "--config", str(tmp_path / "r.yaml"), "--out-dir", str(tmp_path / "run")])
    cap = capsys.readouterr()
    assert rc == 3 and "stopped" not in cap.out
    (line,) = [l for l in cap.err.splitlines() if l.startswith("ntkit pretrain: stopped:")]
    assert "None" not in line and ("No healthy checkpoint was written yet" in line or "The last healthy checkpoint is" in line)


@pytest.mark.parametrize("bad,match", [({"strategy": "dp"}, "strategy: 'dp' is not one of 'ddp', 'fsdp'"),
                                       ({"precision": "fp16"}, "precision: 'fp16' is not one of"),
                                       ({"batch_size": "8"}, "batch_size: '8' is not an integer"),
                                       ({"lr_peak": 100}, "learning rates above 1 diverge"),
                                       ({"lr_peak": "1e6"}, r"lr_peak=1000000.0: Adam learning rates above 1 diverge"),  # YAML 1.1's string
                                       ({"methd": "x"}, "unknown pretraining options")])
def test_recipe_values_are_validated(recipe, bad, match):
    d = yaml.safe_load((recipe / "recipe.yaml").read_text())
    with pytest.raises(ValueError, match=match):
        PretrainConfig.from_dict({**d, **bad, "sources": [{"fasta": "x.fa"}]})


def test_weight_decay_on_matrices_only():
    from ntkit.tasks.pretrain import param_groups

    model = ntkit.build("nt-v2-tiny")
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.dim() == 2 for p in decay["params"]) and any("embed_tokens" in names[id(p)] for p in decay["params"])
    assert {names[id(p)].rsplit(".", 1)[-1] for p in no_decay["params"]} <= {"weight", "bias"}
    assert all(p.dim() == 1 for p in no_decay["params"]) and len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))

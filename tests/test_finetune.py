import numpy as np
import pytest
import torch

import ntkit
from ntkit.core.sequence import reverse_complement
from ntkit.models import adapters
from ntkit.runtime.engine import Runtime
from ntkit.tasks.finetune import FinetuneConfig, FinetunedModel, count_ia3_parameters, finetune


def test_ia3_parameter_count_nt_v2_50m_on_meta():
    cfg = ntkit.get_preset("nt-v2-50m")
    with torch.device("meta"):
        base = ntkit.NTModel(cfg)
        m = FinetunedModel(base, FinetuneConfig(method="ia3", n_classes=2))
    n_ia3 = adapters.adapter_parameters(base)
    assert n_ia3 == count_ia3_parameters(cfg) == 12 * (512 + 512 + 2048) == 36_864
    share = n_ia3 / 55_904_972
    assert 0.0005 < share < 0.0015  # ~0.1% of the HF-layout parameters
    assert m.trainable_parameters() == n_ia3 + 512 * 2 + 2


def _ia3_by_hand(base, l_k, l_v, l_ff, x):
    """IA3 written out: k and v projection outputs and the fc2 input rescaled, with hooks."""
    hs = []
    for i, blk in enumerate(base.layers):
        hs.append(blk.attn.k_proj.register_forward_hook(lambda m, inp, out, v=l_k[i]: out * v))
        hs.append(blk.attn.v_proj.register_forward_hook(lambda m, inp, out, v=l_v[i]: out * v))
        hs.append(blk.ffn.fc2.register_forward_pre_hook(lambda m, inp, v=l_ff[i]: (inp[0] * v,)))
    try:
        return base(x).logits
    finally:
        for h in hs:
            h.remove()


def test_peft_ia3_equals_ia3_written_out_and_detaches():
    base = ntkit.build("nt-v2-tiny", seed=0)
    x = torch.as_tensor(base.tokenizer.encode("ACGTTGCAACGTAGGA" * 3))[None]
    ref = base(x).logits
    adapters.attach(base, "ia3")
    torch.testing.assert_close(base(x).logits, ref)  # initialised at 1: the base model
    g = torch.Generator().manual_seed(0)
    vecs = {n: torch.rand(p.shape, generator=g) + 0.5 for n, p in base.named_parameters() if "ia3_l" in n}
    with torch.no_grad():
        for n, p in base.named_parameters():
            if n in vecs:
                p.copy_(vecs[n])
    out = base(x).logits
    L = base.config.num_layers
    get = lambda i, mod: vecs[f"layers.{i}.{mod}.ia3_l.default"].flatten()  # noqa: E731
    adapters.detach(base)
    torch.testing.assert_close(base(x).logits, ref)  # the original modules back
    by_hand = _ia3_by_hand(base, [get(i, "attn.k_proj") for i in range(L)], [get(i, "attn.v_proj") for i in range(L)],
                           [get(i, "ffn.fc2") for i in range(L)], x)
    torch.testing.assert_close(out, by_hand, rtol=0, atol=1e-6)


def test_lora_starts_at_base_model_and_merges():
    base = ntkit.build("nt-v1-tiny", seed=0)
    x = torch.as_tensor(base.tokenizer.encode("ACGTTGCAACGTAGGA"))[None]
    ref = base(x).logits
    m = FinetunedModel(base, FinetuneConfig(method="lora", lora_rank=4))
    torch.testing.assert_close(base(x).logits, ref)
    assert m.trainable_parameters() == 2 * 2 * (4 * 64 + 64 * 4) + 64 * 2 + 2
    with torch.no_grad():
        for n, p in base.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    adapted = base(x).logits
    assert not torch.allclose(adapted, ref)
    merged = m.merged()
    assert not adapters.has_adapter(merged) and type(merged.layers[0].attn.q_proj) is torch.nn.Linear
    torch.testing.assert_close(merged(x).logits, adapted, rtol=1e-5, atol=1e-5)


def motif_task(n=80, seed=0):
    rng = np.random.default_rng(seed)
    seqs, y = [], []
    for i in range(n):
        s = list(rng.choice(list("ACGT"), 120))
        if i % 2:
            p = rng.integers(0, 100)
            s[p : p + 24] = list("G" * 24)
        seqs.append("".join(s))
        y.append(i % 2)
    return seqs, np.array(y)


@pytest.mark.parametrize("method", ["ia3", "lora", "full"])
def test_finetune_learns_and_adapters_round_trip(method, tmp_path):
    base = ntkit.build("nt-v2-tiny", seed=0)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    seqs, y = motif_task()
    lr = {"ia3": 3e-2, "lora": 1e-2, "full": 1e-3}[method]
    m = finetune(base, seqs, y, FinetuneConfig(method=method, epochs=10, lr=lr, batch_size=8, seed=0, patience=10))
    ts, ty = motif_task(40, seed=1)
    p = m.predict(ts)
    acc = (p.argmax(1) == ty).mean()
    assert acc > 0.75, acc
    m.save_adapter(tmp_path / "ad")
    if method != "full":  # adapters leave the base weights untouched
        assert (tmp_path / "ad" / "adapter_config.json").exists() and (tmp_path / "ad" / "adapter_model.safetensors").exists()
        adapters.detach(base)
        assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    m2 = FinetunedModel.load_adapter(ntkit.build("nt-v2-tiny", seed=0) if method != "full" else None, tmp_path / "ad")
    np.testing.assert_allclose(m2.predict(ts), p, rtol=1e-4, atol=1e-5)


def test_reverse_complement_trains_on_both_strands_and_predicts_their_mean(tmp_path, monkeypatch):
    """``reverse_complement``: training batches hold reverse complements of the training sequences
    (and forward ones), a prediction is the mean of both strands' probabilities, so a sequence and
    its reverse complement get the same one (one row per forward: a row's output does not depend
    on its batch, and the mean of the same two vectors is equal in either order), and the flag is
    saved with the adapter."""
    base = ntkit.build("nt-v2-tiny", seed=0)
    seqs, y = motif_task(24)
    seen, encode = [], base.tokenizer.batch_encode
    monkeypatch.setattr(base.tokenizer, "batch_encode", lambda batch, **k: seen.extend(batch) or encode(batch, **k))
    m = finetune(base, seqs, y, FinetuneConfig(method="ia3", epochs=2, batch_size=8, seed=0, reverse_complement=True, valid_fraction=0))
    monkeypatch.undo()  # the training batches only
    fwd, rev = set(seqs), {reverse_complement(x) for x in seqs} - set(seqs)
    assert len(seen) == 48 and 0 < sum(x in rev for x in seen) < 48 and all(x in fwd | rev for x in seen)
    one_row = Runtime(batch_size=1)
    p, p_rc = m.predict(seqs[:6], runtime=one_row), m.predict([reverse_complement(x) for x in seqs[:6]], runtime=one_row)
    np.testing.assert_array_equal(p, p_rc)
    m.cfg.reverse_complement = False  # one strand: the strands' predictions differ
    assert not np.array_equal(m.predict(seqs[:6], runtime=one_row), m.predict([reverse_complement(x) for x in seqs[:6]], runtime=one_row))
    m.cfg.reverse_complement = True
    m.save_adapter(tmp_path / "rc")
    m2 = FinetunedModel.load_adapter(ntkit.build("nt-v2-tiny", seed=0), tmp_path / "rc")
    assert m2.cfg.reverse_complement
    np.testing.assert_allclose(m2.predict(seqs[:6], runtime=one_row), p, rtol=1e-5, atol=1e-6)


def test_regression_head(tmp_path):
    """GC content as the target: the head predicts z-scores of the training targets, outputs are in
    their units (a zero head predicts their mean exactly, a bias of 1 one standard deviation more),
    full fine-tuning learns it (MSE 0.23x the variance at 4 epochs), the adapter round-trips."""
    base = ntkit.build("nt-v2-tiny", seed=0)
    seqs, y = motif_task()
    gc = np.array([(s.count("G") + s.count("C")) / len(s) for s in seqs], dtype=np.float32)
    m = finetune(base, seqs, gc, FinetuneConfig(method="full", task="regression", epochs=4, seed=0))
    p = m.predict(seqs)
    assert p.shape == (80,) and np.mean((p - gc) ** 2) < 0.5 * gc.var() and np.corrcoef(p, gc)[0, 1] > 0.7
    assert m.cfg.target_mean == pytest.approx(float(gc.mean())) and m.cfg.target_scale == pytest.approx(float(gc.std()))
    m.save_adapter(tmp_path / "reg")
    np.testing.assert_allclose(FinetunedModel.load_adapter(None, tmp_path / "reg").predict(seqs), p, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        m.head.linear.weight.zero_()
        m.head.linear.bias.fill_(0.0)
        np.testing.assert_allclose(m.predict(seqs[:3]), m.cfg.target_mean, rtol=1e-6)
        m.head.linear.bias.fill_(1.0)
        np.testing.assert_allclose(m.predict(seqs[:3]), m.cfg.target_mean + m.cfg.target_scale, rtol=1e-6)
    with pytest.raises(ValueError, match="finite"):
        finetune(base, seqs[:20], np.r_[gc[:19], np.nan], FinetuneConfig(method="head", task="regression", epochs=1))


def test_predict_command_sharded_equals_in_memory(tmp_path):
    import pandas as pd

    from ntkit.cli import main
    from ntkit.models.checkpoint import save_checkpoint

    base = ntkit.build("nt-v2-tiny", seed=0)
    save_checkpoint(base, tmp_path / "base")
    seqs, y = motif_task(40)
    m = finetune(base, seqs, y, FinetuneConfig(method="ia3", epochs=1, lr=1e-2, batch_size=8))
    m.save_adapter(tmp_path / "ad")
    pd.DataFrame({"name": [f"r{i}" for i in range(40)], "sequence": seqs, "label": y}).to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    common = ["predict", str(tmp_path / "t.tsv"), "--adapter", str(tmp_path / "ad"), "--model", str(tmp_path / "base"),
              "--chunk-size", "7", "--no-progress", "--out", str(tmp_path / "p.csv")]
    for i in (1, 0):
        assert main(common + ["--shard", f"{i}/2"]) == 0
    out = pd.read_csv(tmp_path / "p.csv")
    assert list(out.columns) == ["id", "label", "prob_0", "prob_1", "predicted"] and list(out["id"]) == [f"r{i}" for i in range(40)]
    np.testing.assert_allclose(out[["prob_0", "prob_1"]].to_numpy(), m.predict(seqs), rtol=1e-5, atol=1e-6)
    assert (out["predicted"] == m.predict(seqs).argmax(1)).all()


def test_adapter_folders_are_checked_before_they_predict(tmp_path, capsys):
    """Missing adapter weights, another base of the same shape, edited tensors or classes: errors
    naming the file, never a silent prediction of the bare or wrong base (--force accepts another base)."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    from ntkit.cli import main
    from ntkit.models.checkpoint import save_checkpoint

    base = ntkit.build("nt-v2-tiny", seed=0)
    seqs, y = motif_task(24)
    m = finetune(base, seqs, y, FinetuneConfig(method="lora", epochs=1, lr=1e-2, batch_size=8))
    m.save_adapter(tmp_path / "ad")
    cfg = json.loads((tmp_path / "ad" / "finetune_config.json").read_text())
    assert cfg["base_fingerprint"].startswith("model:") and cfg["finetune"]["classes"] == [0, 1]
    fresh = lambda seed=0: ntkit.build("nt-v2-tiny", seed=seed)  # noqa: E731
    assert FinetunedModel.load_adapter(fresh(), tmp_path / "ad") is not None

    broken = tmp_path / "no_weights"
    shutil.copytree(tmp_path / "ad", broken)
    (broken / "adapter_model.safetensors").unlink()
    with pytest.raises(ValueError, match="adapter_model.safetensors is missing"):
        FinetunedModel.load_adapter(fresh(), broken)

    with pytest.raises(ValueError, match=r"was trained on nt-v2-tiny \(model:\w+\); the given base nt-v2-tiny has other weights"):
        FinetunedModel.load_adapter(fresh(seed=1), tmp_path / "ad")
    forced = FinetunedModel.load_adapter(fresh(seed=1), tmp_path / "ad", force=True)
    assert not np.allclose(forced.predict(seqs[:4]), m.predict(seqs[:4]))  # why the check exists
    save_checkpoint(fresh(seed=1), tmp_path / "other")
    (tmp_path / "s.fa").write_text(">a\n" + seqs[0] + "\n")
    args = ["predict", str(tmp_path / "s.fa"), "--adapter", str(tmp_path / "ad"), "--model", str(tmp_path / "other"), "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "p.tsv")]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("ntkit ")]
    assert len(err) == 1 and "other weights" in err[0] and "--force" in err[0]
    assert main(args + ["--out", str(tmp_path / "p2.tsv"), "--force"]) == 0

    edited = tmp_path / "edited"
    shutil.copytree(tmp_path / "ad", edited)
    head = load_file(str(edited / "head.safetensors"))
    head["head.linear.weight"] = torch.zeros(3, head["head.linear.weight"].shape[1])
    save_file(head, str(edited / "head.safetensors"))
    with pytest.raises(ValueError, match=r"head.safetensors: tensors do not fit \(size mismatch for linear.weight"):
        FinetunedModel.load_adapter(fresh(), edited)
    shutil.copy(tmp_path / "ad" / "head.safetensors", edited / "head.safetensors")
    cfg["finetune"]["classes"] = [0, 1, 2]
    (edited / "finetune_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"finetune_config.json: 3 class names for n_classes=2"):
        FinetunedModel.load_adapter(fresh(), edited)

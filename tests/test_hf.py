"""ntkit.hf: transformers PreTrainedModel classes over ntkit's forward; Trainer; peft adapters of
``ntkit finetune`` applied by ``peft.PeftModel.from_pretrained``."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ntkit
from ntkit.runtime import jobs
from ntkit.models.checkpoint import save_checkpoint

transformers = pytest.importorskip("transformers")

from ntkit.hf import NTForMaskedLM, NTForSequenceClassification, NTForTokenClassification, NTModelForHF

from .conftest import perturbed  # noqa: E402


@pytest.fixture(scope="module", params=["nt-v1-tiny", "nt-v2-tiny"])
def folder(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    model = perturbed(ntkit.build(ntkit.get_preset(request.param).replace(max_tokens=64), seed=0), seed=1)
    save_checkpoint(model, d)
    return d


def batch(tok, n=3, seed=0):
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGTN"), int(rng.integers(30, 200)))) for _ in range(n)]
    return tok.batch_encode(seqs, truncation=True).to_torch()


def test_masked_lm_equals_ntkit_and_gives_the_mlm_loss(folder):
    hf = NTForMaskedLM.from_pretrained(folder)
    nt = ntkit.load(folder).eval()
    assert isinstance(hf, transformers.PreTrainedModel) and not hf.training
    ids, mask = batch(nt.tokenizer)
    labels = torch.full_like(ids, -100)
    labels[:, 3:9] = ids[:, 3:9]
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
        ref = nt(ids, mask, repr_layers=range(nt.config.num_layers + 1))
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=1e-5)
    want = torch.nn.functional.cross_entropy(ref.logits[:, 3:9].reshape(-1, ref.logits.shape[-1]), ids[:, 3:9].reshape(-1))
    assert torch.isfinite(out.loss) and out.loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert len(out.hidden_states) == nt.config.num_layers + 1
    for i, h in enumerate(out.hidden_states):
        torch.testing.assert_close(h, ref.hidden_states[i])
    loss, logits = hf(input_ids=ids, attention_mask=mask, labels=labels, return_dict=False)[:2]
    torch.testing.assert_close(logits, out.logits)
    base = NTModelForHF.from_pretrained(folder)(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(base.last_hidden_state, ref.hidden_states[nt.config.num_layers])


def test_classifier_saves_and_loads_and_its_folder_is_still_an_nt_model(folder, tmp_path):
    torch.manual_seed(0)
    m = NTForSequenceClassification.from_pretrained(folder, num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
    ids, mask = batch(m.tokenizer)
    m.save_pretrained(tmp_path / "clf")
    back = NTForSequenceClassification.from_pretrained(tmp_path / "clf")
    assert back.config.num_labels == 3 and back.config.id2label[2] == "c"
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=ids, attention_mask=mask).logits, m(input_ids=ids, attention_mask=mask).logits)
    nt = ntkit.load(tmp_path / "clf")  # the head's tensors are ignored by the NT loader
    assert jobs.model_fingerprint(nt) == jobs.model_fingerprint(ntkit.load(folder))
    tc = NTForTokenClassification.from_pretrained(folder, num_labels=4)
    labels = torch.where(mask, torch.randint(0, 4, ids.shape), torch.full_like(ids, -100))
    out = tc(input_ids=ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (*ids.shape, 4) and torch.isfinite(out.loss)


def test_trainer_fine_tunes_the_sequence_classifier(tmp_path):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    d = tmp_path / "base"
    save_checkpoint(ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=64), seed=0), d)
    model = NTForSequenceClassification.from_pretrained(d, num_labels=2)
    tok = transformers.AutoTokenizer.from_pretrained(d)
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), int(rng.integers(60, 120)))) for _ in range(32)]
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_list([{**tok(s), "labels": int("GGG" in s)} for s in seqs])
    assert data[0]["input_ids"] == model.tokenizer.encode(seqs[0]).tolist()  # the hub tokenizer and ntkit's agree
    before = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=4, learning_rate=1e-3,
                             report_to=[], save_strategy="no", logging_steps=1, use_cpu=True)
    result = Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tok)).train()
    assert result.global_step == 4 and np.isfinite(result.training_loss)
    assert any(not torch.equal(before[k], v) for k, v in model.classifier.state_dict().items())


def test_ntkit_lora_adapter_loads_through_peft_with_ntkit_predictions(tmp_path):
    from peft import PeftModel

    from ntkit.tasks.finetune import FinetuneConfig, finetune

    base = ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=64), seed=0)
    save_checkpoint(base, tmp_path / "base")
    base = ntkit.load(tmp_path / "base")
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 150)) for _ in range(24)]
    ft = finetune(base, seqs, [int("GGG" in s) for s in seqs], FinetuneConfig(method="lora", epochs=1, lr=1e-2))
    ft.save_adapter(tmp_path / "ad")
    want = ft.predict(seqs[:6])
    hf = NTForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=2)
    peft_model = PeftModel.from_pretrained(hf, str(tmp_path / "ad")).eval()
    assert peft_model.peft_config["default"].base_model_name_or_path == str(tmp_path / "base")
    ids, mask = hf.tokenizer.batch_encode(seqs[:6], truncation=True).to_torch()
    with torch.no_grad():
        got = torch.softmax(peft_model(input_ids=ids, attention_mask=mask).logits, -1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("kind", ["lora", "ia3"])
def test_transformers_trained_peft_adapter_runs_in_ntkit_predict(tmp_path, kind):
    """An adapter made the transformers way (get_peft_model on NTForSequenceClassification, the head
    in modules_to_save, PeftModel.save_pretrained) predicts in ``ntkit predict`` what peft predicts."""
    import pandas as pd
    from peft import IA3Config, LoraConfig, get_peft_model

    from ntkit.cli import main

    save_checkpoint(ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=64), seed=0), tmp_path / "base")
    torch.manual_seed(0)
    hf = NTForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=3)
    config = (LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["classifier"], init_lora_weights=False)
              if kind == "lora" else IA3Config(target_modules=["k_proj", "v_proj", "fc2"], feedforward_modules=["fc2"],
                                               modules_to_save=["classifier"]))
    pm = get_peft_model(hf, config).eval()
    if kind == "ia3":  # IA3 starts at 1: make the adapter matter
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "ia3_l" in n:
                    p.mul_(1.5)
    pm.save_pretrained(tmp_path / "ad")
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), int(rng.integers(50, 200)))) for _ in range(7)]
    (tmp_path / "s.fa").write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs)))
    assert main(["predict", str(tmp_path / "s.fa"), "--adapter", str(tmp_path / "ad"), "--model", str(tmp_path / "base"),
                 "--no-progress", "--out", str(tmp_path / "p.tsv")]) == 0
    got = pd.read_csv(tmp_path / "p.tsv", sep="\t")[["prob_0", "prob_1", "prob_2"]].to_numpy()
    enc = hf.tokenizer(seqs, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = torch.softmax(pm(**enc).logits, -1).numpy()
    plain = torch.softmax(NTForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=3)(**enc).logits, -1)
    assert np.abs(plain.detach().numpy() - want).max() > 1e-3  # the adapter and head matter
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_v1_adapter_exported_to_transformers_esm(tmp_path, method):
    """An NT v1 adapter of ``ntkit finetune`` rewritten for transformers' own EsmModel: the adapted
    encoder's last hidden state equals ntkit's."""
    from peft import PeftModel

    from ntkit.tasks.finetune import FinetuneConfig, finetune
    from ntkit.hf import esm_adapter

    base = perturbed(ntkit.build(ntkit.get_preset("nt-v1-tiny").replace(max_tokens=64), seed=0), seed=2)
    save_checkpoint(base, tmp_path / "base")
    base = ntkit.load(tmp_path / "base")
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 150)) for _ in range(24)]
    ft = finetune(base, seqs, [int("GGG" in s) for s in seqs], FinetuneConfig(method=method, epochs=2, lr=3e-2)).eval()
    ft.save_adapter(tmp_path / "ad")
    esm_adapter(tmp_path / "ad", tmp_path / "esm-ad")
    esm = transformers.EsmModel.from_pretrained(tmp_path / "base", add_pooling_layer=False).eval()
    enc = base.tokenizer(seqs[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        plain = esm(**enc).last_hidden_state
        got = PeftModel.from_pretrained(esm, str(tmp_path / "esm-ad")).eval()(**enc).last_hidden_state
        L = base.config.num_layers
        want = ft.base(enc["input_ids"], enc["attention_mask"], repr_layers=[L], return_logits=False).hidden_states[L]
    keep = enc["attention_mask"].bool()
    assert (plain - want)[keep].abs().max() > 1e-3  # the adapter matters
    torch.testing.assert_close(got[keep], want[keep], atol=2e-5, rtol=1e-4)


def test_push_to_hub_uploads_the_nt_layout(tmp_path, monkeypatch):
    """push_to_hub (transformers' mixin) writes through ntkit's save_pretrained: the uploaded folder
    is the NT layout (ESM config, model.safetensors with classifier.*, vocab), offline here."""
    import transformers.utils.hub as hub

    save_checkpoint(ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=64), seed=0), tmp_path / "base")
    m = NTForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=2)
    uploaded = {}

    class Api:
        def create_repo(self, repo_id, **kw):
            return type("R", (), {"repo_id": repo_id})()

    def upload(folder, repo_id, **kw):
        uploaded.update(repo=repo_id, files=sorted(p.name for p in Path(folder).iterdir()),
                        config=json.loads((Path(folder) / "config.json").read_text()))
        uploaded["loaded"] = ntkit.load(folder).config.to_dict() == m.nt.config.to_dict()

    monkeypatch.setattr(hub, "hf_api", lambda: Api())
    monkeypatch.setattr(hub, "create_and_tag_model_card", lambda *a, **k: type("C", (), {"save": lambda self, p: None})())
    monkeypatch.setattr(m, "_upload_modified_files", upload)
    m.push_to_hub("me/nt-clf")
    assert uploaded["repo"] == "me/nt-clf" and uploaded["loaded"]
    assert {"config.json", "model.safetensors", "vocab.txt"} <= set(uploaded["files"])
    assert uploaded["config"]["model_type"] == "esm" and uploaded["config"]["architectures"] == ["NTForSequenceClassification"]


def test_load_adapter_refuses_another_base_as_the_command_line_does(tmp_path):
    """``PeftModel.from_pretrained`` applies an adapter to any base; ``ntkit.hf.load_adapter``
    checks the fingerprint the adapter folder keeps (``force=True`` as ``--force``)."""
    from ntkit.tasks.finetune import FinetuneConfig, finetune
    from ntkit.hf import load_adapter

    cfg = ntkit.get_preset("nt-v2-tiny").replace(max_tokens=64)
    save_checkpoint(ntkit.build(cfg, seed=0), tmp_path / "base")
    save_checkpoint(ntkit.build(cfg, seed=1), tmp_path / "other")  # same architecture, other weights
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 120)) for _ in range(12)]
    ft = finetune(ntkit.load(tmp_path / "base"), seqs, [int("GG" in s[:20]) for s in seqs], FinetuneConfig(method="lora", epochs=1))
    ft.save_adapter(tmp_path / "ad")
    ids, mask = ft.base.tokenizer.batch_encode(seqs[:4], truncation=True).to_torch()
    good = load_adapter(NTForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=2), tmp_path / "ad").eval()
    with torch.no_grad():
        np.testing.assert_allclose(good(input_ids=ids, attention_mask=mask).logits.softmax(-1).numpy(), ft.predict(seqs[:4]), atol=1e-4)
    with pytest.raises(ValueError, match=r"was trained on .*base.* the given base .*other.* has other weights .* or force=True"):
        load_adapter(NTForSequenceClassification.from_pretrained(tmp_path / "other", num_labels=2), tmp_path / "ad")
    forced = load_adapter(NTForSequenceClassification.from_pretrained(tmp_path / "other", num_labels=2), tmp_path / "ad", force=True)
    assert forced.peft_config["default"].peft_type.value == "LORA"


def test_nt_classes_name_the_family_of_other_folders(tmp_path):
    from ntkit.models import ntv3, segment_nt

    ntv3.save_folder(ntv3.build("ntv3-tiny", seed=0), tmp_path / "v3")
    segment_nt.save_folder(segment_nt.build("segment-nt-tiny", seed=0), tmp_path / "snt")
    with pytest.raises(ValueError, match=r"v3: a ntv3 model; ntkit.hf's NTForMaskedLM holds NT v1/v2 encoders: load it with ntkit.load"):
        NTForMaskedLM.from_pretrained(tmp_path / "v3")
    with pytest.raises(ValueError, match=r"snt: a segment_nt model; ntkit.hf's NTForSequenceClassification holds NT v1/v2"):
        NTForSequenceClassification.from_pretrained(tmp_path / "snt", num_labels=2)

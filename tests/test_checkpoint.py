import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import ntkit
from ntkit.models.checkpoint import CheckpointError
from ntkit.models.nt.checkpoint import from_hf_name, hf_config, to_hf_name

from .conftest import hf_reference, perturbed

SEQS = ["ACGTAGCTAGCTAGGATCGATCGNNACGTGCA" * 3, "ACGTTT" * 5, "GGGCCCATATN" * 7]


def _same_model(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert a.config == b.config


def test_name_mapping_is_a_bijection():
    model = ntkit.build("nt-v1-tiny")
    for k in model.state_dict():
        assert from_hf_name(to_hf_name(k)) == k
    assert to_hf_name("layers.1.ffn.fc1.weight") == "esm.encoder.layer.1.intermediate.dense.weight"
    assert to_hf_name("lm_head.norm.bias") == "lm_head.layer_norm.bias"


@pytest.mark.parametrize("preset", ["nt-v1-tiny", "nt-v2-tiny"])
@pytest.mark.parametrize("safe", [True, False])
def test_roundtrip_is_bit_exact(tmp_path, preset, safe):
    model = perturbed(ntkit.build(preset))
    ntkit.save_checkpoint(model, tmp_path, safe_serialization=safe)
    assert (tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")).exists()
    assert {"config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"} <= {p.name for p in tmp_path.iterdir()}
    loaded = ntkit.load(tmp_path)
    _same_model(model, loaded)
    if model.rotary is not None:
        assert torch.equal(model.rotary.inv_freq, loaded.rotary.inv_freq)


def test_config_json_fields(tmp_path):
    ntkit.save_checkpoint(ntkit.build("nt-v2-tiny"), tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["position_embedding_type"] == "rotary" and cfg["add_bias_fnn"] is False
    assert cfg["max_position_embeddings"] == 2050 and cfg["vocab_size"] == 4107 and cfg["tie_word_embeddings"] is False
    sd = load_file(tmp_path / "model.safetensors")
    assert "esm.encoder.layer.0.attention.self.rotary_embeddings.inv_freq" in sd
    assert sd["esm.contact_head.regression.weight"].shape == (1, 2 * 4)
    # v2 is loaded by transformers through NT's remote code on the hub; v1 is stock ESM
    repo = "InstaDeepAI/nucleotide-transformer-v2-50m-multi-species"
    assert cfg["auto_map"]["AutoModelForMaskedLM"] == f"{repo}--modeling_esm.EsmForMaskedLM"
    assert cfg["auto_map"]["AutoConfig"] == f"{repo}--esm_config.EsmConfig" and "hidden_act" not in cfg
    ntkit.save_checkpoint(ntkit.build("nt-v1-tiny"), tmp_path / "v1")
    v1 = json.loads((tmp_path / "v1" / "config.json").read_text())
    assert "auto_map" not in v1 and v1["hidden_act"] == "gelu"


@pytest.mark.parametrize("preset", ["nt-v1-tiny", "nt-v2-tiny"])
def test_transformers_checkpoint_loads_with_same_outputs(tmp_path, preset):
    """HF saves -> ntkit loads, and ntkit saves -> HF loads: identical logits and hidden states."""
    template = ntkit.build(preset)
    ref = perturbed(hf_reference(hf_config(template.config)), seed=3)
    ref.save_pretrained(tmp_path / "hf")
    model = ntkit.load(tmp_path / "hf").eval()
    ids, mask = model.tokenizer.batch_encode(SEQS).to_torch()
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
        o = model(ids, mask, repr_layers=[0, 1, 2])
    torch.testing.assert_close(o.logits, r.logits, atol=1e-5, rtol=1e-5)
    for i in range(3):
        torch.testing.assert_close(o.hidden_states[i], r.hidden_states[i], atol=1e-5, rtol=1e-5)

    ntkit.save_checkpoint(model, tmp_path / "nt")
    back = hf_reference(hf_config(model.config))
    missing, unexpected = back.load_state_dict(
        {k: v for k, v in load_file(tmp_path / "nt" / "model.safetensors").items()}, strict=False)
    assert missing == []
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=ids, attention_mask=mask.long()).logits, r.logits, atol=1e-5, rtol=1e-5)


def test_transformers_from_pretrained_reads_v1_checkpoint(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = perturbed(ntkit.build("nt-v1-tiny")).eval()
    ntkit.save_checkpoint(model, tmp_path)
    ref = transformers.EsmForMaskedLM.from_pretrained(tmp_path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    enc = tok(SEQS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(enc["input_ids"], enc["attention_mask"]).logits,
                                   ref(**enc).logits, atol=1e-5, rtol=1e-5)


def test_sharded_checkpoint(tmp_path):
    model = perturbed(ntkit.build("nt-v2-tiny"))
    ntkit.save_checkpoint(model, tmp_path)
    sd = load_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    keys = sorted(sd)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2], "model-00002-of-00002.safetensors": keys[len(keys) // 2 :]}
    for name, ks in shards.items():
        save_file({k: sd[k] for k in ks}, tmp_path / name)
    index = {"weight_map": {k: name for name, ks in shards.items() for k in ks}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    _same_model(model, ntkit.load(tmp_path))
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="cannot read"):
        ntkit.load(tmp_path)
    # an index naming a file outside its folder is refused before anything is read
    for outside in ("../elsewhere.safetensors", "/etc/passwd", "sub/../../x.safetensors"):
        index["weight_map"][keys[0]] = outside
        (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
        with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
            ntkit.load(tmp_path)


def test_bad_checkpoints(tmp_path):
    model = ntkit.build("nt-v2-tiny")
    ntkit.save_checkpoint(model, tmp_path)
    weights = tmp_path / "model.safetensors"
    good = weights.read_bytes()

    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        ntkit.load(tmp_path)

    sd = load_file_bytes(good)
    sd["esm.encoder.layer.1.output.dense.weight"][0, 0] = float("nan")
    save_file(sd, weights)
    with pytest.raises(CheckpointError, match="NaN or Inf"):
        ntkit.load(tmp_path)

    sd = load_file_bytes(good)
    del sd["lm_head.decoder.weight"]
    save_file(sd, weights)
    with pytest.raises(CheckpointError, match="missing"):
        ntkit.load(tmp_path)

    sd = load_file_bytes(good)
    sd["vision_tower.weight"] = torch.zeros(2, 2)
    save_file(sd, weights)
    with pytest.raises(CheckpointError, match="not part of an NT model"):
        ntkit.load(tmp_path)

    sd = load_file_bytes(good)  # a task head (ESM's or ntkit.hf's classifier.*) is not the encoder: ignored
    sd["classifier.dense.weight"] = torch.zeros(2, 2)
    save_file(sd, weights)
    ntkit.load(tmp_path)

    weights.write_bytes(good)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["hidden_size"] = 128
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape"):
        ntkit.load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        ntkit.load(tmp_path)
    with pytest.raises(CheckpointError, match="neither a checkpoint directory, a hub model"):
        ntkit.load(tmp_path / "nope")


def test_vocab_of_another_generation_is_refused(tmp_path):
    ntkit.save_checkpoint(ntkit.build("nt-v2-tiny"), tmp_path / "v2")
    ntkit.save_checkpoint(ntkit.build("nt-v1-tiny"), tmp_path / "v1")
    (tmp_path / "v2" / "vocab.txt").write_bytes((tmp_path / "v1" / "vocab.txt").read_bytes())
    with pytest.raises(CheckpointError, match="NT v1 vocabulary but config.json describes an NT v2 model"):
        ntkit.load(tmp_path / "v2")


def load_file_bytes(b):
    from safetensors.torch import load

    return dict(load(b))


def test_load_preset_and_dtype(tmp_path):
    with pytest.warns(UserWarning, match="randomly initialised"):
        m = ntkit.load("nt-v2-tiny")
    ntkit.save_checkpoint(m, tmp_path)
    assert ntkit.load(tmp_path, dtype=torch.bfloat16).embed_tokens.weight.dtype == torch.bfloat16
    ntkit.save_checkpoint(m.to(torch.bfloat16), tmp_path / "bf16")
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert ntkit.load(tmp_path / "bf16").embed_tokens.weight.dtype == torch.bfloat16


REPO = "InstaDeepAI/nucleotide-transformer-v2-50m-multi-species"


def hub_cache(cache, commit: str, monkeypatch):
    """A Hugging Face cache holding REPO at ``commit`` (its ``main``), the hub offline; the model."""
    snap = cache / ("models--" + REPO.replace("/", "--")) / "snapshots" / commit
    model = perturbed(ntkit.build("nt-v2-tiny"))
    ntkit.save_checkpoint(model, snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    return model


def test_hub_names_resolve_through_the_huggingface_cache_offline(tmp_path, monkeypatch):
    """A model in the local Hugging Face cache loads by its hub name, offline, at a revision."""
    import huggingface_hub.constants as c

    repo, cache = REPO, tmp_path / "hub"
    model = hub_cache(cache, "a" * 40, monkeypatch)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    _same_model(model, ntkit.load(repo))
    assert ntkit.load(repo).name_or_path == f"{repo}@{'a' * 40}"  # provenance names the commit read
    _same_model(model, ntkit.load(repo, revision="a" * 40))
    with pytest.raises(CheckpointError, match="reachable hub model"):
        ntkit.load("InstaDeepAI/not-in-the-cache")


def test_hub_cache_dir_revision_and_token_reach_the_loader(tmp_path, monkeypatch):
    """--cache-dir / --revision on the command line and ``cache_dir`` in ``ntkit.hf`` find a model in
    a cache that is not the default one (offline)."""
    from ntkit.cli import main

    repo, cache = REPO, tmp_path / "elsewhere"
    model = hub_cache(cache, "b" * 40, monkeypatch)
    (tmp_path / "s.fa").write_text(">a\nACGTACGTAGGCTAGCATCGA\n")
    assert main(["embed", str(tmp_path / "s.fa"), "--model", repo, "--cache-dir", str(cache), "--revision", "b" * 40,
                 "--token", "hf_unused", "--no-progress", "--out", str(tmp_path / "e.parquet")]) == 0
    from ntkit.hf import NTForMaskedLM

    hf = NTForMaskedLM.from_pretrained(repo, cache_dir=cache)
    _same_model(model, hf.nt)
    assert hf.config.name_or_path == repo
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["info", repo, "--cache-dir", str(cache)]) == 0
    about = json.loads(buf.getvalue())
    assert (about["source"], about["revision"]) == (repo, "b" * 40)  # the commit of the snapshot used

import pytest
import torch

import ntkit
from ntkit.models.nt.checkpoint import hf_config, hf_num_parameters, to_hf_state_dict
from ntkit.models.nt.config import PRESETS, NTConfig
from ntkit.models.nt.model import NTModel

from .conftest import hf_reference, perturbed

SEQS = ["ACGTAGCTAGCTAGGATCGATCGNNACGTGCA" * 3, "ACGTTT" * 5, "GGGCCCATATN" * 7, "ACG"]


def test_hf_parameter_counts():
    assert hf_num_parameters(PRESETS["nt-v2-50m"]) == 55_904_972
    assert hf_num_parameters(PRESETS["nt-v2-100m"]) == 97_889_132
    assert hf_num_parameters(PRESETS["nt-v2-250m"]) == 235_120_780
    assert hf_num_parameters(PRESETS["nt-v2-500m"]) == 498_345_436
    assert hf_num_parameters(PRESETS["nt-v1-500m"]) == 485_699_306
    assert hf_num_parameters(PRESETS["nt-v1-2.5b"]) == 2_547_801_226


def test_large_presets_on_meta_device():
    for name in ["nt-v1-2.5b", "nt-v2-500m"]:
        with torch.device("meta"):
            m = NTModel(PRESETS[name])
        tokens = torch.full((2, 16), 6, device="meta")
        out = m(tokens, repr_layers=[-1])
        assert out.logits.shape == (2, 16, PRESETS[name].vocab_size)
        assert out.hidden_states[PRESETS[name].num_layers].shape == (2, 16, PRESETS[name].hidden_size)


def test_v1_v2_differences():
    v1, v2 = PRESETS["nt-v1-500m"], PRESETS["nt-v2-50m"]
    assert (v1.position_embedding, v1.ffn_activation, v1.ffn_bias, v1.token_dropout, v1.vocab_size, v1.max_tokens) == (
        "learned", "gelu", True, True, 4105, 1000)
    assert (v2.position_embedding, v2.ffn_activation, v2.ffn_bias, v2.token_dropout, v2.vocab_size, v2.max_tokens) == (
        "rotary", "swiglu", False, False, 4107, 2048)
    m = ntkit.build("nt-v2-tiny")
    assert m.layers[0].ffn.fc1.weight.shape == (2 * 256, 64) and m.layers[0].ffn.fc1.bias is None
    assert m.embed_positions is None
    with pytest.raises(ValueError, match="divisible"):
        NTConfig(hidden_size=10, num_heads=3)


def test_build_is_seeded():
    a, b, c = ntkit.build("nt-v2-tiny", seed=1), ntkit.build("nt-v2-tiny", seed=1), ntkit.build("nt-v2-tiny", seed=2)
    assert torch.equal(a.layers[0].attn.q_proj.weight, b.layers[0].attn.q_proj.weight)
    assert not torch.equal(a.layers[0].attn.q_proj.weight, c.layers[0].attn.q_proj.weight)


def _batch(model):
    ids, mask = model.tokenizer.batch_encode(SEQS).to_torch()
    ids[0, 5] = model.config.mask_token_id  # exercises token dropout in v1
    return ids, mask


@pytest.mark.parametrize("preset", ["nt-v1-tiny", "nt-v2-tiny"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_matches_transformers_esm(preset, attn):
    model = perturbed(ntkit.build(preset)).eval()
    ref = hf_reference(hf_config(model.config), attn)
    missing, unexpected = ref.load_state_dict(to_hf_state_dict(model), strict=False)
    assert missing == [] and set(unexpected) <= {"esm.embeddings.position_embeddings.weight"}
    ids, mask = _batch(model)
    n = model.config.num_layers
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True, output_attentions=attn == "eager")
        ours = model(ids, mask, repr_layers=range(n + 1), need_attentions=attn == "eager")
        fast = model(ids, mask, repr_layers=range(n + 1))  # SDPA path
    for out in (ours, fast):
        torch.testing.assert_close(out.logits, r.logits, atol=1e-5, rtol=1e-5)
        assert len(r.hidden_states) == n + 1
        for i in range(n + 1):
            torch.testing.assert_close(out.hidden_states[i], r.hidden_states[i], atol=1e-5, rtol=1e-5)
    if attn == "eager":
        for i in range(n):
            torch.testing.assert_close(ours.attentions[i + 1], r.attentions[i], atol=1e-6, rtol=1e-5)


def test_padding_does_not_change_outputs():
    model = perturbed(ntkit.build("nt-v2-tiny")).eval()
    ids, mask = model.tokenizer.batch_encode(SEQS).to_torch()
    with torch.no_grad():
        batched = model(ids, mask, repr_layers=[1]).logits
        for i in range(len(SEQS)):
            n = int(mask[i].sum())
            alone = model(ids[i : i + 1, :n], repr_layers=[1]).logits
            torch.testing.assert_close(batched[i, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_output_structure_and_layer_indices():
    model = ntkit.build("nt-v2-tiny").eval()
    ids, mask = model.tokenizer.batch_encode(SEQS).to_torch()
    with torch.no_grad():
        out = model(ids, mask, repr_layers=[0, -1], need_attentions=[2], return_logits=False)
    assert out.logits is None
    assert sorted(out.hidden_states) == [0, 2] and list(out.attentions) == [2]
    assert out.attentions[2].shape == (4, 4, ids.shape[1], ids.shape[1])
    torch.testing.assert_close(out.attentions[2].sum(-1), torch.ones(4, 4, ids.shape[1]))
    # padded keys get no attention
    assert out.attentions[2][3, :, :, int(mask[3].sum()):].abs().max() == 0
    with pytest.raises(ValueError, match="out of range"):
        model(ids, repr_layers=[3])
    with pytest.raises(ValueError, match="out of range"):
        model(ids, need_attentions=[0])


def test_context_limit():
    model = ntkit.build(PRESETS["nt-v1-tiny"].replace(max_tokens=8))
    with pytest.raises(ValueError, match="exceed this model's context of 8"):
        model(torch.full((1, 9), 10))


def test_token_dropout_rescales_only_with_masks():
    model = ntkit.build("nt-v1-tiny").eval()
    ids = torch.tensor([[3, 10, 11, 12, 13, 14, 15, 16, 17, 18]])
    masked = ids.clone()
    masked[0, 2] = 2
    e0, e1 = model.embed(ids, ids.ne(1)), model.embed(masked, masked.ne(1))
    pos = model.embed_positions(torch.arange(2, 12))[None]
    # no <mask>: x (1 - 0.12); one <mask> in 10 tokens: x (1 - 0.12) / (1 - 0.1), masked row zeroed
    torch.testing.assert_close(e0 - pos, model.embed_tokens(ids) * 0.88)
    torch.testing.assert_close(e1[0, 3] - pos[0, 3], model.embed_tokens(ids)[0, 3] * 0.88 / 0.9)
    torch.testing.assert_close(e1[0, 2], pos[0, 2])


def test_bf16_close_to_fp32():
    model = perturbed(ntkit.build("nt-v2-tiny"), scale=0.02).eval()
    ids, mask = model.tokenizer.batch_encode(SEQS).to_torch()
    with torch.no_grad():
        ref = model(ids, mask, repr_layers=[-1]).hidden_states[2]
        low = model.to(torch.bfloat16)(ids, mask, repr_layers=[-1]).hidden_states[2].float()
    rel = (low - ref)[mask].norm() / ref[mask].norm()
    assert rel < 2e-2, rel


def test_gradient_checkpointing_same_gradients():
    torch.manual_seed(0)
    model = ntkit.build("nt-v2-tiny").train()
    ids, mask = model.tokenizer.batch_encode(SEQS).to_torch()
    model(ids, mask).logits.square().mean().backward()
    g0 = model.layers[0].attn.q_proj.weight.grad.clone()
    model.zero_grad()
    model.gradient_checkpointing = True
    model(ids, mask).logits.square().mean().backward()
    torch.testing.assert_close(model.layers[0].attn.q_proj.weight.grad, g0)


def test_rotary_frequencies_stay_fp32_under_dtype_casts():
    model = ntkit.build("nt-v2-tiny")
    freq = model.rotary.inv_freq.clone()
    low = model.to(torch.bfloat16)
    assert low.layers[0].attn.q_proj.weight.dtype == torch.bfloat16
    assert low.rotary.inv_freq.dtype == torch.float32 and torch.equal(low.rotary.inv_freq, freq)
    cos, sin = low.rotary(2048, torch.device("cpu"))
    ref_cos, ref_sin = ntkit.build("nt-v2-tiny").rotary(2048, torch.device("cpu"))
    assert torch.equal(cos, ref_cos) and torch.equal(sin, ref_sin)


def test_tokenizer_is_built_once_per_config():
    m = ntkit.build(ntkit.get_preset("nt-v2-tiny"), seed=0)
    tok = m.tokenizer
    assert m.tokenizer is tok and tok.max_tokens == m.config.max_tokens
    m.config = m.config.replace(max_tokens=33)  # a changed context: a new tokenizer
    assert m.tokenizer is not tok and m.tokenizer.max_tokens == 33

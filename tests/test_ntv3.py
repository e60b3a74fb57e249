"""NTv3 against InstaDeep's HF remote code (../shared/reference/ntv3_hf) on the same random weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ntkit
from ntkit.models.ntv3.tokenizer import BaseTokenizer
from ntkit.models.checkpoint import CheckpointError
from ntkit.models.ntv3.model import NTv3Model, build, save_folder, upsample_conv_last

from .conftest import perturbed, reference_code

SEQS = ["ACGTNACGTAGGCTTACG" * 3, "acgtRYACGT" * 5 + "A", "GATTACA" * 20]
TINY = dict(num_layers=2, embed_dim=64, num_downsamples=3, attention_heads=4, key_size=16, ffn_embed_dim=128)


def _pre(tmp_path, up="repeat+conv", name="pre", phase="odd"):
    reference_code("ntv3_hf")
    from configuration_ntv3_pretrained import Ntv3PreTrainedConfig
    from modeling_ntv3_pretrained import NTv3PreTrained

    torch.manual_seed(0)
    ref = perturbed(NTv3PreTrained(Ntv3PreTrainedConfig(conv_init_embed_dim=32, deconv_upsample_type=up,
                                                          deconv_phase=phase, **TINY))).eval()
    ref.save_pretrained(tmp_path / name)
    return ref, tmp_path / name


def _post(tmp_path, up="repeat+conv"):
    reference_code("ntv3_hf")
    from configuration_ntv3_posttrained import NTv3PostTrainedConfig
    from modeling_ntv3_posttrained import NTv3PostTrained

    cfg = NTv3PostTrainedConfig(conv_init_embed_dim=64, deconv_upsample_type=up, conditions_vocab_size=[9],
                                species_to_token_id={"human": 6, "mouse": 7, "fly": 8},
                                bigwigs_per_species={"human": ["a", "b", "c"], "mouse": ["d"], "fly": []},
                                bed_elements_names=["exon", "intron", "promoter"], keep_target_center_fraction=0.3, **TINY)
    torch.manual_seed(1)
    ref = perturbed(NTv3PostTrained(cfg)).eval()
    ref.save_pretrained(tmp_path / "post")
    return ref, tmp_path / "post"


def test_tokenizer_ids_and_length_rule():
    reference_code("ntv3_hf")
    from tokenization_ntv3 import NTv3Tokenizer

    ref = NTv3Tokenizer()
    tok = BaseTokenizer(multiple=8)
    b = tok.batch_encode(["ACGTN", "ACGTACGTA"])
    assert b.input_ids[0, :8].tolist() == ref("ACGTN" + "NNN")["input_ids"]
    assert b.input_ids[1].tolist() == ref("ACGTACGTA" + "N" * 7)["input_ids"]
    assert b.attention_mask.sum(1).tolist() == [5, 9] and b.seq_lengths.tolist() == [5, 9]
    assert b.input_ids[0, 8:].tolist() == [tok.pad_id] * 8  # <pad> beyond the row's own N filler
    soft = tok.batch_encode(["acgtRYnn"])
    assert soft.input_ids[0].tolist() == ref("ACGTNNNN")["input_ids"] and soft.n_iupac.tolist() == [2]
    with pytest.raises(ValueError, match="sequence 0: invalid character 'X' at position 2"):
        tok.batch_encode(["ACXT"])
    assert BaseTokenizer(8, unknown="unk").batch_encode(["AXC"]).input_ids[0, :3].tolist() == [6, 0, 8]
    with pytest.raises(ValueError, match="exceed"):
        BaseTokenizer(8, max_tokens=16).batch_encode(["A" * 17])
    t = BaseTokenizer(8, max_tokens=16).batch_encode(["A" * 20], truncation=True)
    assert t.seq_lengths.tolist() == [16] and t.n_truncated.tolist() == [4]


@pytest.mark.parametrize("up,phase", [("repeat+conv", "odd"), ("conv_transpose", "odd"), ("conv_transpose", "even")])
def test_pretrained_equals_reference(tmp_path, up, phase):
    ref, folder = _pre(tmp_path, up, phase=phase)
    model = ntkit.load(folder)
    assert isinstance(model, NTv3Model) and (model.config.deconv_upsample_type, model.config.deconv_phase) == (up, phase)
    ids, mask = model.tokenizer.batch_encode(SEQS[:1]).to_torch()
    with torch.no_grad():
        r = ref.core(input_ids=ids, output_hidden_states=True)
        o = model(ids, mask, output_hidden_states=True)
    assert (r["logits"] - o.logits).abs().max() < 1e-5
    assert len(o.all_hidden_states) == len(r["hidden_states"]) == 3 + 2 + 3  # conv, transformer, deconv
    for a, b in zip(r["hidden_states"], o.all_hidden_states):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-5
    # With autograd (training: no in-place shortcuts) the same numbers, and gradients reach every weight.
    trained = model(ids, mask)
    assert (trained.logits - o.logits).abs().max() < 1e-6
    trained.logits.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_any_layer_per_base_equals_the_reference_levels(tmp_path):
    """``repr_layers`` 1..8 of tiny (3 down levels, 2 transformer layers, 3 up levels) are the
    reference's ``hidden_states`` in order, each position repeated over the 2**s bases it stands
    for and cut to the input's length (51 bases: run as 56); 0 is the stem's output, 8 = -1 the output."""
    ref, folder = _pre(tmp_path)
    model = ntkit.load(folder)
    cfg = model.config
    assert cfg.num_levels == 8 and [cfg.level_shift(k) for k in range(9)] == [0, 0, 1, 2, 3, 3, 2, 1, 0]
    assert [model.resolve_layer(k) for k in (0, 4, 8, -1, -9)] == [0, 4, 8, 8, 0]
    for bad in (9, -10):
        with pytest.raises(ValueError, match=r"out of range for .*1\.\.3 \(down levels\), 4\.\.5 \(transformer layers\)"):
            model.resolve_layer(bad)
    padded = model.tokenizer.batch_encode(SEQS[1:2]).to_torch()[0]  # 51 bases and the length rule's 5 N
    L = 51
    ids, mask = padded[:, :L], None  # the model applies the length rule itself
    with torch.no_grad():
        r = ref.core(input_ids=padded, output_hidden_states=True)
        o = model(ids, mask, repr_layers=range(-1, 9), return_logits=False)
        stem = F.gelu(model.stem.conv(model.embed_layer(padded).transpose(1, 2)), approximate="tanh").transpose(1, 2)
    assert not o.all_hidden_states and o.stem_embedding is None  # kept for the read, not returned
    assert torch.equal(o.hidden_states[-1], o.hidden_states[8]) and torch.equal(o.hidden_states[8], o.embedding)
    assert (o.hidden_states[0] - stem[:, :L]).abs().max() < 1e-5
    for k in range(1, 9):
        want = r["hidden_states"][k - 1].repeat_interleave(2 ** cfg.level_shift(k), dim=1)[:, :L]
        got = o.hidden_states[k]
        assert got.shape == (1, L, want.shape[-1]) and (got - want).abs().max() < 1e-5, k
    assert [o.hidden_states[k].shape[-1] for k in range(9)] == [model.layer_width(k) for k in range(9)] == [32, 42, 53, 64, 64, 64, 53, 42, 32]
    # Asking for inner levels changes nothing else: the output as without them (tiled or not).
    with torch.no_grad():
        plain = model(ids, mask, repr_layers=[-1])
    torch.testing.assert_close(plain.hidden_states[-1], o.embedding, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["repeat", "odd", "even"])
@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
def test_polyphase_upsampling_equals_upsample_then_conv(mode, kernel):
    """``upsample_conv_last`` (both output phases as one conv of the input, no zeros or repeats
    formed) equals up-sampling then a "same" conv, values and gradients."""
    torch.manual_seed(kernel)
    x = torch.randn(2, 9, 4, requires_grad=True)  # [B, L, C] channels last
    w = torch.randn(6, 4, kernel, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    xc = x.transpose(1, 2)
    if mode == "repeat":
        up = xc.repeat_interleave(2, dim=-1)
    else:
        up = torch.zeros(2, 4, 18).index_copy(2, torch.arange(int(mode == "odd"), 18, 2), xc)
    want = F.conv1d(up, w, b, padding=kernel // 2).transpose(1, 2)
    got = upsample_conv_last(x, w, b, mode)
    assert got.shape == (2, 18, 6) and (got - want).abs().max() < 1e-5
    g = torch.randn_like(want)
    grads = torch.autograd.grad((want * g).sum(), (x, w, b))
    for a, c in zip(grads, torch.autograd.grad((got * g).sum(), (x, w, b))):
        assert (a - c).abs().max() < 1e-4


def test_adapter_on_a_tower_conv_uses_its_own_forward(tmp_path):
    """A LoRA that peft puts on the towers' convolutions (a custom target list) runs through the
    wrapped module's channels-first forward: identity at initialisation, and with trained weights
    its output equals the merged model's (which runs the channels-last path)."""
    from peft import LoraConfig

    from ntkit.models import adapters

    _, folder = _pre(tmp_path)
    model = ntkit.load(folder)
    ids, mask = model.tokenizer.batch_encode(SEQS[:1]).to_torch()
    with torch.no_grad():
        base = model(ids, mask).logits
        adapters.attach(model, "lora", config=LoraConfig(r=2, target_modules=["conv.conv", "stem.conv"]))
        assert adapters.has_adapter(model)
        assert (model(ids, mask).logits - base).abs().max() < 1e-5
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
        adapted = model(ids, mask).logits
        merged = adapters.merge(model)(ids, mask).logits
    assert (adapted - base).abs().max() > 1e-2 and (adapted - merged).abs().max() < 1e-4


def test_batch_rows_equal_alone(tmp_path):
    _, folder = _pre(tmp_path)
    model = ntkit.load(folder)
    ids, mask = model.tokenizer.batch_encode(SEQS).to_torch()
    assert ids.shape[1] == 144 and (ids == 1).any()
    with torch.no_grad():
        batch = model(ids, mask, output_hidden_states=True)
        for r, s in enumerate(SEQS):
            one = model(model.tokenizer.batch_encode([s]).to_torch()[0])
            n = one.logits.shape[1]
            assert (batch.logits[r, :n] - one.logits[0]).abs().max() < 1e-5


@pytest.mark.parametrize("up,phase", [("repeat+conv", "odd"), ("conv_transpose", "odd"), ("conv_transpose", "even")])
def test_inference_tiles_equal_whole_levels(tmp_path, monkeypatch, up, phase):
    """Inference runs tower levels longer than ``tile_elements`` tile by tile. With tiles of 4-8
    positions (several per level, windows clipped at both ends, rows of a ragged batch ending
    mid-tile) the outputs equal the whole-level forward and, row by row, the reference."""
    from ntkit.models.ntv3 import model as ntv3  # the module: its blocks and the post-op probe

    calls = []  # tiled calls that split a level (UpBlock.forward runs a whole level as one tile)

    def spy(cls, name, factor):
        fn = getattr(cls, name)

        def wrapped(self, x, *args):
            if args[-1] < factor * x.shape[1]:  # rows: fewer than the level's (output) positions
                calls.append(name)
            return fn(self, x, *args)
        monkeypatch.setattr(cls, name, wrapped)

    spy(ntv3.DownBlock, "forward_pooled_tiles", 1)
    spy(ntv3.UpBlock, "forward_tiles", 2)
    ref, folder = _pre(tmp_path, up, phase=phase)
    model = ntkit.load(folder)
    ids, mask = model.tokenizer.batch_encode(SEQS).to_torch()
    with torch.no_grad():
        whole = model(ids, mask)
        assert not calls  # the default tile is far longer than these sequences
        model.tile_elements = 6 * 64  # 8 positions at 32-53 channels, 4 at 64
        tiled = model(ids, mask)
        assert calls.count("forward_pooled_tiles") == 3 and calls.count("forward_tiles") == 3
        # Equal up to the rounding of convolutions blocked differently on shorter inputs.
        assert (tiled.logits - whole.logits).abs().max() < 1e-5
        assert (tiled.embedding - whole.embedding).abs().max() < 1e-5
        for r, s in enumerate(SEQS):
            one, _ = model.tokenizer.batch_encode([s]).to_torch()
            want = ref.core(input_ids=one)["logits"][0]
            assert (tiled.logits[r, : want.shape[0]] - want).abs().max() < 1e-5
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low_tiled = model(ids, mask).logits
            model.tile_elements = 0
            low_whole = model(ids, mask).logits
        assert (low_tiled.float() - low_whole.float()).abs().max() < 1e-2


def test_inference_tiles_posttrained_and_without_skips():
    """Tiles with species conditioning (modulated LayerNorms, gated residuals) and heads on the
    centre crop, and in a U-Net without skip connections (the up level's own output buffer)."""
    import dataclasses

    from ntkit.models.ntv3.model import PRESETS

    models = [build("ntv3-tiny-post"), build(dataclasses.replace(PRESETS["ntv3-tiny"], use_skip_connection=False))]
    for model, kw in zip(models, ({"species": ["mouse", "human", "mouse"]}, {})):
        perturbed(model).eval()
        ids, mask = model.tokenizer.batch_encode(SEQS).to_torch()
        with torch.no_grad():
            whole = model(ids, mask, **kw)
            model.tile_elements = 4 * 64
            tiled = model(ids, mask, **kw)
        for name in ("logits", "embedding", "bigwig_tracks_logits", "bed_tracks_logits", "species_logits"):
            a, b = getattr(whole, name), getattr(tiled, name)
            assert (a is None) == (b is None) and (a is None or (a - b).abs().max() < 1e-5), name


def test_conv_gelu_post_op_and_its_fallback(monkeypatch):
    """On CPU without autograd each tower conv and its GELU run as one oneDNN op (probed once per
    dtype); where a build lacks it, the two ops: the same numbers either way, fp32 and bf16."""
    from ntkit.models.ntv3 import model as ntv3  # the module: its blocks and the post-op probe

    if not torch.backends.mkldnn.is_available() or not ntv3._fused_gelu_conv(torch.float32):
        pytest.skip("this PyTorch build or CPU has no oneDNN conv + GELU post-op")
    # bf16 has the post-op where the CPU has bf16 kernels (AVX-512 BF16 / AMX; not on AVX2): either
    # way the numbers below must agree with the two-op fallback.
    model = perturbed(build("ntv3-tiny")).eval()  # the reference parity tests run the post-op too
    ids, mask = model.tokenizer.batch_encode(SEQS).to_torch()

    def run():
        with torch.no_grad():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model(ids, mask).logits
            return model(ids, mask).logits, low

    fused, fused_low = run()
    monkeypatch.setattr(ntv3, "_fused_gelu_conv", lambda dtype: False)
    plain, plain_low = run()
    assert (fused - plain).abs().max() < 1e-5 and not torch.equal(fused, plain)
    assert fused_low.dtype == torch.bfloat16 and (fused_low.float() - plain_low.float()).abs().max() < 5e-2


def test_posttrained_equals_reference(tmp_path):
    ref, folder = _post(tmp_path)
    model = ntkit.load(folder)
    assert model.config.species == ["human", "mouse", "fly"]
    ids, _ = model.tokenizer.batch_encode(SEQS[:2]).to_torch()
    for species in (torch.tensor([6, 7]), torch.tensor([8, 6])):
        with torch.no_grad():
            r = ref.core(input_ids=ids, species_ids=species, output_hidden_states=True)
            o = model(ids, species=species, output_hidden_states=True)
        assert (r["logits"] - o.logits).abs().max() < 1e-5
        assert (r["bigwig_tracks_logits"] - o.bigwig_tracks_logits).abs().max() < 1e-5
        assert (r["bed_tracks_logits"] - o.bed_tracks_logits).abs().max() < 1e-5
        assert (r["condition_0_logits"] - o.species_logits).abs().max() < 1e-5
        assert (r["embedding"] - o.embedding).abs().max() < 1e-5
        for a, b in zip(r["hidden_states"], o.all_hidden_states):
            assert (a - b).abs().max() < 1e-5
    assert o.bigwig_tracks_logits.shape == (2, int(56 * 0.3), 3) and o.bed_tracks_logits.shape[-2:] == (3, 2)
    with torch.no_grad():
        by_name = model(ids, species=["fly", "human"])
    assert torch.equal(by_name.bigwig_tracks_logits, o.bigwig_tracks_logits)
    with pytest.raises(ValueError, match="unknown species 'cat'"):
        model(ids, species="cat")
    with pytest.raises(ValueError, match="needs species"):
        model(ids)


def test_posttrained_conv_transpose(tmp_path):
    ref, folder = _post(tmp_path, "conv_transpose")
    model = ntkit.load(folder)
    ids, _ = model.tokenizer.batch_encode(SEQS[2:]).to_torch()
    with torch.no_grad():
        r = ref.core(input_ids=ids, species_ids=torch.tensor([7]))
        o = model(ids, species="mouse")
    assert (r["bigwig_tracks_logits"] - o.bigwig_tracks_logits).abs().max() < 1e-5


def test_bf16_within_tolerance(tmp_path):
    """The models were trained in bf16: autocast output stays within 0.1 of fp32 logits on random weights
    (LayerNorms and softmax in fp32)."""
    _, folder = _pre(tmp_path)
    model = ntkit.load(folder)
    ids, mask = model.tokenizer.batch_encode(SEQS[2:]).to_torch()
    with torch.no_grad():
        ref = model(ids, mask).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(ids, mask).logits
        half = ntkit.load(folder, dtype=torch.bfloat16)(ids, mask).logits
    assert low.dtype == torch.bfloat16 and (low.float() - ref).abs().max() < 0.1
    assert (half.float() - ref).abs().max() < 0.1


def test_save_load_round_trip_and_errors(tmp_path):
    model = build("ntv3-tiny-post", seed=3)
    save_folder(model, tmp_path / "m")
    again = ntkit.load(tmp_path / "m")
    ids, _ = model.tokenizer.batch_encode(SEQS).to_torch()
    with torch.no_grad():
        a, b = model(ids, species="mouse"), again(ids, species="mouse")
    # The same computation on the same values, but not bitwise: the reloaded tensors sit at other
    # addresses, and oneDNN/BLAS pick kernels (summation orders) by alignment; 1.2e-7 seen on one CPU.
    torch.testing.assert_close(b.logits, a.logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(b.bigwig_tracks_logits, a.bigwig_tracks_logits, rtol=1e-6, atol=1e-6)
    for r, seq in enumerate(SEQS):  # rows of other lengths: each row's own centre crop, zeros beyond
        with torch.no_grad():
            one = model(model.tokenizer.batch_encode([seq]).to_torch()[0], species="mouse")
        n = one.bigwig_tracks_logits.shape[1]
        assert (a.bigwig_tracks_logits[r, :n] - one.bigwig_tracks_logits[0]).abs().max() < 1e-5
        assert (a.bed_tracks_logits[r, :n] - one.bed_tracks_logits[0]).abs().max() < 1e-5
        assert not a.bigwig_tracks_logits[r, n:].any()
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["model_type"] == "ntv3_posttrained" and cfg["bigwigs_per_species"]["mouse"] == ["m_dnase"]
    # The length rule inside the model: 12 bases are run as 12 + 4 N and trimmed back.
    with torch.no_grad():
        short = model(torch.full((1, 12), 6), species="human", repr_layers=[-1])
        filled = model(torch.tensor([[6] * 12 + [10] * 4]), species="human")
    assert short.logits.shape == (1, 12, 11) and torch.equal(short.logits, filled.logits[:, :12])
    assert torch.equal(short.hidden_states[-1], filled.embedding[:, :12])
    with pytest.raises(ValueError, match="followed only by <pad>"):
        model(torch.tensor([[6] * 4 + [1] * 4 + [6] * 8]), species="human")
    cfg["ffn_embed_dim"] = 64
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="has shape"):
        ntkit.load(tmp_path / "m")


def test_released_config_and_vocab_read():
    """The real NTv3_8M_pre config.json and vocab.json (no weights) describe the ntv3-8m-pre preset."""
    folder = reference_code("ntv3_hf") / "hf_files_NTv3_8M_pre"
    from ntkit.models.ntv3.model import PRESETS, NTv3Config

    cfg = NTv3Config.from_hf(json.loads((folder / "config.json").read_text()))
    BaseTokenizer.check_vocab(folder)
    p = PRESETS["ntv3-8m-pre"]
    assert (cfg.num_downsamples, cfg.embed_dim, cfg.num_layers, cfg.multiple) == (p.num_downsamples, p.embed_dim, p.num_layers, 128)
    with torch.device("meta"):
        n = NTv3Model(cfg).num_parameters()
    assert 7e6 < n < 9e6  # "8M"


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("num_downsamples"), "num_downsamples missing (an NTv3 config.json names"),
    (lambda c: c.update(num_downsamples="three"), "NTv3Config.num_downsamples: 'three' is not an integer"),
    (lambda c: c.update(num_downsamples=-2), "num_downsamples: -2 must be at least 1"),
    (lambda c: c.update(embed_dim=0), "embed_dim: 0 must be at least 1"),
    (lambda c: c.update(layer_norm_eps=-1e-5), "layer_norm_eps: -1e-05 must be positive"),
    (lambda c: c.update(use_skip_connection="yes"), "NTv3Config.use_skip_connection: 'yes' is not true or false"),
    (lambda c: c.update(keep_target_center_fraction=1.5), "keep_target_center_fraction: 1.5 must be in (0, 1]"),
])
def test_config_fields_are_checked_when_read(tmp_path, edit, message):
    """An edited config.json is an error naming the file and the field, never an internal error or a
    count of missing tensors."""
    save_folder(build("ntv3-tiny-post", seed=0), tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    edit(cfg)
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as e:
        ntkit.load(tmp_path / "m")
    assert str(e.value).startswith(f"{tmp_path / 'm' / 'config.json'}: ") and message in str(e.value), str(e.value)


def test_post_trained_backbone_is_conditioned_on_a_species(tmp_path):
    from ntkit.tasks.embed import embed

    model = build("ntv3-tiny-post", seed=3)
    seqs = ["ACGT" * 40, "GATTACA" * 30]
    with pytest.raises(ValueError, match=r"post-trained NTv3, conditioned on a species: give --species \(Python: species=\), one of"):
        embed(model, seqs)
    with pytest.raises(ValueError, match="unknown species 'yeast'"):
        embed(model, seqs, species="yeast")
    got = embed(model, seqs, species="mouse")[-1]
    ids, mask = model.tokenizer.batch_encode(seqs).to_torch()
    with torch.no_grad():
        h = model(ids, mask, species="mouse", return_logits=False).embedding
    for r, s in enumerate(seqs):  # mean over each row's own bases
        torch.testing.assert_close(torch.from_numpy(got[r]), h[r, : len(s)].mean(0), rtol=1e-5, atol=1e-6)
    other = embed(model, seqs, species="human")[-1]
    assert not np.allclose(got, other)  # the conditioning matters
    with pytest.raises(ValueError, match="pre-trained NTv3, not conditioned on a species"):
        build("ntv3-tiny", seed=0).backbone("human")

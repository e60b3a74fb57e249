import numpy as np
import pytest
import torch

import ntkit
from ntkit.io.annotation import Annotation
from ntkit.tasks.attention import attention_enrichment, attention_shares, enrichment_table, plot_heatmaps, region_windows, token_features
from ntkit.io.genome import Genome, write_fasta


def test_token_features_overlap_with_offsets():
    # tokens: <cls>, 6-mer [0,6), 6-mer [6,12), single [12,13), pad
    offsets = np.array([-1, 0, 6, 12, -1])
    spans = np.array([0, 6, 6, 1, 0])
    base = np.zeros((2, 13), dtype=bool)
    base[0, 5:7] = True  # touches both 6-mers
    base[1, 12] = True
    f = token_features(offsets, spans, base)
    np.testing.assert_array_equal(f, [[0, 0], [1, 0], [1, 0], [0, 1], [0, 0]])


def test_attention_share_on_constructed_map_known_answer():
    B, H, T = 1, 2, 5
    attn = torch.zeros(B, H, T, T)
    attn[0, 0, :, 2] = 1.0  # head 1: every query looks at token 2
    attn[0, 1, :, :4] = 0.25  # head 2: uniform over the 4 real tokens
    feats = torch.zeros(B, T, 1)
    feats[0, 2, 0] = 1  # the element covers token 2 only
    key_valid = torch.tensor([[True, True, True, True, False]])
    query_valid = torch.tensor([[False, True, True, True, False]])
    share, cov = attention_shares(attn, feats, key_valid, query_valid)
    assert share[0, 0, 0].item() == pytest.approx(1.0)
    assert share[0, 1, 0].item() == pytest.approx(0.25)  # uniform head: share == coverage
    assert cov[0, 0].item() == pytest.approx(0.25)


def test_enrichment_table_test_and_bh():
    from scipy.stats import false_discovery_control, wilcoxon

    rng = np.random.default_rng(0)
    W = 30
    cov = rng.uniform(0.1, 0.3, size=(W, 1))
    share = np.zeros((W, 1, 2, 1))
    share[:, 0, 0, 0] = np.minimum(cov[:, 0] * 2, 1)  # enriched head
    share[:, 0, 1, 0] = cov[:, 0] + np.where(np.arange(W) % 2, 0.01, -0.01) * rng.uniform(0.5, 1, W)  # null head
    t = enrichment_table(share, cov, ["exon"])
    assert list(t["head"]) == [1, 2]
    assert t.loc[0, "enrichment"] == pytest.approx(share[:, 0, 0, 0].mean() / cov.mean())
    p = [wilcoxon(share[:, 0, h, 0], cov[:, 0], alternative="greater").pvalue for h in (0, 1)]
    np.testing.assert_allclose(t["p_value"], p)
    np.testing.assert_allclose(t["q_value"], false_discovery_control(p, method="bh"))
    assert t["significant"].tolist() == [True, False]


def test_end_to_end_streams_layers(tmp_path):
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), 4000))
    write_fasta(tmp_path / "g.fa", [("7", seq)])
    ann = Annotation({"exon": {"chr7": [(100, 400), (1500, 1700), (3000, 3100)]}})
    model = ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=101), seed=0)
    windows = region_windows(Genome(tmp_path / "g.fa"), ["chr7"], 600, ann)
    assert [w.start for w in windows] == [0, 1200, 3000]  # windows without an exon are left out
    t = attention_enrichment(model, windows, ann)
    assert len(t) == 2 * 4 and t["attention_share"].between(0, 1).all()
    # streamed shares equal those computed from stored maps of the whole batch
    tok = model.tokenizer
    enc = tok.batch_encode([w.sequence for w in windows])
    ids, mask = enc.to_torch()
    with torch.no_grad():
        out = model(ids, mask, need_attentions=True)
    f = torch.as_tensor(np.stack([token_features(enc.offsets[b], enc.spans[b], ann.mask("7", w.start, w.start + 600))
                                  for b, w in enumerate(windows)]))
    s, c = attention_shares(out.attentions[2], f, mask, mask & (ids != tok.cls_id))
    got = t[t.layer == 2].sort_values("head")
    np.testing.assert_allclose(got["attention_share"], s[:, :, 0].mean(0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(got["coverage"], c[:, 0].mean().item(), rtol=1e-5)
    png = plot_heatmaps(t, tmp_path / "h.png")
    assert png.stat().st_size > 1000


def test_ntv3_attention_over_bins_known_answer(tmp_path):
    """NTv3 attends over bins of 2**num_downsamples bases: shares from the model's maps, by hand."""
    from ntkit.models import ntv3

    rng = np.random.default_rng(1)
    seq = "".join(rng.choice(list("ACGT"), 1000))
    write_fasta(tmp_path / "g.fa", [("7", seq)])
    ann = Annotation({"exon": {"7": [(10, 30), (250, 260)]}})
    model = ntv3.build("ntv3-tiny")  # bins of 8 bases
    windows = region_windows(Genome(tmp_path / "g.fa"), ["7:1-300"], 100, ann, require_element=False)
    assert [len(w.sequence) for w in windows] == [100, 100, 100]
    t = attention_enrichment(model, windows, ann, layers=[-1])
    assert sorted(t.layer.unique()) == [2] and len(t) == 4  # the last of 2 blocks, 4 heads
    shares, covs = [], []
    for w in windows:
        ids, _ = model.tokenizer.batch_encode([w.sequence]).to_torch()
        with torch.no_grad():
            a = model(ids, need_attentions=True).attentions[2][0]  # [heads, 13, 13]: 100 bases -> 104 -> 13 bins
        assert a.shape == (4, 13, 13)
        mask = ann.mask("7", w.start, w.start + 100)[0]
        f = np.array([mask[8 * j : 8 * j + 8].any() for j in range(13)], dtype=np.float64)
        shares.append((a.double().numpy() @ f).mean(axis=1))  # per head: mean over queries of the mass on exon bins
        covs.append(f.mean())
    got = t.sort_values("head")
    np.testing.assert_allclose(got["attention_share"], np.mean(shares, axis=0), rtol=1e-5)
    np.testing.assert_allclose(got["coverage"], np.mean(covs), rtol=1e-6)
    with pytest.raises(ValueError, match="transformer blocks 1..2"):
        attention_enrichment(model, windows, ann, layers=[3])

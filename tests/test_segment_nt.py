"""SegmentNT against InstaDeep's HF-layout code: the golden checkpoint and logits it wrote
(../shared/reference/segment_nt_golden: 5 elements, rescaling_factor 2.0)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ntkit
from ntkit.models.checkpoint import CheckpointError
from ntkit.models.segment_nt.model import SegmentNTModel, build, save_folder

from .conftest import REFERENCE


@pytest.fixture(scope="module")
def golden():
    folder = REFERENCE / "segment_nt_golden"
    if not folder.is_dir():
        pytest.skip(f"reference folder not found at {folder}")
    return folder, np.load(folder / "golden.npz")


def test_golden_logits(golden):
    folder, z = golden
    model = ntkit.load(folder)
    assert isinstance(model, SegmentNTModel) and model.config.rescaling_factor == 2.0
    b, ids, mask = model.encode(list(z["seqs"]))
    assert np.array_equal(ids.numpy(), z["ids"])
    with torch.no_grad():
        out = model(ids, mask)
    assert out.logits.shape == (3, 384, 5, 2)
    assert np.abs(out.logits.numpy() - z["logits"]).max() < 1e-5
    p = out.probabilities
    assert torch.allclose(p, out.logits.softmax(-1)[..., 1])


def test_rescaling_changes_rotary_base(golden):
    folder, _ = golden
    model = ntkit.load(folder)
    d = 96 // 6
    assert model.nt.config.rope_theta == pytest.approx(10000 * 2.0 ** (d / (d - 2)))
    ids = model.encode(["ACGTAC" * 40])[1]
    with torch.no_grad():
        a = model(ids).logits
        model.set_rescaling(None)
        b = model(ids).logits
    assert model.nt.config.rope_theta == 10000.0 and not torch.allclose(a, b)


def test_round_trip(golden, tmp_path):
    folder, z = golden
    model = ntkit.load(folder)
    save_folder(model, tmp_path / "m")
    again = ntkit.load(tmp_path / "m")
    ids = torch.as_tensor(z["ids"])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["features"][0] == "protein_coding_gene" and cfg["rescaling_factor"] == 2.0 and cfg["num_layers_head"] == 2


def test_n_and_lengths_in_base_coordinates():
    """N breaks the 6-mer frame (one-base tokens), any length is padded for the U-Net, and per-base
    outputs line up with the input bases; a batch row equals the row alone."""
    model = build("segment-nt-tiny", seed=0)
    seqs = ["ACGTAC" * 50, "ACGTNNACGTTTGCA" * 11 + "AC", "A" * 7]
    probs = model.predict(seqs)
    assert [p.shape for p in probs] == [(300, 14), (167, 14), (7, 14)]
    for s, p in zip(seqs, probs):
        alone = model.predict([s])[0]
        assert np.abs(alone - p).max() < 1e-5
    # Token t's bases are its outputs 6(t-1) .. 6(t-1)+span-1: check the map on a sequence with N.
    b, ids, mask = model.encode([seqs[1]])
    with torch.no_grad():
        raw = model(ids, mask).probabilities[0].numpy()
    t = 5  # "ACGT" before the first N are 4 one-base leftovers (tokens 1-4); token 5 is the N at base 4
    assert b.offsets[0, t] == 4 and b.spans[0, t] == 1
    assert np.allclose(probs[1][4], raw[6 * (t - 1)], atol=1e-6)
    t6 = 7  # after "NN": the 6-mer ACGTTT covers bases 6-11, outputs 6(t-1) .. 6(t-1)+5
    assert b.offsets[0, t6] == 6 and b.spans[0, t6] == 6
    assert np.allclose(probs[1][6:12], raw[6 * (t6 - 1):6 * t6], atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 4"):
        model(ids[:, :-1])


def test_refuses_wrong_head(golden, tmp_path):
    folder, _ = golden
    model = ntkit.load(folder)
    save_folder(model, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["features"] = cfg["features"][:3]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"fc\.(weight|bias) has shape \(60"):
        ntkit.load(tmp_path / "m")


def test_inputs_longer_than_the_context_in_tokens_run_in_pieces():
    """Every N is a token: a window of the model's length in bases holding N runs (contig ends,
    assembly gaps) exceeds its context. It runs as pieces cut at N-run edges, each within the
    context and tokenised as within the whole; a sequence that fits is one piece, unchanged."""
    model = build("segment-nt-tiny", seed=0).eval()
    budget = model.config.context_tokens - 1  # tokens after <cls>, a multiple of 4 here
    rng = np.random.default_rng(0)
    for _ in range(200):
        runs = [("N" * int(rng.integers(1, 3000)) if rng.random() < 0.4 else "".join(rng.choice(list("ACGTacgtRY"), int(rng.integers(1, 4000)))))
                for _ in range(int(rng.integers(1, 6)))]
        q = "".join(runs)
        pieces = model.pieces(q)
        assert pieces[0][0] == 0 and pieces[-1][1] == len(q) and all(b == a2 for (_, b, _), (a2, _, _) in zip(pieces, pieces[1:]))
        for a, b, n in pieces:
            tokens = int(model.tokenizer.batch_encode([q[a:b]], max_length=None).attention_mask.sum())
            assert tokens == n and n - 1 <= budget
    q = "".join(rng.choice(list("ACGT"), 3000))
    assert model.pieces(q) == [(0, 3000, 501)]
    gap = "N" * 2500 + q + "N" * 1700  # a contig end on either side: 4,200 N tokens
    got = model.predict([gap, q])
    manual = np.concatenate([model.predict([gap[a:b]])[0] for a, b, _ in model.pieces(gap)])
    np.testing.assert_allclose(got[0], manual, atol=1e-6)  # pieces of N reuse one forward per length
    assert all(gap[b - 1] == "N" or gap[b] == "N" for _, b, _ in model.pieces(gap)[:-1])  # cuts only at or inside N runs
    assert got[1].shape == (3000, 14)

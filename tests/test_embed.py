import tracemalloc

import numpy as np
import pytest
import torch

import ntkit
from ntkit import Runtime
from ntkit.core.sequence import reverse_complement
from ntkit.io.sequences import read_sequences
from ntkit.models import ntv3
from ntkit.tasks.embed import _owners, embed, embed_to_file, read_embeddings, write_embeddings

RNG = np.random.default_rng(2)


def dna(n):
    return "".join(RNG.choice(list("ACGT"), n))


@pytest.fixture(scope="module")
def model():
    return ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=33), seed=0)  # 192 bp context


def manual_mean(model, seq, layer):
    tok = model.tokenizer
    with torch.no_grad():
        h = model(torch.as_tensor(tok.encode(seq))[None], repr_layers=[layer]).hidden_states[model.resolve_layer(layer)][0]
    return h[1:].mean(0).numpy(), h[0].numpy(), h.numpy()


def test_mean_cls_token_match_single_forward_and_batching(model):
    seqs = [dna(n) for n in (30, 192, 7, 100, 66)]
    for layer in (0, 1, -1):
        # tiny budget: padded batches, and the 192 bp sequence (33 tokens) over the budget, alone
        mean = embed(model, seqs, layers=[layer], runtime=Runtime(batch_tokens=20))[layer]
        cls = embed(model, seqs, layers=[layer], pooling="cls")[layer]
        toks = embed(model, seqs, layers=[layer], pooling="token")[layer]
        for i, s in enumerate(seqs):
            m, c, t = manual_mean(model, s, layer)
            np.testing.assert_allclose(mean[i], m, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(cls[i], c, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(toks[i], t, rtol=1e-4, atol=1e-5)


def test_nucleotide_repeats_kmer_vectors_with_offsets(model):
    s = "ACGTACGTAC" + "N" + "GGA"  # tokens: <cls> ACGTAC GTAC->G T A C singles? see offsets
    nuc = embed(model, [s], pooling="nucleotide")[-1][0]
    tok = embed(model, [s], pooling="token")[-1][0]
    batch = model.tokenizer.batch_encode([s])
    n2t = batch.nucleotide_to_token()[0]
    assert nuc.shape == (len(s), tok.shape[1])
    np.testing.assert_array_equal(nuc, tok[n2t])
    assert (n2t[:6] == 1).all()  # the first 6 bases share the first 6-mer


def test_long_sequences_are_chunked(model):
    s = dna(1000)
    out = embed(model, [s, s[:150]], layers=[-1], overlap_bp=60)[-1]
    # 1000 bp with 192 bp chunks, 60 bp overlap: starts 0,132,...,792 and 808
    starts = list(range(0, 1000 - 192, 132)) + [808]
    vecs, ns = [], []
    for a in starts:
        m, _, t = manual_mean(model, s[a : a + 192], -1)
        vecs.append(m * (t.shape[0] - 1))
        ns.append(t.shape[0] - 1)
    np.testing.assert_allclose(out[0], np.sum(vecs, 0) / np.sum(ns), rtol=1e-4, atol=1e-5)
    nuc = embed(model, [s], pooling="nucleotide", overlap_bp=60)[-1][0]
    assert nuc.shape == (1000, 64) and np.isfinite(nuc).all()
    with pytest.raises(ValueError, match="exceeds the context"):
        embed(model, [s], pooling="token")


def test_n_rich_sequence_fits_by_tokens(model):
    s = "N" * 100 + dna(80)  # 180 bp but 100 + 14 tokens
    out = embed(model, [s], pooling="nucleotide")[-1][0]
    assert out.shape[0] == 180


def test_reverse_complement_average(model):
    s = dna(120)
    both = embed(model, [s], reverse_complement=True)[-1][0]
    f = manual_mean(model, s, -1)[0]
    r = manual_mean(model, reverse_complement(s), -1)[0]
    np.testing.assert_allclose(both, (f + r) / 2, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        embed(model, [s], pooling="token", reverse_complement=True)
    with pytest.raises(ValueError, match="empty"):
        embed(model, [""])


def test_io_roundtrip(model, tmp_path):
    (tmp_path / "x.tsv").write_text("name\tsequence\tlabel\na\tACGTACGT\t1\nb\tGGGCCCAT\t0\n")
    ids, seqs, table = read_sequences(tmp_path / "x.tsv")
    assert ids == ["a", "b"] and list(table["label"]) == [1, 0]
    emb = embed(model, seqs, layers=[1, -1])
    import pandas as pd

    p = write_embeddings(tmp_path / "e.parquet", ids, emb, table)
    t = pd.read_parquet(p)
    assert list(t["id"]) == ["a", "b"] and t.filter(like="L1_").shape == (2, 64) and "label" in t
    rid, back = read_embeddings(p)
    assert rid == ["a", "b"] and sorted(back) == [-1, 1]
    np.testing.assert_array_equal(back[-1], emb[-1])
    nuc = embed(model, seqs, pooling="nucleotide")
    rid, back = read_embeddings(write_embeddings(tmp_path / "n.parquet", ids, nuc))
    assert [x.shape for x in back[-1]] == [(8, 64), (8, 64)]
    np.testing.assert_array_equal(back[-1][1], nuc[-1][1])
    with pytest.raises(ValueError, match="parquet"):
        write_embeddings(tmp_path / "e.npz", ids, emb)


def test_bins_are_segment_means_of_the_nucleotide_vectors(model, tmp_path):
    """bins=3: the means of the three thirds of each sequence's per-nucleotide vectors (both
    strands averaged position by position), concatenated; for a sequence chunked over several
    windows too; a sequence shorter than the bins repeats a base; the parquet job writes 3 x hidden
    columns. The same arithmetic on the same float32 vectors: equal to float32 rounding."""
    seqs = [dna(120), dna(500), "ACG"]
    got = embed(model, seqs, reverse_complement=True, bins=3, overlap_bp=60)[-1]
    nuc = embed(model, seqs, pooling="nucleotide", reverse_complement=True, overlap_bp=60)[-1]
    assert got.shape == (3, 3 * 64)
    for g, h in zip(got[:2], nuc[:2]):
        L = len(h)
        cuts = [0, round(L / 3), round(2 * L / 3), L]  # 120 -> 40 | 40 | 40; 500 -> 167 | 166 | 167
        want = np.concatenate([h[a:b].mean(0) for a, b in zip(cuts[:-1], cuts[1:])])
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)
    h = nuc[2]  # 3 bases, 3 bins: one base each
    np.testing.assert_allclose(got[2], h.reshape(-1), rtol=1e-6)
    assert not np.allclose(got[0][:64], got[0][64:128])  # the thirds differ
    np.testing.assert_allclose(embed(model, ["AC"], bins=3)[-1][0][128:], embed(model, ["AC"], pooling="nucleotide")[-1][0][1], rtol=1e-6)
    for bad in (dict(bins=0), dict(bins=2, pooling="cls"), dict(bins=1.5)):
        with pytest.raises(ValueError, match="bins"):
            embed(model, seqs, **bad)
    (tmp_path / "x.tsv").write_text("name\tsequence\na\t" + seqs[0] + "\nb\t" + seqs[1] + "\n")
    embed_to_file(model, tmp_path / "x.tsv", tmp_path / "b.parquet", bins=3, overlap_bp=60)
    ids, back = read_embeddings(tmp_path / "b.parquet")
    assert ids == ["a", "b"] and back[-1].shape == (2, 192)
    np.testing.assert_allclose(back[-1], embed(model, seqs[:2], bins=3, overlap_bp=60)[-1], rtol=1e-6)
    with pytest.raises(ValueError, match="bins=0"):  # refused before the job starts: nothing written
        embed_to_file(model, tmp_path / "x.tsv", tmp_path / "z.parquet", bins=0)
    assert not list(tmp_path.glob("z.parquet*"))


def frames_by_hand(model, s, phases, bins, overlap_bp):
    """The ``phases`` read from its definition: each strand with p = 0 .. phases-1 bases dropped at
    its 5' end, embedded per nucleotide as a sequence of its own (the reverse strand's vectors, in
    forward coordinates, as twice the two strands' mean minus the forward strand's: chunked as
    ``embed`` chunks the forward strand); each segment's mean over every (base, frame) vector it
    holds, per strand; the strands averaged."""
    L = len(s)
    cuts = np.rint(np.linspace(0, L, bins + 1)).astype(int)
    nuc = lambda x, rc: embed(model, [x], pooling="nucleotide", reverse_complement=rc, overlap_bp=overlap_bp)[-1][0].astype(np.float64)  # noqa: E731
    strands = []
    for strand in (0, 1):
        total, held = np.zeros((L, 64)), np.zeros(L)
        for p in range(phases):
            a, b = (p, L) if strand == 0 else (0, L - p)
            total[a:b] += nuc(s[a:b], False) if strand == 0 else 2 * nuc(s[a:b], True) - nuc(s[a:b], False)
            held[a:b] += 1
        strands.append(np.concatenate([total[x:y].sum(0) / held[x:y].sum() for x, y in zip(cuts[:-1], cuts[1:])]))
    return (strands[0] + strands[1]) / 2


def test_phases_average_the_six_frames_of_each_strand(model, tmp_path):
    """phases=6: every frame of both strands, each base's vector from each frame that holds it,
    pooled per segment; equal to that computed by hand from per-nucleotide embeddings of the
    trimmed strands, for a sequence inside the context and one chunked over several windows (the
    same float32 vectors summed in another order, the reverse strand's through a difference: float32
    rounding, 1e-4 relative). One frame is the old read;
    frames read a sequence as its one-base shift reads it, up to the bases at its ends."""
    seqs = [dna(150), dna(500)]
    for bins in (1, 3):
        got = embed(model, seqs, reverse_complement=True, bins=bins, phases=6, overlap_bp=60)[-1]
        assert got.shape == (2, bins * 64)
        for g, s in zip(got, seqs):
            np.testing.assert_allclose(g, frames_by_hand(model, s, 6, bins, 60), rtol=1e-4, atol=1e-6)
    one = embed(model, seqs, reverse_complement=True, phases=1)[-1]
    np.testing.assert_array_equal(one, embed(model, seqs, reverse_complement=True)[-1])
    # A one-base shift moves every token of a one-frame read to another 6-mer, and a six-frame read
    # by its end tokens only (the shifted copy shares all but two bases): read at the embedding layer
    # (the token vectors, no context), 120 bases (one window in every frame), about 0.05 of the change
    s = "".join(np.random.default_rng(5).choice(list("ACGT"), 121))
    shift = lambda **kw: embed(model, [s[:-1], s[1:]], layers=[0], reverse_complement=True, **kw)[0]  # noqa: E731
    one, six = shift(), shift(phases=6)
    assert np.linalg.norm(six[0] - six[1]) < 0.3 * np.linalg.norm(one[0] - one[1])
    assert embed(model, ["ACG"], phases=6)[-1].shape == (1, 64)  # shorter than the frames: one frame per base
    for bad in (dict(phases=0), dict(phases=7), dict(phases=2, pooling="cls"), dict(phases=2.0)):
        with pytest.raises(ValueError, match="phases"):
            embed(model, seqs, **bad)
    with pytest.raises(ValueError, match=r"phases=2.*\(1\)"):  # one base per token: no frames
        embed(ntv3.build("ntv3-tiny", seed=0), ["ACGT" * 16], phases=2)
    (tmp_path / "x.tsv").write_text("name\tsequence\na\t" + seqs[0] + "\n")
    embed_to_file(model, tmp_path / "x.tsv", tmp_path / "p.parquet", phases=6, overlap_bp=60)
    np.testing.assert_allclose(read_embeddings(tmp_path / "p.parquet")[1][-1], embed(model, seqs[:1], phases=6, overlap_bp=60)[-1], rtol=1e-6)


def test_chunk_owners_partition_the_sequence_by_centrality():
    """Each base's vector comes from the chunk in which it lies furthest from an edge (ties: the
    earlier chunk); every base from exactly one chunk, including three-way overlaps at the end."""
    spans = [(0, 192), (132, 324), (264, 456), (250, 442)]  # the last overlaps the two before it
    own = _owners(spans, 456)
    count = np.zeros(456, int)
    for (a, b), o in zip(spans, own):
        count[a:b] += o
    assert (count == 1).all()
    for p in (0, 150, 161, 162, 300, 455):
        cent = [min(p - a, b - 1 - p) if a <= p < b else -1 for a, b in spans]
        k = int(np.argmax(cent))  # first maximum
        assert own[k][p - spans[k][0]], (p, cent)
    assert own[0][161 - 0] and not own[1][161 - 132]  # 161: 30 from chunk 0's end, 29 from chunk 1's start


def traced_peak(call):
    """(call's result, the peak of numpy's and Python's allocations during it, in bytes)."""
    tracemalloc.start()
    try:
        out = call()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_bins_memory_is_flat_in_sequence_length(model):
    """bins sums each window's owned bases as it comes: embedding a 200 kb sequence allocates a
    small fraction of its L x hidden per-nucleotide floats (numpy allocations, traced)."""
    s = dna(200_000)
    per_base_bytes = len(s) * 64 * 4
    got, peak = traced_peak(lambda: embed(model, [s], bins=3)[-1])
    assert got.shape == (1, 192) and np.isfinite(got).all()
    assert peak < per_base_bytes / 4, (peak, per_base_bytes)


def test_nucleotide_pooling_holds_each_base_once_per_strand(model):
    """Per-nucleotide vectors, both strands: windows hand on only the bases they own, added into one
    array in place. Values: on 1,000 bp in 192 bp chunks, each base is the mean of its owning
    chunk's forward vector and of that chunk's reverse complement's (flipped back). Memory: on
    200 kb the traced numpy peak stays near the two strands' owned vectors plus the output
    (3 x L x hidden floats; ~6x when whole windows were merged strand by strand, then averaged
    into copies)."""
    s = dna(1000)
    spans = [(a, a + 192) for a in list(range(0, 1000 - 192, 132)) + [808]]  # overlap_bp=60, as above
    want = np.zeros((1000, 64), np.float32)
    for (a, b), own in zip(spans, _owners(spans, 1000)):
        f = embed(model, [s[a:b]], pooling="nucleotide")[-1][0]
        r = embed(model, [reverse_complement(s[a:b])], pooling="nucleotide")[-1][0][::-1]
        want[a:b][own] = ((f + r) / 2)[own]
    got = embed(model, [s], pooling="nucleotide", reverse_complement=True, overlap_bp=60)[-1][0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)  # windows batched there, alone here

    long = dna(200_000)
    per_base_bytes = len(long) * 64 * 4
    got, peak = traced_peak(lambda: embed(model, [long], pooling="nucleotide", reverse_complement=True)[-1][0])
    assert got.shape == (len(long), 64) and got.dtype == np.float32 and np.isfinite(got).all()
    assert peak < 3.6 * per_base_bytes, (peak / per_base_bytes)

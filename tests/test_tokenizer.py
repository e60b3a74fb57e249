import numpy as np
import pytest

from ntkit.models.nt.tokenizer import Tokenizer, build_vocab


def random_seqs(n, seed=0, max_len=90, alphabet="ACGTN", p=(0.23, 0.23, 0.23, 0.23, 0.08)):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(alphabet), p=p, size=rng.integers(0, max_len))) for _ in range(n)]


def test_vocab_layouts():
    v1, v2 = build_vocab("v1"), build_vocab("v2")
    assert len(v1) == len(v2) == 4107
    assert v1[:4] == ["<unk>", "<pad>", "<mask>", "<cls>"] and v1[4] == "AAAAAA" and v1[5] == "AAAAAT"
    assert v1[4099] == "GGGGGG" and v1[4100:4105] == list("ATCGN") and v1[4105:] == ["<eos>", "<bos>"]
    assert v2[:6] == ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"] and v2[6] == "AAAAAA"
    assert v2[4101] == "GGGGGG" and v2[4102:] == list("ATCGN")
    assert Tokenizer("v1").embedding_rows == 4105 and Tokenizer("v2").embedding_rows == 4107


def test_exact_ids():
    # ATGCCC = A0 T1 G3 C2 C2 C2 in base 4 = 490; v2 6-mers start at id 6, v1 at 4.
    assert Tokenizer("v2").encode("ATGCCCNAC").tolist() == [3, 496, 4106, 4102, 4104]
    assert Tokenizer("v1").encode("ATGCCCNAC").tolist() == [3, 494, 4104, 4100, 4102]
    # 6-mers restart after each N; 7 bases give one 6-mer and one single base.
    assert Tokenizer("v2").encode("AAAAAAANGGGGGG").tolist() == [3, 6, 4102, 4106, 4101]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_matches_hf_esm_tokenizer(tmp_path, version):
    transformers = pytest.importorskip("transformers")
    tok = Tokenizer(version)
    tok.save_pretrained(tmp_path)
    hf = transformers.EsmTokenizer.from_pretrained(tmp_path)
    n_free = random_seqs(200, seed=3, alphabet="ACGT", p=(0.25,) * 4)  # all lengths mod 6, N-free path
    seqs = random_seqs(400, seed=1) + n_free + ["", "N", "NNNN", "ACGTA", "ACGTAC", "ACGTACG", "A" * 60 + "N" + "C" * 11]
    for s in seqs:
        assert tok.encode(s).tolist() == hf(s)["input_ids"], s
    ref = hf(seqs, padding=True, return_tensors="np")
    ours = tok.batch_encode(seqs, max_length=None)
    np.testing.assert_array_equal(ours.input_ids, ref["input_ids"])
    np.testing.assert_array_equal(ours.attention_mask, ref["attention_mask"].astype(bool))
    np.testing.assert_array_equal(tok.batch_encode([x.encode() for x in n_free], max_length=None).input_ids,
                                  hf(n_free, padding=True, return_tensors="np")["input_ids"])
    ref = hf(seqs[:5], padding="max_length", max_length=40, return_tensors="np")
    ours = tok.batch_encode(seqs[:5], max_length=40, padding="max_length")
    np.testing.assert_array_equal(ours.input_ids, ref["input_ids"])
    # special-token text inside a sequence is that token, and the 6-mer frame restarts after it
    special = ["ACGTAC<mask>ACG", "<mask>", "ACGTACGGT<mask><mask>TTTTTTA", "NNACG<unk>ACGTACGTAC", "GATTACA<eos>"]
    for s in special:
        assert tok.encode(s).tolist() == hf(s)["input_ids"], s
    b = tok.batch_encode(special + seqs[:3], max_length=None)
    np.testing.assert_array_equal(b.input_ids, hf(special + seqs[:3], padding=True, return_tensors="np")["input_ids"])


def test_offsets_reconstruct_sequence():
    tok = Tokenizer("v2")
    seqs = random_seqs(50, seed=2)
    b = tok.batch_encode(seqs, max_length=None)
    for i, s in enumerate(seqs):
        valid = b.spans[i] > 0
        pieces = [s[o : o + n] for o, n in zip(b.offsets[i][valid], b.spans[i][valid])]
        assert "".join(pieces) == s
        assert tok.decode(b.input_ids[i]) == s
    n2t = b.nucleotide_to_token()
    for i, s in enumerate(seqs):
        for pos in range(len(s)):
            t = n2t[i, pos]
            assert b.offsets[i, t] <= pos < b.offsets[i, t] + b.spans[i, t]
        assert (n2t[i, len(s):] == -1).all()


def test_lowercase_and_iupac():
    tok = Tokenizer("v2")
    np.testing.assert_array_equal(tok.encode("acgtacGGTTn"), tok.encode("ACGTACGGTTN"))
    b = tok.batch_encode(["ACGTRYACGTAC", "ACGT"])
    assert b.n_iupac.tolist() == [2, 0]
    np.testing.assert_array_equal(b.input_ids[0, b.attention_mask[0]], tok.encode("ACGTNNACGTAC"))


@pytest.mark.parametrize("bad,pos", [("ACGTX", 4), ("AC GT", 2), ("ACGU", 3), ("AC-G", 2), ("ACGTAC\x00G", 6)])
def test_invalid_characters_raise(bad, pos):
    with pytest.raises(ValueError, match=f"sequence 1: invalid character .* at position {pos}"):
        Tokenizer("v2").batch_encode(["ACGT", bad])


def test_empty_and_overlong():
    tok = Tokenizer("v2", max_tokens=4)
    assert tok.encode("").tolist() == [3]
    with pytest.raises(ValueError, match="over max_length=4"):
        tok.batch_encode(["A" * 30])
    b = tok.batch_encode(["A" * 30, "ACG"], truncation=True)
    assert b.input_ids.shape == (2, 4)
    assert b.n_truncated.tolist() == [12, 0] and b.seq_lengths.tolist() == [18, 3]
    assert Tokenizer("v2").batch_encode(["A" * 30]).input_ids.shape == (1, 6)  # no max_tokens: no limit
    assert len(Tokenizer("v2").batch_encode([]).input_ids) == 0


def test_token_length():
    tok = Tokenizer("v2")
    for n in [0, 1, 5, 6, 7, 5994, 5999]:
        assert tok.token_length(n) == len(tok.encode("C" * n))


def test_save_load_roundtrip(tmp_path):
    Tokenizer("v1").save_pretrained(tmp_path)
    assert Tokenizer.from_pretrained(tmp_path).version == "v1"
    (tmp_path / "vocab.txt").write_text("A\nC\n")
    with pytest.raises(ValueError, match="not an NT v1 or v2 vocabulary"):
        Tokenizer.from_pretrained(tmp_path)


def test_uniform_fast_path_equals_general_path():
    rng = np.random.default_rng(5)
    tok = Tokenizer("v2")
    for L in (6, 29, 600):
        seqs = ["".join(rng.choice(list("ACGTacgt"), L)) for _ in range(7)]
        fast = tok.batch_encode(seqs)  # equal lengths, no N: strided path
        general = tok.batch_encode(seqs + ["ACGTAC" * 200])  # mixed lengths: general path
        w = fast.input_ids.shape[1]
        for name in ("input_ids", "attention_mask", "offsets", "spans"):
            np.testing.assert_array_equal(getattr(fast, name), getattr(general, name)[:7, :w], err_msg=name)
        assert (getattr(general, "input_ids")[:7, w:] == tok.pad_id).all()
        np.testing.assert_array_equal(fast.seq_lengths, general.seq_lengths[:7])
        padded = tok.batch_encode(seqs, max_length=w + 3, padding="max_length")
        np.testing.assert_array_equal(padded.input_ids[:, :w], fast.input_ids)


def test_special_text_offsets_and_errors():
    tok = Tokenizer("v2")
    b = tok.batch_encode(["ACGTACGG<mask>TT"])
    assert b.input_ids[0].tolist() == [tok.cls_id, tok.token_to_id["ACGTAC"], tok.token_to_id["G"], tok.token_to_id["G"],
                                       tok.mask_id, tok.token_to_id["T"], tok.token_to_id["T"]]
    assert b.offsets[0].tolist() == [-1, 0, 6, 7, -1, 8, 9] and b.spans[0].tolist() == [0, 6, 1, 1, 0, 1, 1]
    assert b.seq_lengths.tolist() == [10]  # bases only
    with pytest.raises(ValueError, match="sequence 1: invalid character 'X' at position 10"):
        tok.batch_encode(["ACGT", "AC<mask>GGX"])


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_call_is_transformers_call(tmp_path, version):
    """``tok(...)`` gives what the hub tokenizer (AutoTokenizer of a saved folder) gives for the same
    arguments: one string or a list, padding, truncation at model_max_length or max_length,
    return_tensors; and the same special-token attributes."""
    transformers = pytest.importorskip("transformers")
    tok = Tokenizer(version, max_tokens=20)
    tok.save_pretrained(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    seqs = random_seqs(60, seed=7) + ["", "ACGTA", "A" * 200]
    cases = [dict(), dict(padding=True), dict(padding="longest", truncation=True), dict(truncation=True),
             dict(max_length=9), dict(padding="max_length", max_length=25, truncation=True), dict(add_special_tokens=False)]
    for kw in cases:
        assert dict(tok(seqs, **kw)) == dict(hf(seqs, **kw)), kw
        assert dict(tok(seqs[3], **kw)) == dict(hf(seqs[3], **kw)), kw
    for rt in ("pt", "np"):
        a, b = tok(seqs[:5], padding=True, truncation=True, return_tensors=rt), hf(seqs[:5], padding=True, truncation=True, return_tensors=rt)
        for k in ("input_ids", "attention_mask"):
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
            assert type(a[k]) is type(b[k])
    single = tok("ACGTACGT", return_tensors="pt")
    assert single["input_ids"].shape == hf("ACGTACGT", return_tensors="pt")["input_ids"].shape == (1, 4)
    for name in ("pad_token_id", "unk_token_id", "mask_token_id", "cls_token_id", "model_max_length", "vocab_size", "pad_token",
                 "cls_token", "mask_token"):
        assert getattr(tok, name) == getattr(hf, name), name
    assert tok.convert_ids_to_tokens(tok.convert_tokens_to_ids(["<cls>", "ACGTAC", "N"])) == ["<cls>", "ACGTAC", "N"]
    assert tok.get_vocab() == hf.get_vocab()


def test_unknown_characters_policy(tmp_path):
    """unknown="unk": a non-DNA character is an <unk> token of one base breaking the frame as N;
    ids equal the hub tokenizer's for isolated characters; the default raises."""
    transformers = pytest.importorskip("transformers")
    tok = Tokenizer("v2", unknown="unk")
    tok.save_pretrained(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    rng = np.random.default_rng(2)
    seqs = []
    for _ in range(200):
        s = list(rng.choice(list("ACGTN"), int(rng.integers(1, 80))))
        for p in rng.choice(len(s), size=min(len(s), int(rng.integers(0, 4))), replace=False):
            s[p] = str(rng.choice(list("X-*.1U")))
        seqs.append("".join(s))
    seqs = [s for s in seqs if not any(a in "X-*.1U" and b in "X-*.1U" for a, b in zip(s, s[1:]))]  # isolated: one <unk> each
    for s in seqs:
        assert tok.encode(s).tolist() == hf(s)["input_ids"], s
    b = tok.batch_encode(["ACGTACX-GG"])
    assert b.input_ids[0, 1:].tolist() == [tok.token_to_id["ACGTAC"], tok.unk_id, tok.unk_id, tok.token_to_id["G"], tok.token_to_id["G"]]
    assert b.offsets[0, 1:].tolist() == [0, 6, 7, 8, 9] and b.spans[0, 1:].tolist() == [6, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="invalid character 'X' at position 6"):
        Tokenizer("v2").encode("ACGTACX")
    with pytest.raises(ValueError, match="unknown must be"):
        Tokenizer("v2", unknown="skip")

import subprocess
import shutil

import numpy as np
import pysam
import pytest
import torch

import ntkit
from ntkit.genome import write_fasta
from ntkit.variants import evaluate_scores, read_alleles, score_variants, write_table, write_vcf

WINDOW_TOKENS = 41  # 240 bp windows


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("variants")
    rng = np.random.default_rng(4)
    seq = "".join(rng.choice(list("ACGT"), 3000))
    write_fasta(d / "ref.fa", [("20", seq), ("tiny", seq[:100])])
    pysam.faidx(str(d / "ref.fa"))
    comp = {"A": "T", "C": "G", "G": "C", "T": "A"}
    other = lambda b: "ACGT"[("ACGT".index(b) + 1) % 4]  # noqa: E731
    rows = [
        # pos1, ref, alt, info
        (1000, seq[999], comp[seq[999]], "LAB"),  # SNV
        (1200, seq[1199], f"{comp[seq[1199]]},{other(seq[1199])}", "."),  # multi-allelic: two rows
        (1300, other(seq[1299]), seq[1299], "LAB"),  # REF does not match the FASTA
        (1400, seq[1399], seq[1399] + "GATTACA", "."),  # insertion
        (1500, seq[1499:1510], seq[1499], "LAB"),  # 10 bp deletion
        (1600, seq[1599:1602].lower(), "".join(comp[b] for b in seq[1599:1602]), "."),  # MNV, soft-masked REF
        (3, seq[2], comp[seq[2]], "."),  # near the contig start
        (2999, seq[2998], comp[seq[2998]], "LAB"),  # near the contig end
        (1700, seq[1699], "<DEL>", "."),
        (1800, seq[1799], f"{comp[seq[1799]]},*", "."),
        (1900, seq[1899], "R", "."),  # IUPAC ALT
    ]
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr20,length=3000>", "##contig=<ID=chr7,length=1000>",
             '##INFO=<ID=LAB,Number=0,Type=Flag,Description="test label">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for pos, ref, alt, info in sorted(rows):
        lines.append(f"chr20\t{pos}\tv{pos}\t{ref}\t{alt}\t.\tPASS\t{info}")  # chr20 in the VCF, 20 in the FASTA
    lines.append("chr7\t10\tmissing\tA\tC\t.\tPASS\t.")
    (d / "v.vcf").write_text("\n".join(lines) + "\n")
    model = ntkit.build("nt-v2-tiny", seed=1)
    return d, seq, model


def test_reads_multiallelic_split(case):
    d, seq, _ = case
    alleles, spans = read_alleles(d / "v.vcf", "LAB")
    assert len(spans) == 12 and len(alleles) == 14
    multi = [a for a in alleles if a.pos == 1200]
    assert [a.alt_index for a in multi] == [1, 2]
    assert alleles[0].pos == 3 and alleles[0].label == 0.0 and [a.label for a in alleles if a.pos == 1000] == [1.0]


def test_statuses_and_skips(case):
    d, seq, model = case
    s = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, progress=False)
    t = s.table.set_index(["pos", "alt_index"])
    assert t.loc[(1300, 1), "status"] == "ref_mismatch"
    assert t.loc[(1700, 1), "status"] == "symbolic_alt"
    assert t.loc[(1800, 2), "status"] == "spanning_deletion" and t.loc[(1800, 1), "status"] == "scored"
    assert t.loc[(1900, 1), "status"] == "invalid_allele"
    assert t.loc[(10, 1), "status"] == "contig_not_in_fasta"
    assert dict(s.skipped) == {"ref_mismatch": 1, "symbolic_alt": 1, "spanning_deletion": 1, "invalid_allele": 1, "contig_not_in_fasta": 1}
    scored = s.table[s.table.status == "scored"]
    assert len(scored) == 9
    assert scored[[c for c in s.score_columns if c != "llr"]].notna().all().all()
    assert s.table[s.table.status != "scored"][s.score_columns].isna().all().all()
    # LLR defined for same-length alleles only
    assert np.isfinite(t.loc[(1600, 1), "llr"]) and np.isnan(t.loc[(1400, 1), "llr"]) and np.isnan(t.loc[(1500, 1), "llr"])
    # near the ends the window is shifted into the contig
    w = (WINDOW_TOKENS - 1) * 6
    assert t.loc[(3, 1), "window_start"] == 1 and t.loc[(2999, 1), "window_start"] == 3000 - w + 1
    assert "5 " not in s.summary() and "9/14 alleles scored" in s.summary()


def naive_scores(model, seq, pos1, ref, alt, w_bp):
    """One variant by hand: centred 6-aligned window, masked token, mean embeddings of the last layer."""
    tok = model.tokenizer
    start = pos1 - 1 - (w_bp - len(ref)) // 2 // 6 * 6
    ref_w = seq[start : start + w_bp]
    rel = pos1 - 1 - start
    alt_w = ref_w[:rel] + alt + ref_w[rel + len(ref) :]
    r_ids, a_ids = tok.encode(ref_w), tok.encode(alt_w)
    t = 1 + rel // 6  # the variant starts a 6-mer: token after <cls>
    masked = torch.as_tensor(r_ids)[None].clone()
    masked[0, t] = tok.mask_id
    with torch.no_grad():
        logp = torch.log_softmax(model(masked).logits[0, t], -1)
        hr = model(torch.as_tensor(r_ids)[None], repr_layers=[-1]).hidden_states[model.config.num_layers][0, 1:].mean(0)
        ha = model(torch.as_tensor(a_ids)[None], repr_layers=[-1]).hidden_states[model.config.num_layers][0, 1:].mean(0)
    return {"llr": float(logp[a_ids[t]] - logp[r_ids[t]]), "l1_-1": float((hr - ha).abs().sum()), "l2_-1": float((hr - ha).norm()),
            "cosine_-1": float(torch.nn.functional.cosine_similarity(hr, ha, dim=0)), "dot_-1": float(hr @ ha)}


def test_scores_equal_a_hand_computation(case):
    d, seq, model = case
    s = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, progress=False, batch_size=4)
    t = s.table.set_index(["pos", "alt_index"])
    for pos in (1000, 1200):
        row = t.loc[(pos, 1)]
        ref = naive_scores(model, seq, pos, row["ref"], row["alt"], (WINDOW_TOKENS - 1) * 6)
        for k, v in ref.items():
            assert row[k] == pytest.approx(v, rel=1e-4, abs=1e-5), (pos, k)


def test_batch_size_and_order_invariance(case):
    d, seq, model = case
    a = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, progress=False, batch_size=1, unmasked_llr=True)
    b = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, progress=False, batch_size=32, unmasked_llr=True)
    assert list(a.table["pos"]) == sorted(a.table["pos"][:-1]) + [10]  # VCF order kept
    np.testing.assert_allclose(a.table[a.score_columns].to_numpy(float), b.table[b.score_columns].to_numpy(float), rtol=1e-4, atol=1e-5)


def test_both_strands_is_mean_of_strands(case):
    from ntkit.data import reverse_complement

    d, seq, model = case
    fwd = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, progress=False).table.set_index("pos")
    both = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, progress=False, both_strands=True).table.set_index("pos")
    w = (WINDOW_TOKENS - 1) * 6
    start = 999 - (w - 1) // 2 // 6 * 6
    ref_w = seq[start : start + w]
    alt_w = ref_w[: 999 - start] + fwd.loc[1000, "alt"] + ref_w[1000 - start :]
    tok, L = model.tokenizer, model.config.num_layers
    with torch.no_grad():
        h = [model(torch.as_tensor(tok.encode(reverse_complement(x)))[None], repr_layers=[L]).hidden_states[L][0, 1:].mean(0) for x in (ref_w, alt_w)]
    minus = float((h[0] - h[1]).norm())
    assert both.loc[1000, "l2_-1"] == pytest.approx((fwd.loc[1000, "l2_-1"] + minus) / 2, rel=1e-4)
    assert np.isfinite(both.loc[1000, "llr"]) and both.loc[1000, "llr"] != fwd.loc[1000, "llr"]


def test_annotated_vcf_and_table(case, tmp_path):
    d, seq, model = case
    s = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, label_key="LAB", progress=False)
    out = write_vcf(s, d / "v.vcf", tmp_path / "scored.vcf.gz")
    assert (tmp_path / "scored.vcf.gz.tbi").exists()
    with pysam.VariantFile(str(out)) as vf:
        assert vf.header.info["NT_LLR"].number == "A" and "log P(alt)" in vf.header.info["NT_LLR"].description
        recs = list(vf)
        assert len(recs) == 12
        multi = next(r for r in recs if r.pos == 1200)
        assert multi.info["NT_STATUS"] == ("scored", "scored") and len(multi.info["NT_L2_M1"]) == 2
        star = next(r for r in recs if r.pos == 1800)
        assert star.info["NT_STATUS"] == ("scored", "spanning_deletion") and star.info["NT_L1_M1"][1] is None
        mismatch = next(r for r in recs if r.pos == 1300)
        assert mismatch.info["NT_STATUS"] == ("ref_mismatch",) and "NT_LLR" not in mismatch.info
        assert list(vf.fetch("chr20", 1190, 1210))[0].pos == 1200
    if shutil.which("bcftools"):
        r = subprocess.run(["bcftools", "view", "-H", str(out)], capture_output=True, text=True)
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 12
    tsv = write_table(s, tmp_path / "scores.tsv")
    pq = write_table(s, tmp_path / "scores.parquet")
    import pandas as pd

    assert len(pd.read_csv(tsv, sep="\t")) == 14 and len(pd.read_parquet(pq)) == 14
    ev = evaluate_scores(s).set_index("score")
    from sklearn.metrics import roc_auc_score

    sub = s.table[(s.table.status == "scored")]
    assert ev.loc["l2_-1", "auroc"] == pytest.approx(roc_auc_score(sub["label"], sub["l2_-1"]))
    llr = sub[np.isfinite(sub["llr"])]
    assert ev.loc["llr", "auroc"] == pytest.approx(roc_auc_score(llr["label"], -llr["llr"]))


def test_bad_options(case):
    d, seq, model = case
    with pytest.raises(ValueError, match="window_tokens"):
        score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=5000, progress=False)
    with pytest.raises(ValueError, match="not declared"):
        score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, label_key="NOPE", progress=False)


def test_real_1000g_indels(shared_data):
    vcf = shared_data / "variants/chr20_indels_1000G.vcf.gz"
    model = ntkit.build("nt-v2-tiny", seed=0)
    s = score_variants(model, vcf, shared_data / "genomes/GRCh37_chr20.fa.gz", window_tokens=101, progress=False, batch_size=64)
    assert len(s.table) == 194 and (s.table.status == "scored").all()  # README: every REF matches
    assert np.isfinite(s.table["l2_-1"]).all()

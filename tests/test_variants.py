import subprocess
import shutil

import numpy as np
import pandas as pd
import pysam
import pytest
import torch

import ntkit
from ntkit import Runtime
from ntkit.io.genome import Genome, write_fasta
from ntkit.tasks.variants import default_stride, evaluate_scores, read_alleles, score_variants, tile_start, write_table, write_vcf

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
    s = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS)
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


def naive_scores(model, seq, pos1, ref, alt, w_bp, stride=None):
    """One allele by hand, one forward each: its tile (ntkit.tasks.variants.tile_start), the tokens over
    the variant masked (llr) or not (llr_unmasked), mean embeddings of the last layer."""
    tok = model.tokenizer
    start = tile_start(pos1 - 1, len(ref), len(seq), w_bp, stride or default_stride(w_bp))
    ref_w = seq[start : start + w_bp]
    rel = pos1 - 1 - start
    alt_w = ref_w[:rel] + alt + ref_w[rel + len(ref) :]
    enc = tok.batch_encode([ref_w])
    r_ids, a_ids = tok.encode(ref_w), tok.encode(alt_w)
    t = np.nonzero((enc.spans[0] > 0) & (enc.offsets[0] < rel + len(ref)) & (enc.offsets[0] + enc.spans[0] > rel))[0]
    masked = torch.as_tensor(r_ids)[None].clone()
    masked[0, t] = tok.mask_id
    L = model.config.num_layers
    with torch.no_grad():
        lp_m = torch.log_softmax(model(masked).logits[0, t], -1)
        out_r = model(torch.as_tensor(r_ids)[None], repr_layers=[L])
        lp_u = torch.log_softmax(out_r.logits[0, t], -1)
        hr = out_r.hidden_states[L][0, 1:].mean(0)
        ha = model(torch.as_tensor(a_ids)[None], repr_layers=[L]).hidden_states[L][0, 1:].mean(0)
    r, a = torch.as_tensor(r_ids[t]), torch.as_tensor(a_ids[t])
    ar = torch.arange(len(t))
    return {"llr": float((lp_m[ar, a] - lp_m[ar, r]).sum()), "llr_unmasked": float((lp_u[ar, a] - lp_u[ar, r]).sum()),
            "l1_-1": float((hr - ha).abs().sum()), "l2_-1": float((hr - ha).norm()),
            "cosine_-1": float(torch.nn.functional.cosine_similarity(hr, ha, dim=0)), "dot_-1": float(hr @ ha)}


def test_scores_equal_a_hand_computation(case):
    d, seq, model = case
    s = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, runtime=Runtime(batch_size=4), unmasked_llr=True)
    t = s.table.set_index(["pos", "alt_index"])
    for pos, k in ((1000, 1), (1200, 1), (1200, 2), (1600, 1), (3, 1), (2999, 1)):
        row = t.loc[(pos, k)]
        ref = naive_scores(model, seq, pos, row["ref"], row["alt"], (WINDOW_TOKENS - 1) * 6)
        for key, v in ref.items():
            assert row[key] == pytest.approx(v, rel=1e-4, abs=1e-5), (pos, key)


def test_shared_forwards_equal_per_variant_scores(tmp_path):
    """Dense SNVs (every ALT at every other base of 80 bp, so 9 alleles per 6-mer and many per
    tile): the shared masked / wild-type / reference-embedding forwards give the per-variant scores."""
    rng = np.random.default_rng(7)
    seq = "".join(rng.choice(list("ACGT"), 1500))
    write_fasta(tmp_path / "ref.fa", [("1", seq)])
    pysam.faidx(str(tmp_path / "ref.fa"))
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=1,length=1500>", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for p in range(700, 780, 2):
        lines.append(f"1\t{p}\t.\t{seq[p - 1]}\t{','.join(b for b in 'ACGT' if b != seq[p - 1])}\t.\t.\t.")
    (tmp_path / "snv.vcf").write_text("\n".join(lines) + "\n")
    model = ntkit.build("nt-v2-tiny", seed=3)
    s = score_variants(model, tmp_path / "snv.vcf", tmp_path / "ref.fa", window_tokens=WINDOW_TOKENS, scores=["llr", "llr_unmasked", "embedding"], runtime=Runtime(batch_tokens=300))
    assert (s.table.status == "scored").all() and len(s.table) == 120
    assert s.table["window_start"].nunique() > 1  # several tiles
    for i in range(0, 120, 7):
        row = s.table.iloc[i]
        ref = naive_scores(model, seq, int(row["pos"]), row["ref"], row["alt"], (WINDOW_TOKENS - 1) * 6)
        for key, v in ref.items():
            assert row[key] == pytest.approx(v, rel=1e-4, abs=2e-5), (i, key)


def test_scores_do_not_depend_on_chunking(case):
    d, seq, model = case
    a = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, chunk_size=1)
    b = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, chunk_size=1000)
    pd.testing.assert_frame_equal(a.table, b.table, rtol=1e-5, atol=1e-6)


def test_batch_size_and_order_invariance(case):
    d, seq, model = case
    a = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, runtime=Runtime(batch_size=1), unmasked_llr=True)
    b = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, runtime=Runtime(batch_size=32), unmasked_llr=True)
    assert list(a.table["pos"]) == sorted(a.table["pos"][:-1]) + [10]  # VCF order kept
    np.testing.assert_allclose(a.table[a.score_columns].to_numpy(float), b.table[b.score_columns].to_numpy(float), rtol=1e-4, atol=1e-5)


def test_both_strands_is_mean_of_strands(case):
    from ntkit.core.sequence import reverse_complement

    d, seq, model = case
    fwd = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS).table.set_index("pos")
    both = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, both_strands=True).table.set_index("pos")
    w = (WINDOW_TOKENS - 1) * 6
    start = tile_start(999, 1, len(seq), w, default_stride(w))
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
    s = score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, label_key="LAB")
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
        header = str(vf.header)
        assert "##fileformat=VCFv4.2" in header and '##ntkit=<Version="' in header and 'Fingerprint="model:' in header
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
    assert ev.loc["+l2_-1", "auroc"] == pytest.approx(roc_auc_score(sub["label"], sub["l2_-1"]))
    llr = sub[np.isfinite(sub["llr"])]
    assert ev.loc["-llr", "auroc"] == pytest.approx(roc_auc_score(llr["label"], -llr["llr"]))  # named as oriented


def test_bad_options(case):
    d, seq, model = case
    with pytest.raises(ValueError, match="window_tokens"):
        score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=5000)
    with pytest.raises(ValueError, match="not declared"):
        score_variants(model, d / "v.vcf", d / "ref.fa", window_tokens=WINDOW_TOKENS, label_key="NOPE")


def test_real_1000g_indels(shared_data):
    vcf = shared_data / "variants/chr20_indels_1000G.vcf.gz"
    model = ntkit.build("nt-v2-tiny", seed=0)
    s = score_variants(model, vcf, shared_data / "genomes/GRCh37_chr20.fa.gz", window_tokens=101, runtime=Runtime(batch_size=64))
    assert len(s.table) == 194 and (s.table.status == "scored").all()  # README: every REF matches
    # known answers: every 20th allele's distances equal the one-allele-at-a-time definition
    from ntkit.io.genome import Genome
    from ntkit.tasks.variants import allele_windows, check_allele, iter_records

    genome, tok = Genome(shared_data / "genomes/GRCh37_chr20.fa.gz"), model.tokenizer
    alleles = [a for rec in iter_records(vcf) for a in rec]
    for i in range(0, 194, 20):
        a = alleles[i]
        check_allele(a, genome, 600)
        start, ref_w, alt_w = allele_windows(a, genome, 600, tok=tok)
        assert start + 1 == s.table.loc[i, "window_start"] and len(a.ref) != len(a.alt)
        with torch.no_grad():
            hr = model(torch.as_tensor(tok.encode(ref_w))[None], repr_layers=[-1]).hidden_states[-1][0, 1:].mean(0)
            ha = model(torch.as_tensor(tok.encode(alt_w))[None], repr_layers=[-1]).hidden_states[-1][0, 1:].mean(0)
        assert s.table.loc[i, "l2_-1"] == pytest.approx(float((hr - ha).norm()), rel=1e-4)
        assert s.table.loc[i, "cosine_-1"] == pytest.approx(float(torch.nn.functional.cosine_similarity(hr, ha, dim=0)), rel=1e-5)


def test_tiles_with_ns_are_cut_to_the_context(tmp_path):
    """Every N is a token of its own: a tile with Ns holds fewer bases; it is cut on the right to
    fit the window's tokens, and an allele beyond the cut is skipped as n_rich_window."""
    from ntkit.tasks.variants import allele_windows, check_allele, fit_tokens, iter_records

    rng = np.random.default_rng(5)
    seq = list("".join(rng.choice(list("ACGT"), 1200)))
    seq[9:400:10] = "N" * len(seq[9:400:10])  # 9 bases + N: 5 tokens per 10 bp
    seq = "".join(seq)
    model = ntkit.build("nt-v2-tiny", seed=1)
    tok = model.tokenizer
    assert fit_tokens(tok, seq[:240], 41) == 80 and fit_tokens(tok, seq[600:840], 41) == 240
    write_fasta(tmp_path / "ref.fa", [("1", seq)])
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for pos in (5, 152, 700):
        lines.append(f"1\t{pos}\t.\t{seq[pos - 1]}\t{'ACGT'[('ACGT'.index(seq[pos - 1]) + 1) % 4]}\t.\t.\t.")
    (tmp_path / "v.vcf").write_text("\n".join(lines) + "\n")
    t = score_variants(model, tmp_path / "v.vcf", tmp_path / "ref.fa", window_tokens=WINDOW_TOKENS, scores=["llr_unmasked", "embedding"]).table
    assert list(t["status"]) == ["scored", "n_rich_window", "scored"] and np.isnan(t.loc[1, "l1_-1"])
    genome = Genome(tmp_path / "ref.fa")
    a = next(iter_records(tmp_path / "v.vcf"))[0]
    check_allele(a, genome, 240)
    start, ref_w, alt_w = allele_windows(a, genome, 240, tok=tok)
    assert (start, len(ref_w), len(alt_w)) == (0, 80, 80)
    with torch.no_grad():
        hr = model(torch.as_tensor(tok.encode(ref_w))[None], repr_layers=[-1]).hidden_states[2][0, 1:].mean(0)
        ha = model(torch.as_tensor(tok.encode(alt_w))[None], repr_layers=[-1]).hidden_states[2][0, 1:].mean(0)
    assert t.loc[0, "l1_-1"] == pytest.approx(float((hr - ha).abs().sum()), rel=1e-4)


def test_end_n_runs_are_dropped_from_tiles_and_n_refs_skipped(tmp_path):
    """A tile at a telomere starts at the first base (its leading N run holds no sequence); a REF
    that is N has nothing to compare (n_in_ref)."""
    from ntkit.tasks.variants import allele_windows, check_allele, iter_records

    rng = np.random.default_rng(11)
    seq = "N" * 300 + "".join(rng.choice(list("ACGT"), 900)) + "N" * 200
    write_fasta(tmp_path / "ref.fa", [("1", seq)])
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO", "1\t5\t.\tN\tA\t.\t.\t."]
    for pos in (310, 1190):
        lines.append(f"1\t{pos}\t.\t{seq[pos - 1]}\t{'ACGT'[('ACGT'.index(seq[pos - 1]) + 1) % 4]}\t.\t.\t.")
    (tmp_path / "v.vcf").write_text("\n".join(lines) + "\n")
    model = ntkit.build("nt-v2-tiny", seed=1)
    t = score_variants(model, tmp_path / "v.vcf", tmp_path / "ref.fa", window_tokens=WINDOW_TOKENS, scores=["llr_unmasked", "embedding"]).table
    assert list(t["status"]) == ["n_in_ref", "scored", "scored"]
    assert t.loc[1, "window_start"] == 301 and pd.isna(t.loc[0, "window_start"])  # 1-based first base after the N run
    genome = Genome(tmp_path / "ref.fa")
    tok = model.tokenizer
    for i, a in enumerate(a for rec in iter_records(tmp_path / "v.vcf") for a in rec):
        check_allele(a, genome, 240)
        if a.status != "scored":
            continue
        start, ref_w, alt_w = allele_windows(a, genome, 240, tok=tok)
        assert "N" not in ref_w and start + 1 == t.loc[i, "window_start"]
        with torch.no_grad():
            hr = model(torch.as_tensor(tok.encode(ref_w))[None], repr_layers=[-1]).hidden_states[-1][0, 1:].mean(0)
            ha = model(torch.as_tensor(tok.encode(alt_w))[None], repr_layers=[-1]).hidden_states[-1][0, 1:].mean(0)
        assert t.loc[i, "l1_-1"] == pytest.approx(float((hr - ha).abs().sum()), rel=1e-4)

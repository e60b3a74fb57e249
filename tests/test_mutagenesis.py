import numpy as np
import pandas as pd
import pysam
import pytest

import ntkit
from ntkit.io.genome import write_fasta
from ntkit.io.annotation import read_bed
from ntkit.tasks.mutagenesis import mutagenesis, mutagenesis_to_files
from ntkit.tasks.variants import score_variants

SCORES = ["llr", "llr_unmasked", "embedding"]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("mut")
    rng = np.random.default_rng(11)
    seq = list("".join(rng.choice(list("ACGT"), 2000)))
    seq[105:108] = "NNN"
    seq = "".join(seq)
    write_fasta(d / "ref.fa", [("chr5", seq)])
    pysam.faidx(str(d / "ref.fa"))
    model = ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=41), seed=2)
    return d, seq, model


def test_equals_vcf_scoring_of_the_same_snvs(case, tmp_path):
    d, seq, model = case
    t = mutagenesis(model, d / "ref.fa", ["5:101-130"], scores=SCORES)  # "5" resolves to chr5
    assert len(t) == (30 - 3) * 3 and not t["pos"].between(106, 108).any()  # N bases skipped
    assert list(t["alt"][:3]) == [b for b in "ACGT" if b != seq[100]]
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr5,length=2000>", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"chr5\t{p}\t.\t{r}\t{a}\t.\t.\t." for p, r, a in zip(t["pos"], t["ref"], t["alt"])]
    (tmp_path / "s.vcf").write_text("\n".join(lines) + "\n")
    v = score_variants(model, tmp_path / "s.vcf", d / "ref.fa", scores=SCORES).table
    cols = [c for c in t.columns if c not in ("chrom", "pos", "region", "ref", "alt", "status", "window_start")]
    assert len(cols) == 6 and (t["status"] == "scored").all() and list(t["status"]) == list(v["status"])
    assert set(t["chrom"]) == {"chr5"} and set(t["region"]) == {"5:101-130"}  # the FASTA's contig name; the region as given
    np.testing.assert_allclose(t[cols].to_numpy(), v[cols].to_numpy(), rtol=1e-6, atol=1e-9)


def test_files_tracks_and_heatmap(case, tmp_path):
    d, seq, model = case
    (tmp_path / "r.bed").write_text("track name=x\nchr5\t95\t115\tpromoterA\nchr5\t1990\t2000\n")
    assert [(i.start, i.end) for i in read_bed(tmp_path / "r.bed")] == [(95, 115), (1990, 2000)]
    out = tmp_path / "out"
    res = mutagenesis_to_files(model, d / "ref.fa", out, bed=tmp_path / "r.bed", chunk_size=7)
    assert res["merged"] and res["n_bases_skipped"] == 3 and res["snvs"] == (20 - 3 + 10) * 3
    t = pd.read_parquet(out / "mutagenesis.parquet")
    assert t["llr"].notna().all() and t["llr_unmasked"].notna().all()
    assert list(t.columns[:7]) == ["chrom", "pos", "region", "ref", "alt", "status", "window_start"]
    assert t.groupby("region").size().to_dict() == {"promoterA": (20 - 3) * 3, "chr5:1991-2000": 30}  # BED names carried
    for col in ("llr", "llr_unmasked"):
        bg = pd.read_csv(out / f"{col}.bedgraph", sep="\t", skiprows=1, header=None, names=["chrom", "start", "end", "v"])
        mean = t.groupby("pos", sort=True)[col].mean()
        np.testing.assert_array_equal(bg["start"].to_numpy(), mean.index.to_numpy() - 1)
        np.testing.assert_allclose(bg["v"].to_numpy(), mean.to_numpy(), rtol=1e-5)
    png = (out / "heatmap.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # the same job in 3 shards gives the same table
    for i in range(3):
        mutagenesis_to_files(model, d / "ref.fa", tmp_path / "sh", bed=tmp_path / "r.bed", chunk_size=7, shard=f"{i}/3")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "sh" / "mutagenesis.parquet"), t)


def test_bad_regions(case, tmp_path):
    d, _, model = case
    with pytest.raises(ValueError, match="region chr5:1990-2010 lies outside contig chr5"):
        mutagenesis(model, d / "ref.fa", ["chr5:1990-2010"])
    with pytest.raises(ValueError, match="no region"):
        mutagenesis(model, d / "ref.fa", [])
    (tmp_path / "bad.bed").write_text("chr5\tten\t20\n")
    with pytest.raises(ValueError, match=r"bad.bed:1: start/end are not integers"):
        read_bed(tmp_path / "bad.bed")
    (tmp_path / "bad.bed").write_text("# header\nchr5\t30\t20\n")
    with pytest.raises(ValueError, match=r"bad.bed:2: end 20 before start 30"):
        read_bed(tmp_path / "bad.bed")

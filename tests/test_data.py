import numpy as np
import pysam
import pytest

from ntkit.tasks.pretrain_data import HaplotypeStats, SourceConfig, VariantSource, WindowSampler, apply_variants, reverse_complement, tile_windows
from ntkit.io.genome import Interval
from ntkit.io.genome import Genome, write_fasta

RNG = np.random.default_rng(7)


def random_dna(n: int, rng=RNG) -> str:
    return "".join(rng.choice(list("ACGT"), size=n))


@pytest.fixture
def genome(tmp_path):
    seqs = {"chr1": random_dna(3000), "chr2": random_dna(1000) + "N" * 800 + random_dna(1200)}
    path = tmp_path / "g.fa"
    write_fasta(path, seqs.items())
    return path, seqs


def write_vcf(path, contig, length, rows, samples):
    """rows: (pos1, ref, alt, [GT strings])"""
    lines = ["##fileformat=VCFv4.2", f"##contig=<ID={contig},length={length}>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples)]
    for pos, ref, alt, gts in sorted(rows):
        lines.append(f"{contig}\t{pos}\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t" + "\t".join(gts))
    plain = str(path).removesuffix(".gz")
    with open(plain, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return pysam.tabix_index(plain, preset="vcf", force=True)


def test_interval_parse_is_one_based_and_alias_aware(genome):
    path, seqs = genome
    iv = Interval.parse("chr1:1,001-2,000")
    assert (iv.contig, iv.start, iv.end) == ("chr1", 1000, 2000)
    assert iv.overlaps("1", 1999, 2500) and not iv.overlaps("chr1", 2000, 2500) and not iv.overlaps("chr2", 1500, 1600)
    assert Interval.parse("chr2", Genome(path)) == Interval("chr2", 0, 3000)
    with pytest.raises(ValueError):
        Interval.parse("chr1")
    with pytest.raises(ValueError):
        Interval.parse("chr1:0-10")


def test_apply_variants_snv_insertion_deletion_and_skips():
    ref = "AAAACCCCGGGGTTTT"  # positions 100..115
    stats = HaplotypeStats()
    edits = [(101, "A", "T"), (104, "C", "CGG"), (108, "GGG", "G"), (108, "G", "A"),  # overlaps the deletion
             (113, "A", "C"),  # REF mismatch (it is T)
             (115, "TT", "T")]  # runs past the window
    out = apply_variants(ref, 100, edits, stats)
    assert out == "ATAACGGCCCGGTTTT"
    assert stats.applied == 3
    assert stats.skipped == {"overlaps previous variant": 1, "REF does not match FASTA": 1, "extends past window": 1}


def test_haplotypes_from_phased_vcf(tmp_path):
    seq = random_dna(4000)
    write_fasta(tmp_path / "g.fa", [("20", seq)])
    comp = {"A": "T", "C": "G", "G": "C", "T": "A"}
    rows = [(p + 1, seq[p], comp[seq[p]], ["1|0", "0|0"]) for p in range(25, 4000, 50)]
    rows.append((3, seq[2], "<DEL>", ["1|1", "0|0"]))  # symbolic: skipped and counted
    vcf = write_vcf(tmp_path / "v.vcf.gz", "chr20", 4000, rows, ["S1", "S2"])  # chr20 in VCF, 20 in FASTA
    src = SourceConfig(fasta=str(tmp_path / "g.fa"), vcf=vcf, samples=["S1"])
    sampler = WindowSampler([src], window_bp=600, reverse_complement=False, seed=3)
    seen = set()
    for i in range(40):
        w = sampler(i)
        assert w.haplotype in ("S1:0", "S1:1")
        seen.add(w.haplotype)
        snv = [p for p in range(25, 4000, 50) if w.start <= p < w.start + 600]
        expected = [comp[seq[p]] if w.haplotype == "S1:0" else seq[p] for p in snv]
        assert [w.sequence[p - w.start] for p in snv] == expected
        others = np.ones(600, bool)
        others[[p - w.start for p in snv]] = False
        assert np.array_equal(np.frombuffer(w.sequence.encode(), np.uint8)[others],
                              np.frombuffer(seq[w.start : w.start + 600].encode(), np.uint8)[others])
    assert seen == {"S1:0", "S1:1"}
    vs = sampler.sources[0].variants
    edits = vs.haplotype_edits(vs.fetch("20", 0, 30), "S1", 0)
    assert edits == [(25, seq[25], comp[seq[25]])]
    assert vs.stats.skipped["symbolic or empty ALT"] == 1
    with pytest.raises(ValueError, match="not in"):
        VariantSource(vcf, ["nobody"])


def test_haplotype_indels_keep_window_length(tmp_path):
    seq = random_dna(5000)
    write_fasta(tmp_path / "g.fa", [("1", seq)])
    rows = [(1001, seq[1000:1011], seq[1000], ["1|1"]),  # 10 bp deletion
            (2001, seq[2000], seq[2000] + "GATTACA", ["1|1"])]  # 7 bp insertion
    vcf = write_vcf(tmp_path / "v.vcf.gz", "1", 5000, rows, ["S"])
    sampler = WindowSampler([SourceConfig(str(tmp_path / "g.fa"), vcf=vcf)], window_bp=1500, reverse_complement=False, seed=0)
    for i in range(30):
        w = sampler(i)
        assert len(w.sequence) == 1500
        hap_genome = seq[:1001] + seq[1011:2001] + "GATTACA" + seq[2001:]
        shift = (w.start > 1000) * -10 + (w.start > 2000) * 7
        assert w.sequence == hap_genome[w.start + shift : w.start + shift + 1500]


def test_sampler_is_deterministic_excludes_held_out_and_n_rich(genome):
    path, seqs = genome
    held = [Interval.parse("chr1:1,001-2,000")]
    cfg = [SourceConfig(str(path))]
    a = WindowSampler(cfg, window_bp=300, max_n_fraction=0.05, exclude=held, seed=11)
    b = WindowSampler(cfg, window_bp=300, max_n_fraction=0.05, exclude=held, seed=11)
    strands = set()
    for i in range(300):
        w = a(i)
        assert w == b(i)
        assert not held[0].overlaps(w.contig, w.start, w.start + 300)
        assert w.sequence.count("N") <= 15
        fwd = seqs[w.contig][w.start : w.start + 300]
        assert w.sequence == (fwd if w.strand == "+" else reverse_complement(fwd))
        strands.add(w.strand)
    assert strands == {"+", "-"}
    assert a.rejected["held-out region"] > 0 and a.rejected["N-rich"] > 0
    assert a(0) != WindowSampler(cfg, window_bp=300, exclude=held, seed=12)(0)


def test_multispecies_weights(tmp_path):
    write_fasta(tmp_path / "a.fa", [("a", random_dna(2000))])
    write_fasta(tmp_path / "b.fa", [("b", random_dna(50_000))])
    s = WindowSampler([SourceConfig(str(tmp_path / "a.fa"), weight=3, name="A"), SourceConfig(str(tmp_path / "b.fa"), weight=1, name="B")],
                      window_bp=500, seed=0)
    share = np.mean([s(i).source == "A" for i in range(2000)])
    assert abs(share - 0.75) < 0.03  # weight, not genome length, sets the mixture


def test_tile_windows_covers_region_only(genome):
    path, seqs = genome
    g = Genome(path)
    ws = tile_windows(g, [Interval.parse("chr2:1-3,000")], window_bp=500)
    # windows at 0, 500 (N-free up to 1000); 1000 and 1500 overlap the N block; 2000, 2500
    assert [w.start for w in ws] == [0, 500, 2000, 2500]
    assert all(w.sequence == seqs["chr2"][w.start : w.start + 500] for w in ws)


def test_fetch_padded_reads_n_beyond_the_contig(tmp_path):
    from ntkit.io.genome import Genome, write_fasta

    write_fasta(tmp_path / "g.fa", [("1", "ACGTACGTAC")])
    g = Genome(tmp_path / "g.fa")
    cases = {(-3, 4): "NNNACGT", (2, 6): "GTAC", (8, 14): "ACNNNN", (12, 15): "NNN", (-5, -2): "NNN", (-2, 12): "NNACGTACGTACNN"}
    assert {k: g.fetch_padded("1", *k) for k in cases} == cases

import numpy as np
import pytest

from ntkit.io.annotation import iter_gtf, read_annotation, transcripts
from ntkit.tasks.splice import read_transcripts


def test_read_annotation_formats(tmp_path, shared_data):
    ann = read_annotation(shared_data / "splice/spliceai_annotation_grch37.txt")
    assert ann.types == ["exon", "intron"]
    m = ann.mask("chr1", 69000, 70100)  # OR4F5: single exon 69090-70008
    assert m[0].sum() == 70008 - 69090 and m[1].sum() == 0
    (tmp_path / "a.gtf").write_text(
        'c1\tx\texon\t11\t20\t.\t+\t.\ttranscript_id "t1";\n'
        'c1\tx\texon\t31\t40\t.\t+\t.\ttranscript_id "t1";\n')
    g = read_annotation(tmp_path / "a.gtf")
    assert g.types == ["exon", "intron"]
    np.testing.assert_array_equal(np.nonzero(g.mask("c1", 0, 50)[1])[0], np.arange(20, 30))
    (tmp_path / "b.bed").write_text("chr2\t5\t10\tCTCF\nchr2\t8\t12\tCTCF\n")
    b = read_annotation(tmp_path / "b.bed")
    assert b.iv["CTCF"]["chr2"].tolist() == [[5, 12]]
    with pytest.raises(ValueError, match="not in"):
        read_annotation(tmp_path / "b.bed", types=["enhancer"])


def test_one_gtf_rule_for_splice_and_attention(tmp_path):
    gff = tmp_path / "a.gff3"
    gff.write_text("##gff-version 3\n"
                   "c1\tx\texon\t101\t200\t.\t-\t.\tParent=transcript:t9\n"
                   "c1\tx\texon\t301\t400\t.\t-\t.\tParent=transcript:t9\n"
                   "c1\tx\tgene\t101\t400\t.\t-\t.\tID=g1\n")
    assert transcripts(gff) == {"t9": ("c1", "-", [(100, 200), (300, 400)])}
    tx = read_transcripts(gff)[0]
    assert (tx.name, tx.donors, tx.acceptors) == ("t9", [300], [199])  # minus strand: donor at the downstream exon's start
    ann = read_annotation(gff)
    assert ann.types == ["exon", "gene", "intron"] and ann.iv["intron"]["c1"].tolist() == [[200, 300]]
    (tmp_path / "bad.gtf").write_text("c1\tx\texon\t1\n")
    for reader in (lambda p: list(iter_gtf(p)), read_transcripts, read_annotation):
        with pytest.raises(ValueError, match=r"bad.gtf:1: not a GTF/GFF line"):
            reader(tmp_path / "bad.gtf")

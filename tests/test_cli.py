"""Bad input through the command line: each case exits 2 with one line naming the file and the fix
(no traceback unless --debug), or has a defined, tested behaviour."""

import gzip

import numpy as np
import pandas as pd
import pysam
import pytest

import ntkit
from ntkit.checkpoint import save_checkpoint
from ntkit.cli import main
from ntkit.genome import write_fasta

RNG = np.random.default_rng(3)
SEQ = "".join(RNG.choice(list("ACGT"), 3000))


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    save_checkpoint(ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=41), seed=0), d / "model")
    write_fasta(d / "ref.fa", [("20", SEQ)])
    hdr = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"  # no ##contig lines

    def rec(p, info="."):
        return f"20\t{p}\t.\t{SEQ[p - 1]}\t{'ACGT'[('ACGT'.index(SEQ[p - 1]) + 1) % 4]}\t.\t.\t{info}\n"

    (d / "unsorted.vcf").write_text(hdr + rec(900) + rec(500))
    (d / "undeclared.vcf").write_text(hdr + rec(500) + rec(900, "FOO=1;BAR") + rec(1000))
    (d / "ok.vcf").write_text(hdr + "".join(rec(p) for p in range(10, 2990, 3)))
    pysam.tabix_compress(str(d / "ok.vcf"), str(d / "ok.vcf.gz"))
    (d / "trunc.vcf.gz").write_bytes((d / "ok.vcf.gz").read_bytes()[:1500])
    (d / "empty.fa").write_text("")
    (d / "noheader.fa").write_text("ACGTACGT\n")
    (d / "nul.fa").write_bytes(b">x\nACGT\x00ACGTACGT\n")
    (d / "dup.fa").write_text(">a\nACGTACGTAC\n>a\nGGGGCCCCAA\n>b\nACGT\n")
    pd.DataFrame({"sequence": ["ACGTAC"] * 4, "class": [0, 1, 0, 1]}).to_csv(d / "nolabel.tsv", sep="\t", index=False)
    return d


def fails(capsys, args, match):
    assert main([str(a) for a in args]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("ntkit ")]
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert match in err[0], err[0]
    return err[0]


def test_bad_fasta_inputs(d, tmp_path, capsys):
    embed = ["embed", "--model", d / "model", "--no-progress", "--out", tmp_path / "e.parquet"]
    fails(capsys, embed + [tmp_path / "missing.fa"], "missing.fa")
    fails(capsys, embed + [d / "empty.fa"], "no FASTA records")
    fails(capsys, embed + [d / "noheader.fa"], "noheader.fa:1: not FASTA")
    fails(capsys, embed + [d / "nul.fa"], "nul.fa:2: NUL byte")
    assert not (tmp_path / "e.parquet").exists() and not (tmp_path / "e.parquet.parts").exists()
    # duplicate ids: every record is kept, in input order, under its id
    assert main([str(a) for a in embed + [d / "dup.fa"]]) == 0
    assert pd.read_parquet(tmp_path / "e.parquet")["id"].tolist() == ["a", "a", "b"]


def test_bad_vcf_inputs(d, tmp_path, capsys):
    sv = ["score-variants", "--fasta", d / "ref.fa", "--model", d / "model", "--scores", "llr_unmasked", "--no-progress"]
    fails(capsys, sv + ["--vcf", d / "unsorted.vcf", "--out", tmp_path / "u.tsv"], "not sorted: 20:500 comes after 20:900 (bcftools sort)")
    fails(capsys, sv + ["--vcf", d / "trunc.vcf.gz", "--out", tmp_path / "t.tsv"], "truncated")
    # records with keys or contigs the header does not declare are copied as they are (htslib would abort)
    assert main([str(a) for a in sv + ["--vcf", d / "undeclared.vcf", "--out", tmp_path / "u.vcf.gz"]]) == 0
    with gzip.open(tmp_path / "u.vcf.gz", "rt") as f:
        lines = f.read().splitlines()
    assert "##contig=<ID=20>" in lines
    body = [l.split("\t") for l in lines if not l.startswith("#")]
    assert [b[1] for b in body] == ["500", "900", "1000"] and body[1][7].startswith("FOO=1;BAR;NT_STATUS=scored;NT_LLR_UNMASKED=")


def test_outputs_checked_before_compute(d, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    fails(capsys, ["embed", d / "dup.fa", "--model", d / "model", "--out", tmp_path / "file" / "e.parquet"], "cannot write into")
    fails(capsys, ["score-variants", "--vcf", d / "ok.vcf", "--fasta", d / "ref.fa", "--model", d / "model", "--out", d / "ok.vcf"],
          "is an input file")


def test_convert_never_replaces_a_checkpoint_silently(d, tmp_path, capsys):
    save_checkpoint(ntkit.build("nt-v2-tiny", seed=5), tmp_path / "trained")
    before = (tmp_path / "trained" / "model.safetensors").read_bytes()
    fails(capsys, ["convert", "nt-v2-tiny", tmp_path / "trained"], "already holds a checkpoint (model.safetensors); pass --force")
    assert (tmp_path / "trained" / "model.safetensors").read_bytes() == before
    fails(capsys, ["convert", tmp_path / "trained", tmp_path / "trained", "--force"], "is the input checkpoint")
    assert main(["convert", "nt-v2-tiny", str(tmp_path / "trained"), "--force"]) == 0


def test_label_errors_and_debug(d, capsys):
    fails(capsys, ["finetune", d / "nolabel.tsv", "--model", d / "model", "--out", d / "ad"], "no 'label' column")
    with pytest.raises(ValueError, match="no 'label' column"):
        main(["--debug", "finetune", str(d / "nolabel.tsv"), "--model", str(d / "model"), "--out", str(d / "ad")])


def test_error_lines_for_disks():
    from ntkit.cli import error_line

    assert error_line(OSError(28, "No space left on device", "/x/out.parquet")) == \
        "No space left on device: /x/out.parquet (free space or choose another output folder)"
    assert error_line(PermissionError(13, "Permission denied", "/ro/e.parquet")) == "Permission denied: /ro/e.parquet (choose a writable folder)"
    assert error_line(KeyError("unknown preset 'x'")) == "unknown preset 'x'"

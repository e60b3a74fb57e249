"""Bad input through the command line: each case exits 2 with one line naming the file and the fix
(no traceback unless --debug), or has a defined, tested behaviour."""

import gzip

import numpy as np
import pandas as pd
import pysam
import pytest

import ntkit
from ntkit.models.checkpoint import save_checkpoint
from ntkit.cli import main
from ntkit.io.genome import write_fasta

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
    # a setting the model cannot read: one line, exit 2, nothing written (ntkit embed --phases 7 of a 6-mer model)
    fails(capsys, ["embed", "--model", d / "model", "--no-progress", "--out", tmp_path / "p.parquet", "--phases", "7", d / "dup.fa"],
          "phases=7")
    assert not list(tmp_path.glob("p.parquet*"))


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
    fails(capsys, ["convert", "nt-v2-tiny", tmp_path / "trained", "--random-init"], "already holds a checkpoint (model.safetensors); pass --force")
    assert (tmp_path / "trained" / "model.safetensors").read_bytes() == before
    fails(capsys, ["convert", tmp_path / "trained", tmp_path / "trained", "--force"], "is the input checkpoint")
    assert main(["convert", "nt-v2-tiny", str(tmp_path / "trained"), "--force", "--random-init"]) == 0


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


def test_more_bad_inputs_name_the_file_and_the_fix(d, tmp_path, capsys):
    sv = ["score-variants", "--fasta", d / "ref.fa", "--model", d / "model", "--scores", "llr_unmasked", "--no-progress"]
    hdr = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    (tmp_path / "four.vcf").write_text(hdr + f"20\t10\t.\t{SEQ[9]}\n")
    fails(capsys, sv + ["--vcf", tmp_path / "four.vcf", "--out", tmp_path / "a.tsv"], "four.vcf:3: 4 tab-separated columns, a VCF record has at least 8")
    (tmp_path / "plain.vcf.gz").write_bytes(gzip.compress((hdr + "".join(f"20\t{p}\t.\t{SEQ[p - 1]}\tA\t.\t.\t.\n" for p in range(10, 2900, 7))).encode())[:900])
    fails(capsys, sv + ["--vcf", tmp_path / "plain.vcf.gz", "--out", tmp_path / "b.tsv"], "plain.vcf.gz: Compressed file ended")
    (tmp_path / "ragged.tsv").write_text("sequence\tlabel\nACGTACGTAA\t1\nACGT\t0\textra\n")
    fails(capsys, ["embed", tmp_path / "ragged.tsv", "--model", d / "model", "--out", tmp_path / "e.parquet"], "ragged.tsv: CSV parse error: Expected 2 columns")
    (tmp_path / "noseq.tsv").write_text("x\ty\nACGT\t1\n")
    fails(capsys, ["embed", tmp_path / "noseq.tsv", "--model", d / "model", "--out", tmp_path / "e.parquet"], "--sequence-column")
    assert main(["embed", str(tmp_path / "noseq.tsv"), "--model", str(d / "model"), "--out", str(tmp_path / "e.parquet"),
                 "--sequence-column", "x", "--no-progress"]) == 0  # the option the message names exists
    fails(capsys, ["mutagenesis", "--fasta", d / "ref.fa", "--model", d / "model", "--regions", "20:1-10", "--bed", tmp_path / "noseq.tsv",
                   "--out", tmp_path / "m"], "noseq.tsv:1: not a BED line (chrom, start, end tab-separated)")
    write_fasta(tmp_path / "gap.fa", [("20", "N" * 500 + SEQ[:500])])
    fails(capsys, ["mutagenesis", "--fasta", tmp_path / "gap.fa", "--model", d / "model", "--regions", "20:1-400", "--out", tmp_path / "m"],
          "hold only N bases: nothing to mutate")
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())  # nothing half-written


@pytest.mark.parametrize("option,value,match", [("--batch-tokens", "0", "0 must be at least 1"), ("--batch-tokens", "-1", "must be at least 1"),
                                                ("--batch-tokens", str(10**12), "is more than 67,108,864"),
                                                ("--chunk-size", "0", "must be at least 1"), ("--window-tokens", "0", "must be at least 1")])
def test_numeric_options_are_checked_by_the_parser(d, tmp_path, capsys, option, value, match):
    with pytest.raises(SystemExit) as e:
        main(["score-variants", "--vcf", str(d / "ok.vcf"), "--fasta", str(d / "ref.fa"), "--model", str(d / "model"), "--out",
              str(tmp_path / "o.tsv"), option, value])
    assert e.value.code == 2 and match in capsys.readouterr().err


def test_unreadable_transcript_tables_are_errors(d, tmp_path, capsys):
    from ntkit.tasks.splice import read_transcripts

    good = "G1\t0\tchr20\t+\t100\t900\t300,\t500,\n"
    cases = {"empty.txt": ("", "no transcripts (an empty or truncated file"),
             "prose.txt": ("This is not a table.\nNor is this.\n", "prose.txt:1: 1 tab-separated columns, SpliceAI's transcript table has 8"),
             "six.txt": ("G1\t0\tchr20\t+\t100\t900\n", "six.txt:1: 6 tab-separated columns"),
             "coords.txt": (good + "G2\t0\tchr20\t+\tten\t900\t300,\t500,\n", "coords.txt:2: a coordinate is not an integer")}
    for name, (text, match) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=match.replace("(", r"\(")):
            read_transcripts(tmp_path / name)
    (tmp_path / "ok.txt").write_text(good)
    assert [t.name for t in read_transcripts(tmp_path / "ok.txt")] == ["G1"]


def test_a_symlinked_weight_file_is_read_an_index_naming_outside_is_not(tmp_path):
    """One policy: the files of a checkpoint folder may be links (the Hugging Face cache is made of
    them); the names written inside an index file must stay inside the folder."""
    save_checkpoint(ntkit.build("nt-v2-tiny", seed=2), tmp_path / "real")
    (tmp_path / "linked").mkdir()
    for f in (tmp_path / "real").iterdir():
        (tmp_path / "linked" / f.name).symlink_to(f)
    a, b = ntkit.load(tmp_path / "real"), ntkit.load(tmp_path / "linked")
    assert all((a.state_dict()[k] == v).all() for k, v in b.state_dict().items())


def test_convert_a_preset_needs_random_init_and_marks_the_folder(d, tmp_path, capsys):
    fails(capsys, ["convert", "nt-v2-tiny", tmp_path / "r"], "nt-v2-tiny is a preset: an architecture with random weights")
    assert not (tmp_path / "r").exists()
    assert main(["convert", "ntv3-tiny", str(tmp_path / "r"), "--random-init"]) == 0
    assert "(random weights, marked as such)" in capsys.readouterr().out
    # every job that loads the folder warns; a copy of it stays marked; a trained folder is not
    with pytest.warns(UserWarning, match=r"r: random weights of preset ntv3-tiny \(written by `ntkit convert --random-init`\)"):
        rc = main(["embed", str(d / "dup.fa"), "--model", str(tmp_path / "r"), "--no-progress", "--out", str(tmp_path / "e.parquet")])
    assert rc == 0
    with pytest.warns(UserWarning, match="random weights of preset ntv3-tiny"):
        ntkit.save_checkpoint(ntkit.load(tmp_path / "r"), tmp_path / "copy")
    with pytest.warns(UserWarning, match="random weights of preset ntv3-tiny"):
        ntkit.load(tmp_path / "copy")
    assert main(["convert", str(d / "model"), str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "ntkit_random_init.json").exists()


def test_finetune_reads_the_columns_it_is_told(d, tmp_path, capsys):
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 60)) for _ in range(24)]
    pd.DataFrame({"dna": seqs, "cls": ["a", "b"] * 12}).to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    args = ["finetune", tmp_path / "t.tsv", "--model", d / "model", "--method", "head", "--epochs", "1", "--no-progress"]
    fails(capsys, args + ["--out", tmp_path / "a"], "no sequence column (have ['dna', 'cls']); name it with --sequence-column")
    fails(capsys, args + ["--out", tmp_path / "a", "--sequence-column", "dna"], "no 'label' column")
    assert main([str(a) for a in args + ["--out", tmp_path / "a", "--sequence-column", "dna", "--label-column", "cls"]]) == 0
    assert "(classes ['a', 'b'])" in capsys.readouterr().out


def test_embed_runs_every_family_or_names_what_it_needs(d, tmp_path, capsys):
    from ntkit.models import ntv3, segment_nt

    segment_nt.save_folder(segment_nt.build("segment-nt-tiny", seed=0), tmp_path / "snt")
    ntv3.save_folder(ntv3.build("ntv3-tiny-post", seed=0), tmp_path / "post")
    base = ["embed", d / "dup.fa", "--no-progress"]
    assert main([str(a) for a in base + ["--model", tmp_path / "snt", "--out", tmp_path / "s.parquet"]]) == 0
    t = pd.read_parquet(tmp_path / "s.parquet")
    assert len(t) == 3 and sum(c.startswith("L-1_") for c in t.columns) == 64  # its NT v2 backbone's width
    fails(capsys, base + ["--model", tmp_path / "post", "--out", tmp_path / "p.parquet"],
          "post-trained NTv3, conditioned on a species: give --species")
    assert main([str(a) for a in base + ["--model", tmp_path / "post", "--species", "human", "--out", tmp_path / "p.parquet"]]) == 0
    fails(capsys, base + ["--model", d / "model", "--species", "human", "--out", tmp_path / "q.parquet"],
          "--species human: nt-v2-tiny is not conditioned on a species")


def test_annotate_options_are_checked(tmp_path, capsys):
    from ntkit.models import segment_nt
    from ntkit.io.datasets import SHIPPED

    segment_nt.save_folder(segment_nt.build("segment-nt-tiny", seed=0), tmp_path / "snt")
    base = ["annotate", "--model", tmp_path / "snt", "--fasta", SHIPPED / "genomes/GRCh37_chr20.fa.gz", "--regions", "20:60001-61000",
            "--out", tmp_path / "ann"]
    fails(capsys, base + ["--threshold", "2"], "--threshold 2.0: calls are made on probabilities, give a value in (0, 1]")
    fails(capsys, base + ["--min-length", "0"], "--min-length 0: must be at least 1")
    assert not list(tmp_path.glob("ann/*.bed"))


def test_help_answers_without_torch_and_fast():
    """``ntkit --help`` and every command's help build the parsers from ``ntkit.tasks.options``
    without importing torch (issue 39: under 1 s on an idle machine; the bound here is generous)."""
    import subprocess
    import sys
    import time

    code = ("import sys; from ntkit.cli import build_parser; build_parser(); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'peft', 'pandas', 'pyarrow')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ntkit.cli", "finetune", "--help"], check=True, capture_output=True)
    assert time.perf_counter() - t < 3.0

"""ntkit.tasks.support: every job with every model family, through the command line. Each cell of
the matrix either works (its output written, rows as expected) or is refused by design: exit 2 and
one line naming the job and the kind of model. A family or job without its row fails here."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest

from ntkit import build, get_preset, save_checkpoint
from ntkit.cli import build_parser, main
from ntkit.io.genome import write_fasta
from ntkit.models import ntv3, registry, segment_nt, spliceai
from ntkit.tasks.support import JOBS, KINDS, SUPPORT, kind_of, markdown_table

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(5)
SEQ = "".join(RNG.choice(list("ACGT"), 10_000))
MODELS = {  # folder name -> (model, kind)
    "nt-v1": (lambda: build(get_preset("nt-v1-tiny").replace(max_tokens=200), seed=0), "nt"),
    "nt-v2": (lambda: build(get_preset("nt-v2-tiny").replace(max_tokens=200), seed=0), "nt"),
    "ntv3-pre": (lambda: ntv3.build("ntv3-tiny", seed=0), "ntv3-pre"),
    "ntv3-post": (lambda: ntv3.build("ntv3-tiny-post", seed=0), "ntv3-post"),
    "segment-nt": (lambda: segment_nt.build("segment-nt-tiny", seed=0), "segment_nt"),
    "spliceai": (lambda: spliceai.build("spliceai-tiny", seed=0), "spliceai"),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("matrix")
    write_fasta(d / "g.fa", [("20", SEQ)])
    pysam.faidx(str(d / "g.fa"))
    rows = [(p, SEQ[p - 1], "ACGT"[("ACGT".index(SEQ[p - 1]) + 1) % 4]) for p in (2_500, 5_000, 7_500)]
    (d / "v.vcf").write_text("##fileformat=VCFv4.2\n##contig=<ID=20,length=10000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                             + "".join(f"20\t{p}\t.\t{r}\t{a}\t.\t.\t.\n" for p, r, a in rows))
    seqs = [SEQ[i:i + 150] for i in range(0, 3_600, 150)]
    write_fasta(d / "s.fa", [(f"s{i}", s) for i, s in enumerate(seqs)])
    pd.DataFrame({"sequence": seqs, "label": ["a", "b"] * 12}).to_csv(d / "t.tsv", sep="\t", index=False)
    # one gene over the whole contig (SpliceAI's gene table: 0-based starts, 1-based ends)
    (d / "genes.txt").write_text("#NAME\tCHROM\tSTRAND\tTX_START\tTX_END\tEXON_START\tEXON_END\n"
                                 "G\t20\t+\t0\t10000\t0,5100,\t4900,10000,\n")
    (d / "a.bed").write_text("".join(f"20\t{s}\t{s + 300}\texon\n" for s in range(500, 9_500, 1_000)))
    for name, (make, _) in MODELS.items():
        save_checkpoint(make(), d / name)
    return d


def command(d: Path, name: str, job: str, out: Path) -> tuple[list[str], callable]:
    """The command line of one cell and a check of what it writes."""
    species = ["--species", "human"] if name == "ntv3-post" else ["--transcripts", str(d / "genes.txt")] if name == "spliceai" and \
        job in ("score-variants", "mutagenesis") else []
    m = ["--model", str(d / name), "--no-progress"]
    n = 24

    def rows(path, k=n):
        return lambda: len(pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path, sep="\t")) == k

    if job == "embed":
        return ["embed", str(d / "s.fa"), *m, *species, "--out", str(out / "e.parquet")], rows(out / "e.parquet")
    if job == "probe":
        return ["probe", str(d / "t.tsv"), *m, *species, "--folds", "2"], lambda: True
    if job == "finetune":
        return (["finetune", str(d / "t.tsv"), *m, *species, "--method", "head", "--epochs", "1", "--out", str(out / "ad")],
                lambda: (out / "ad" / "finetune_config.json").exists())
    if job == "predict":  # an adapter to predict with (for a kind that is refused: one of NT's, so that the model is what's refused)
        base = m if SUPPORT[MODELS[name][1]]["predict"] is None else ["--model", str(d / "nt-v2"), "--no-progress"]
        assert main(["--quiet", "finetune", str(d / "t.tsv"), *base, *(species if base is m else []), "--method", "ia3", "--epochs", "1",
                     "--out", str(out / "ad")]) == 0
        return ["predict", str(d / "s.fa"), "--adapter", str(out / "ad"), *m, "--out", str(out / "p.tsv")], rows(out / "p.tsv")
    if job == "benchmark":
        return (["benchmark", str(d / "t.tsv"), *m, *species, "--methods", "kmer", "probe", "random-probe", "--folds", "2",
                 "--out", str(out / "b")], lambda: (out / "b" / "results.csv").exists())
    if job == "score-variants":
        return (["score-variants", "--vcf", str(d / "v.vcf"), "--fasta", str(d / "g.fa"), *m, *species, "--out", str(out / "s.tsv")],
                lambda: len(pd.read_csv(out / "s.tsv", sep="\t")) >= 3)
    if job == "mutagenesis":
        return (["mutagenesis", "--fasta", str(d / "g.fa"), "--regions", "20:5001-5004", *m, *species, "--out", str(out / "mut")],
                lambda: len(pd.read_parquet(out / "mut" / "mutagenesis.parquet")) >= 12)
    if job == "attention":
        return (["attention", "--fasta", str(d / "g.fa"), "--annotation", str(d / "a.bed"), "--regions", "20", "--max-windows", "2",
                 *m, *species, "--out", str(out / "att")], lambda: (out / "att" / "attention_enrichment.csv").exists())
    if job == "annotate":
        return (["annotate", "--fasta", str(d / "g.fa"), "--regions", "20:1-3000", *m, "--out", str(out / "ann")],
                lambda: any((out / "ann").glob("*.bw")))
    if job == "tracks predict":
        return (["tracks", "predict", "--fasta", str(d / "g.fa"), "--regions", "20:1-3000", *m, *(species or ["--species", "human"]),
                 "--window-bp", "1024", "--out", str(out / "tr")], lambda: any((out / "tr").glob("*.bw")))
    raise AssertionError(f"no command for job {job!r}: add its cell here")


@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize("name", list(MODELS))
def test_every_job_with_every_family_works_or_refuses_by_design(data, tmp_path, capsys, name, job):
    kind = MODELS[name][1]
    args, written = command(data, name, job, tmp_path)
    rc = main(["--quiet", *args])
    err = capsys.readouterr().err
    if SUPPORT[kind][job] is None:
        assert rc == 0, err
        assert written(), f"ntkit {job} on {name}: output missing"
    else:
        lines = [l for l in err.splitlines() if l.strip()]
        assert rc == 2 and len(lines) == 1, err
        assert f"ntkit {job} cannot run on {KINDS[kind]}" in lines[0] and "Traceback" not in err, lines[0]


def test_the_matrix_has_a_row_per_family_and_a_cell_per_job():
    kinds = {k for f in registry.families() for k in ({"ntv3-pre", "ntv3-post"} if f.name == "ntv3" else {f.name})}
    assert kinds == set(SUPPORT) == set(KINDS) == {k for _, k in MODELS.values()}
    assert {kind_of(make()) for make, _ in MODELS.values()} == kinds  # each test model is of the kind it claims
    assert all(set(row) == set(JOBS) for row in SUPPORT.values())
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for job in JOBS:  # every job is a command (or sub-command) of the CLI
        head, *rest = job.split()
        assert head in sub.choices and (not rest or rest[0] in next(
            a for a in sub.choices[head]._actions if isinstance(a, argparse._SubParsersAction)).choices), job


def test_the_documentation_shows_the_matrix_and_info_lists_a_models_row(data, capsys):
    page = (ROOT / "docs" / "models" / "index.md").read_text()
    assert markdown_table() in page
    assert main(["info", str(data / "segment-nt")]) == 0
    jobs = json.loads(capsys.readouterr().out)["jobs"]
    assert jobs["embed"] == "yes" and jobs["tracks predict"].startswith("no: tracks predict needs a post-trained NTv3")

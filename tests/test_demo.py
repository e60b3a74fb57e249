"""``ntkit demo`` runs end to end on the data shipped with ntkit (no ../shared, no NTKIT_DATA)."""

import json
import os
import subprocess
import sys

import pytest

from ntkit.io.datasets import SHIPPED
from ntkit.tasks import demo


def test_demo_refuses_bad_bins_before_any_compute(tmp_path):
    with pytest.raises(ValueError, match="bins=0"):
        demo.run(tmp_path / "demo", bins=0)
    assert not (tmp_path / "demo").exists()


def test_demo_runs_on_the_shipped_data(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NTKIT_DATA"}
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "ntkit.cli", "demo", "--minutes", "0.05", "--out", str(out), "--tasks", "promoter_all",
                        "H3K4me3", "--extra-tasks", "tasks/human_enhancers_cohn_test.tsv"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == str(SHIPPED)
    assert summary["variants"].startswith("18/18 alleles scored")  # the 1000 Genomes indels inside the shipped stretches
    assert {row["task"] for row in summary["benchmark"]} == {"promoter_all", "H3K4me3"} and summary["reverse_complement"]
    card = (out / "pretrain/model/README.md").read_text()  # the model card: data, time, figures
    assert "## Held-out masked-LM figures" in card and f"probe {summary['mean_mcc']['probe']:.3f}" in card
    extra = summary["extra_mean_mcc"]["human_enhancers_cohn_test"]  # a further table, probed apart, its own section of the card
    assert set(extra) == {"kmer", "probe", "random-probe"} and all(-1 <= v <= 1 for v in extra.values())
    assert "## Downstream: human_enhancers_cohn_test" in card and f"probe {extra['probe']:.3f}" in card
    assert (out / "benchmark_human_enhancers_cohn_test/table.md").exists()
    for f in ("pretrain/model/model.safetensors", "mlm_vs_baselines.md", "variants.scored.vcf.gz", "variants.scored.vcf.gz.tbi",
              "variants.scores.tsv", "benchmark/table.md", "benchmark/mcc.png"):
        assert (out / f).exists(), f

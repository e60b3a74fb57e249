"""``ntkit.tasks.modelcard``: held-out figures on one scale, the downstream comparison, the card;
and the ``ntv3-small-cpu`` recipe runs (a few steps: its 60-minute figures are a benchmark)."""

import dataclasses

import pytest
import torch

import ntkit
from ntkit.io.datasets import SHIPPED
from ntkit.models import ntv3
from ntkit.tasks.benchmark import load_tasks
from ntkit.tasks.modelcard import downstream, heldout_metrics, model_card, write_model_card
from ntkit.tasks.pretrain import PretrainConfig, pretrain

TASKS = SHIPPED / "tasks" / "nt_downstream_revised_subsample.tsv.gz"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, monkeypatch_module):
    """The shipped recipe, unchanged but for 3 steps of small batches, on the shipped chr20 stretches."""
    monkeypatch_module.setenv("NTKIT_DATA", str(SHIPPED))
    out = tmp_path_factory.mktemp("ntv3-small-cpu")
    cfg = PretrainConfig.from_yaml("ntv3-small-cpu", out_dir=str(out), max_steps=3, batch_size=2, tokens_per_step=1024,
                                   eval_windows=2, progress=False)
    trained = pretrain(cfg)
    return cfg, trained, out


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_the_recipe_trains_the_preset_on_the_shipped_data(small_run):
    cfg, trained, out = small_run
    assert cfg.model == "ntv3-small" and cfg.length_schedule[0] == [0, 256]
    model = ntkit.load(out / "model")
    assert model.config.name == "ntv3-small" and model.num_parameters() == 4_494_011
    assert trained["step"] == 3 and trained["window_tokens"] == 256  # the curriculum's first stage
    assert torch.isfinite(torch.tensor(trained["loss"]))


def _uniform(model):
    """``model`` with its whole LM head zeroed (LayerNorm weights too): every logit 0, every token equally likely."""
    for p in model.lm_head.parameters():
        torch.nn.init.zeros_(p)
    return model


def test_bits_per_base_is_two_for_a_uniform_prediction(small_run):
    # Known value: logits all equal -> loss ln 4 per base (NTv3), ln 4096 per 6-mer (NT), the prediction
    # restricted to the standard tokens: 2 bits per base on either scale; float sums of a few thousand terms: 1e-5.
    cfg, _, out = small_run
    h3 = heldout_metrics(_uniform(ntkit.load(out / "model")), cfg, n_windows=2)
    assert h3["windows"] == 2 and h3["window_bp"] == 1024 and h3["masked"] > 200
    assert h3["bits_per_base"] == pytest.approx(2.0, abs=1e-5) and h3["perplexity"] == pytest.approx(4.0, rel=1e-5)
    nt_cfg = dataclasses.replace(cfg, model="nt-v2-tiny", window_tokens=64, length_schedule=[], model_overrides={})
    hn = heldout_metrics(_uniform(ntkit.build(ntkit.get_preset("nt-v2-tiny"), seed=0)), nt_cfg, n_windows=2)
    assert hn["window_bp"] == 63 * 6 and hn["bits_per_base"] == pytest.approx(2.0, abs=1e-5)
    assert hn["perplexity"] == pytest.approx(4096.0, rel=1e-5)


def test_downstream_and_the_model_card(small_run):
    cfg, trained, out = small_run
    model = ntkit.load(out / "model")
    tasks = load_tasks(TASKS, ["promoter_all"])
    bench = downstream(model, tasks, folds=2, seed=0)
    assert set(bench["mean_mcc"]) == {"kmer", "probe", "random-probe"}
    assert set(bench["results"]["fold"]) == {0, 1} and bench["reverse_complement"]  # the card's default: both strands
    held = heldout_metrics(model, cfg, n_windows=2)
    other = downstream(model, load_tasks(TASKS, ["H3K4me3"]), methods=["kmer"], folds=2, seed=0, reverse_complement=False)
    text = model_card(model, cfg, trained, held, bench, command="ntkit demo --recipe ntv3-small-cpu --minutes 60",
                      extra={"larger_table": other})
    path = write_model_card(out / "model", text)
    card = path.read_text()
    assert card.startswith("---\nlibrary_name: ntkit\n")
    assert "# ntv3-small (4,494,011 parameters), pretrained for" in card and "GRCh37-chr20" in card and "20:55,000,001-63,025,520" in card
    assert f"{int(trained['step']):,} optimizer steps" in card and "ntkit demo --recipe ntv3-small-cpu --minutes 60" in card
    assert f"probe {bench['mean_mcc']['probe']:.3f}" in card and "| promoter_all" in card
    assert bench["bins"] == 3 and "mean embeddings over 3 equal segments of each sequence, concatenated" in card  # the card's default
    assert "Both strands: each base's vector is the mean of the two strands' at that position" in card
    assert f"{held['bits_per_base']:.3f} bits per base" in card and "lr_peak: 0.001" in card
    assert f"## Downstream: larger_table (frozen embeddings)\n\nMean MCC: kmer {other['mean_mcc']['kmer']:.3f}." in card
    assert card.index("| promoter_all") < card.index("## Downstream: larger_table") < card.index("| H3K4me3") < card.index("## Recipe")
    assert ntkit.load(out / "model").num_parameters() == 4_494_011  # the card beside the weights changes nothing
    assert "masking 15% (80/10/10)." in card
    assert "masking 15% (80/10/10) in runs of 6 tokens." in model_card(model, dataclasses.replace(cfg, mask_span=6), trained, held)


def test_presets_of_the_ablation():
    assert ntv3.build("ntv3-mini", seed=0).num_parameters() == 687_069
    assert ntv3.build("ntv3-tiny", seed=0).num_parameters() == 176_797

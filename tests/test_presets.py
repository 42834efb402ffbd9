"""Every paper preset end to end on synthetic data in its own format (tiny model, CPU).

`fineco synth` renders each format's synthetic set; `with_synthetic_data` (`fineco run
--synthetic`) points the preset's datasets at them. The overrides below shrink clips and the
model only; the task, protocol, objective, variants and report of each preset are its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import STAGES
from pipeline.config.loading import load_config
from pipeline.config.runs import with_synthetic_data
from pipeline.runner import run_stages
from pipeline.training.variants import variant_settings

pytestmark = pytest.mark.slow

TINY = [
    "synth.out_dir={artifacts}/synth/tiny",
    "decode.frames_per_second=4",
    "decode.size=32",
    "decode.videos_per_shard=4",
    "decode.workers=1",
    "decode.max_bad_share=0.5",
    "extract.batch_seconds=8",
    "extract.device=cpu",
    "extract.threads=2",
    "model.random_init=true",
    "model.video_layers=1",
    "model.max_video_len=8",
    "model.max_text_tokens=16",
    "finetune.optim.epochs=1",
    "finetune.optim.batch_size=4",
    "finetune.optim.warmup_steps=1",
    "finetune.optim.device=cpu",
    "finetune.optim.checkpoint_every=0",
    "finetune.fineco.k=3",  # below the 8 frames fed, so L1 is active (k >= frames: L1 = 0)
    "evaluate.device=cpu",
    "evaluate.batch_size=16",
]
PAPER_PRESETS = {  # preset -> (task, protocol, the paper table its report shows)
    "youcook2_fineco_256": ("retrieval", "text_to_video", "Table 1: YouCookII"),
    "youcook2_fineco_32": ("retrieval", "text_to_video", "Table 1: YouCookII"),
    "msrvtt_1k": ("retrieval", "text_to_video", "Table 2: MSR-VTT 1k"),
    "msvd": ("retrieval", "multi_sentence", "Table 3: MSVD"),
    "didemo": ("retrieval", "paragraph_to_video", "Table 4: DiDeMo"),
    "msrvtt_qa": ("qa", "qa", "Table 5: MSR-VTT QA"),
    "msrvtt_mc": ("mc", "mc", "Table 8: MSR-VTT multiple choice"),
    "msrvtt_mc_table7": ("mc", "mc", "Table 7: number of positive frames"),
    "msrvtt_qa_table7": ("qa", "qa", "Table 7: number of positive frames"),
    "youcook2_table6": ("retrieval", "text_to_video", "Table 6: positive-frame strategies"),
}


@pytest.fixture
def artifacts(tiny_synth: Path) -> Path:
    """The session root: its tiny synthetic sets in every format (paths: TINY's synth.out_dir)."""
    return tiny_synth


@pytest.mark.parametrize("preset", sorted(PAPER_PRESETS))
def test_preset_runs_every_stage_on_its_synthetic_format(artifacts: Path, preset: str) -> None:
    task, protocol, table = PAPER_PRESETS[preset]
    config = with_synthetic_data(load_config(preset, TINY))
    results = run_stages(config, STAGES, artifacts)
    names = list(variant_settings(config.finetune))
    assert set(names) <= set(results)
    for variant in names:
        metrics = json.loads(results[variant]["evaluate"].output("metrics").read_text())
        assert (metrics["task"], metrics["protocol"]) == (task, protocol)
        if task == "retrieval":
            assert 0.0 <= metrics["plain"]["R@1"] <= 100.0
        else:
            assert 0.0 <= metrics["accuracy"] <= 100.0
        if preset == "didemo":
            assert metrics["moments"]["annotations"] > 0
        selection = results[variant]["finetune"].info.training.selection
        if config.finetune.validation.split:  # its own val split: the best epoch is kept
            assert selection is not None and selection.select == "best"
            criterion = "validation answer accuracy" if task == "qa" else "validation R@1"
            assert selection.criterion == criterion
            epochs = results[variant]["finetune"].output("epochs").read_text().splitlines()
            assert len(epochs) == config.finetune.optim.epochs
            assert ("accuracy" in json.loads(epochs[0])) == (task == "qa")
    report = results["report"]["report"].output("report").read_text()
    assert table in report
    assert "ours: fineco" in report and "ours: baseline" in report
    if task == "qa":
        assert "| epoch | accuracy | selector P@k | random | selector entropy |" in report


def test_multiple_choice_validates_on_held_out_caption_pairs(artifacts: Path) -> None:
    """MC trains on caption pairs: held-out training videos validate by retrieval R@1; its
    other split is the choice test, so naming a split is refused."""
    held_out = ["finetune.validation.holdout_share=0.3", "finetune.validation.select=best"]
    config = with_synthetic_data(load_config("msrvtt_mc", [*TINY, *held_out]))
    results = run_stages(config, ["finetune"], artifacts)
    selection = results["fineco"]["finetune"].info.training.selection
    assert selection is not None and selection.criterion == "validation R@1"
    assert "held out" in selection.validation and selection.validation_pairs > 0
    named = ["finetune.validation.split=test", "finetune.validation.select=best"]
    config = with_synthetic_data(load_config("msrvtt_mc", [*TINY, *named]))
    with pytest.raises(ValueError, match="multiple-choice dataset trains on retrieval pairs"):
        run_stages(config, ["finetune"], artifacts)


def test_pretraining_preset_pretrains_on_the_howto100m_format(artifacts: Path) -> None:
    """With its retrieval-augmented batches: two videos of two clips per batch."""
    config = with_synthetic_data(
        load_config("howto100m_pretrain", [*TINY, "pretrain.optim.epochs=1",
                                           "pretrain.optim.batch_size=4",
                                           "pretrain.clips_per_video=2",
                                           "pretrain.optim.device=cpu"])
    )  # fmt: skip
    assert config.pretrain.batching == "retrieval"
    results = run_stages(config, ["pretrain"], artifacts)
    pretrain = results["pretrain"]["pretrain"]
    assert pretrain.output("weights").is_file()
    assert (Path(pretrain.path) / "checkpoints" / "retrieval" / "epoch-000.json").is_file()


def test_missing_weights_of_a_real_data_preset_fail_before_any_work(tmp_path: Path) -> None:
    """A paper preset without the public weights on disk stops at once, naming the key."""
    from pipeline.video.backbone import WeightsError

    config = load_config("msrvtt_qa", [f"datasets.msrvtt_qa.root={tmp_path}"])
    with pytest.raises(WeightsError, match=r"extract.weights = '\{artifacts\}/weights/s3d"):
        run_stages(config, STAGES, tmp_path / "artifacts")
    config = load_config("msrvtt_qa", ["extract.weights=", "model.bert=minilm"])
    with pytest.raises(FileNotFoundError, match=r"finetune\.init_checkpoint"):
        run_stages(config, STAGES, tmp_path / "artifacts")
    config = load_config("msrvtt_qa", ["extract.weights="])
    with pytest.raises(FileNotFoundError, match=r"model.bert = '\{artifacts\}/weights/bert"):
        run_stages(config, STAGES, tmp_path / "artifacts")
    assert not (tmp_path / "artifacts").exists()  # nothing ran

"""Every paper preset, value by value, against the paper's and VideoCLIP's settings.

Each row names its source: P = the FineCo paper (reference/fineco-paper.txt), V = VideoCLIP's
MMPT configs (reference/videoclip-facts.md), I = ours where both are silent (README, "k where the
paper is silent"). A preset that drifts from its source fails here with the key and the source.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import SweepPoint
from pipeline.config.loading import load_config

WEIGHTS = "{artifacts}/weights"
# What every fine-tuning preset shares (P §4.2; V how2/vtt/youcook configs, videoclip-facts §2).
FINETUNING: dict[str, tuple[Any, str]] = {
    "finetune.optim.lr": (5e-5, "P §4.2, V"),
    "finetune.optim.warmup_steps": (1000, "P §4.2 (V: 122)"),
    "finetune.optim.decay_power": (1.0, "P: polynomial decay"),
    "finetune.optim.decay_steps": (0, "P: decay, horizon unstated (V: 1e6 updates)"),
    "finetune.optim.betas": ((0.9, 0.98), "V: Adam betas"),
    "finetune.optim.weight_decay": (0.0, "V"),
    "finetune.optim.grad_clip": (2.0, "V: clip_norm"),
    "finetune.optim.amp": ("fp16", "P §4.2, V"),
    "finetune.from_pretrain": (False, "V: restore_file = VideoCLIP's checkpoint"),
    "finetune.init_checkpoint": (f"{WEIGHTS}/videoclip/checkpoint_best.pt", "V restore_file"),
    "decode.frames_per_second": (30, "V: 30 fps clips"),
    "decode.size": (224, "V: 224 px"),
    "extract.weights": (f"{WEIGHTS}/s3d_howto100m.pth", "V: S3D-G HowTo100M weights"),
    "model.bert": (f"{WEIGHTS}/bert-base-uncased", "P §4.2: bert-base-uncased"),
    "model.video_layers": (6, "P §4.2, V MMFusionSeparate"),
    "model.max_text_tokens": (61, "V: max_len 96 - max_video_len 32 - 3"),
    "evaluate.batch_size": (256, "V test configs"),
}
RETRIEVAL_32 = {
    "model.max_video_len": (32, "P §4.2, V"),
    "finetune.optim.epochs": (15, "P §4.2"),
    "finetune.objective": ("t2v", "V: text→video NCE"),
    "finetune.fineco.strategy": ("fixed_k", "P §5.2"),
    "finetune.fineco.k": (25, "I: MC's k on the same 32-frame budget"),
}
MC = {
    "datasets.msrvtt_mc.task": ("mc", "P Table 8"),
    "model.max_video_len": (32, "P §4.2, V"),
    "finetune.optim.epochs": (5, "V vttqa (P says 15 for all)"),
    "finetune.optim.batch_size": (128, "V vttqa"),
    "finetune.objective": ("v2t", "V: video→text for multiple choice"),
    "finetune.fineco.k": (25, "P §5.2"),
}
QA = {
    "datasets.msrvtt_qa.task": ("qa", "P Table 5"),
    "datasets.msrvtt_qa.answers": (1500, "P §4.1"),
    "model.max_video_len": (32, "P §4.2, V"),
    "finetune.optim.epochs": (15, "P §4.2"),
    "finetune.optim.batch_size": (128, "I"),
    "finetune.fineco.k": (20, "P Table 7"),
}
YOUCOOK_256 = {
    "model.max_video_len": (256, "P footnote 3"),
    "finetune.optim.epochs": (15, "P §4.2"),
    "finetune.optim.batch_size": (128, "V youcook"),
    "finetune.objective": ("t2v", "V"),
    "finetune.fineco.strategy": ("fixed_k", "P §5.2"),
    "finetune.fineco.k": (50, "P §5.2"),
}
# MSVD, DiDeMo and MSR-VTT-QA have a validation split of their own (YouCookII's and MSR-VTT
# retrieval's is the test).
OWN_VALIDATION = {
    "finetune.validation.split": ("val", "P §4.2: checkpoint chosen on the validation set"),
    "finetune.validation.select": ("best", "I: by validation R@1 or QA accuracy (P: by loss)"),
}
BATCH_I = (128, "I: VideoCLIP's YouCookII batch")
TABLE7_SWEEP = tuple(SweepPoint("fixed_k", k) for k in (1, 5, 10, 15, 20, 25, 32))
PRESETS: dict[str, dict[str, tuple[Any, str]]] = {
    "youcook2_fineco_256": {**FINETUNING, **YOUCOOK_256},
    "youcook2_fineco_32": {
        **FINETUNING,
        **RETRIEVAL_32,
        "finetune.optim.batch_size": (128, "V youcook"),
    },
    "msrvtt_1k": {**FINETUNING, **RETRIEVAL_32, "finetune.optim.batch_size": (224, "V vtt")},
    "msvd": {
        **FINETUNING,
        **RETRIEVAL_32,
        **OWN_VALIDATION,
        "finetune.optim.batch_size": (128, "I"),
    },
    "didemo": {
        **FINETUNING,
        **RETRIEVAL_32,
        **OWN_VALIDATION,
        "finetune.optim.batch_size": (128, "I"),
    },
    "msrvtt_qa": {**FINETUNING, **QA, **OWN_VALIDATION},
    "msrvtt_mc": {**FINETUNING, **MC},
    "youcook2_table6": {
        **FINETUNING,
        **YOUCOOK_256,
        "finetune.sweep": (
            (
                *(SweepPoint("fixed_k", k) for k in (1, 10, 30, 50, 100, 256)),
                SweepPoint("median"),
                *(SweepPoint("ratio", ratio=r) for r in (0.3, 0.5, 0.8)),
                SweepPoint("random", 50),
            ),
            "P Table 6",
        ),
    },
    "msrvtt_qa_table7": {
        **FINETUNING,
        **QA,
        **OWN_VALIDATION,
        "finetune.sweep": (TABLE7_SWEEP, "P Table 7"),
    },
    "msrvtt_mc_table7": {**FINETUNING, **MC, "finetune.sweep": (TABLE7_SWEEP, "P Table 7")},
    "howto100m_pretrain": {
        "model.max_video_len": (32, "V how2"),
        "model.max_text_tokens": (61, "V: max_len 96 - 32 - 3"),
        "model.video_layers": (6, "P §4.2"),
        "pretrain.optim.epochs": (25, "V how2: max_epoch"),
        "pretrain.optim.batch_size": (512, "V how2: 32 videos × 16 clips"),
        "pretrain.optim.lr": (5e-5, "V how2"),
        "pretrain.optim.warmup_steps": (1000, "V how2: warmup_updates"),
        "pretrain.optim.betas": ((0.9, 0.98), "V how2"),
        "pretrain.optim.grad_clip": (2.0, "V how2: clip_norm"),
        "pretrain.optim.amp": ("fp16", "V how2"),
        "pretrain.clips_per_video": (16, "V how2: clip_per_video"),
        "pretrain.min_text_tokens": (8, "V how2: sampled_min_len"),
        "pretrain.max_text_tokens": (64, "V how2: sampled_max_len"),
        "pretrain.max_text_span_s": (256.0, "V how2"),
        "pretrain.min_video_s": (3, "V how2: sampled_video_min_len"),
        "pretrain.max_video_s": (32, "V how2: sampled_video_max_len"),
        "pretrain.batching": ("retrieval", "V how2: retrieval-augmented batches"),
        "pretrain.retrieval_candidates": (64, "V how2: num_cands"),
    },
}


def value_at(config: Any, dotted: str) -> Any:
    value = config
    for part in dotted.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_matches_its_sources(preset: str) -> None:
    config = load_config(preset)
    wrong = [
        f"{key} = {value_at(config, key)!r}, expected {expected!r} ({source})"
        for key, (expected, source) in PRESETS[preset].items()
        if value_at(config, key) != expected
    ]
    assert not wrong, f"{preset}: " + "; ".join(wrong)


def test_every_paper_preset_is_checked() -> None:
    from pipeline.config.loading import preset_names

    assert set(preset_names()) - {"demo", "tiny", "study"} == set(PRESETS)


# A source marks a departure from the paper or MMPT when it is our choice ("I…") or names the
# other source's different value ("(V: 122)", "(P: …)", "P says …").
DEPARTURE = re.compile(r"^I\b|\((?:V|P)\b|\bP says\b")
README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "#### Departures from the paper and MMPT"


def readme_departures() -> dict[str, str]:
    """`config.key` -> the "presets" cell of each row of the README's departures table whose
    first cell names a config key (other rows name departures outside the presets)."""
    section = README.read_text().split(HEADING, 1)[1].split("\n#", 1)[0]
    table = section.split("\n|", 1)[1].split("\n\n", 1)[0]  # from the header row on
    rows: dict[str, str] = {}
    for line in table.splitlines()[2:]:  # after the header and the rule
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        key = re.fullmatch(r"`([a-z_]+(?:\.[a-z_]+)+)`", cells[0])
        if key:
            rows[key.group(1)] = cells[1]
    return rows


def departures() -> set[tuple[str, str, str]]:
    """(preset, key, value) of every preset value whose source marks a departure."""
    return {
        (preset, key, str(value))
        for preset, values in PRESETS.items()
        for key, (value, source) in values.items()
        if DEPARTURE.search(source)
    }


def test_every_departure_is_in_the_readme_table() -> None:
    """Each preset value that departs from the paper or MMPT has a row, with its value, in the
    README's departures table, and the table has no row the presets no longer need."""
    table = readme_departures()
    missing = sorted(
        f"{preset}: {key} = {value}"
        for preset, key, value in departures()
        if key not in table or value not in table[key]
    )
    assert not missing, f"not in README's {HEADING!r} table: " + "; ".join(missing)
    stale = set(table) - {key for _, key, _ in departures()}
    assert not stale, f"rows in README's {HEADING!r} table no preset departs on: {sorted(stale)}"

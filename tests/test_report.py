"""pipeline/reporting/document.py: tables, statements, figures, thumbnails from fake outputs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import h5py
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from pipeline.config import ReportConfig
from pipeline.reporting.document import (
    ReportSources,
    RunSources,
    read_training_log,
    write_report,
)
from pipeline.reporting.figures import strip_window, top_relevant
from storage.shards import FrameShardWriter

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIZE = 32  # thumbnail pixels (S)
FRAMES = 2  # frames per second in the shard (F)
SECONDS = 6  # seconds per video
RED, BLUE = (250, 10, 10), (10, 10, 250)  # first and second frame of every shard second
# pair id → (video id, first second, clip length K); sorted ids: a_0, a_1, b_0
PAIRS = {"b_0": ("vid-b", 0, 6), "a_1": ("vid-a", 2, 3), "a_0": ("vid-a", 0, 5)}
TRUTH = {
    "a_0": {"video_id": "vid-a", "concept": "whisk eggs", "seconds": [1, 2]},
    "a_1": {"video_id": "vid-a", "concept": "fry onions", "seconds": [3]},
    "b_0": {"video_id": "vid-b", "concept": "slice bread", "seconds": [4, 5]},
}


def retrieval(r1: float, r5: float, r10: float, medr: float, meanr: float) -> dict[str, float]:
    return {"R@1": r1, "R@5": r5, "R@10": r10, "MedR": medr, "MeanR": meanr}


def precision(at_k: float) -> dict[str, float]:
    return {"k": 5, "precision_at_k": at_k, "random_expectation": 0.48, "pairs": 40}


METRICS = {
    "fineco": {
        "plain": retrieval(12.5, 40.0, 60.0, 7.0, 9.1),
        "dual_softmax": retrieval(15.0, 42.5, 62.5, 6.0, 8.35),
        "mmpt": retrieval(17.5, 45.0, 65.0, 5.0, 7.4),
        "mmpt_dual_softmax": retrieval(20.0, 47.5, 67.5, 4.5, 6.6),
        "frame_precision": precision(0.61),
    },
    "baseline": {
        "plain": retrieval(10.0, 35.0, 55.0, 8.0, 10.25),
        "dual_softmax": retrieval(11.25, 37.5, 57.5, 7.5, 9.9),
        "mmpt": retrieval(13.75, 38.75, 58.75, 7.0, 9.0),
        "mmpt_dual_softmax": retrieval(14.0, 39.0, 59.0, 6.0, 8.8),
        "frame_precision": precision(0.47),
    },
}


def write_metrics(path: Path, variant: str) -> None:
    common = {"dataset": "youcook2", "split": "val", "queries": 40, "videos": 40}
    document = {"variant": variant, **common, **METRICS[variant], "dual_softmax_temperature": 1.0}
    path.write_text(json.dumps(document))


def write_frame_scores(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pair_ids = list(PAIRS)
    lengths = [PAIRS[p][2] for p in pair_ids]
    logits = rng.standard_normal(sum(lengths)).astype(np.float32)  # (ΣK,)
    offsets = np.cumsum([0, *lengths]).astype(np.int64)  # (V+1,)
    probabilities = np.concatenate(
        [np.exp(row) / np.exp(row).sum() for row in np.split(logits, offsets[1:-1])]
    )
    strings = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as handle:
        handle["pair_ids"] = np.array(pair_ids, dtype=object).astype(strings)
        video_ids = [PAIRS[p][0] for p in pair_ids]
        handle["video_ids"] = np.array(video_ids, dtype=object).astype(strings)
        handle["offsets"] = offsets
        handle["logits"] = logits
        handle["probabilities"] = probabilities.astype(np.float32)
        handle["start_s"] = np.array([PAIRS[p][1] for p in pair_ids], dtype=np.int64)


def write_training_log(path: Path, steps: int, parts: tuple[str, ...]) -> None:
    lines = []
    for step in range(steps):
        values = {name: 2.0 / (1 + step) + 0.1 * index for index, name in enumerate(parts)}
        if "all_positive_share" in parts:
            values["all_positive_share"] = 0.5 * step / steps
        terms = [v for name, v in values.items() if name != "all_positive_share"]
        loss = sum(terms) if terms else 3 / (1 + step)
        lines.append(json.dumps({"step": step, "loss": loss, "lr": 1e-4, "parts": values}))
    path.write_text("\n".join(lines) + "\n")


def write_frame_shard(path: Path) -> None:
    clip = np.zeros((FRAMES, SIZE, SIZE, 3), dtype=np.uint8)  # (F, S, S, 3)
    clip[0], clip[1] = RED, BLUE
    with FrameShardWriter(path, FRAMES, SIZE) as writer:
        for video_id in ("vid-a", "vid-b"):
            writer.begin_video(video_id)
            for _ in range(SECONDS):
                writer.append_second(clip)
            writer.end_video()
        writer.commit()


def write_decode_table(folder: Path, shard: str, video_paths: dict[str, Path]) -> Path:
    rows = [
        {"video_id": v, "path": str(p), "status": "ok", "n_seconds": SECONDS, "shard": shard}
        for v, p in video_paths.items()
    ]
    path = folder / "decode.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> ReportSources:
    runs = []
    for seed, variant in enumerate(("fineco", "baseline")):
        run_folder = tmp_path / variant
        run_folder.mkdir()
        write_metrics(run_folder / "metrics.json", variant)
        write_frame_scores(run_folder / "frame_scores.h5", seed)
        parts = ("l1", "l2", "all_positive_share") if variant == "fineco" else ("l2",)
        write_training_log(run_folder / "metrics.jsonl", 37, parts)
        settings = {"strategy": "fixed_k", "k": 50, "weight": 1.0} if variant == "fineco" else {}
        runs.append(
            RunSources(
                variant,
                run_folder / "metrics.json",
                run_folder / "frame_scores.h5",
                run_folder / "metrics.jsonl",
                fineco={"enabled": variant == "fineco", **settings},
            )
        )
    write_training_log(tmp_path / "pretrain.jsonl", 53, ())
    decode_folder = tmp_path / "decode"
    (decode_folder / "shards").mkdir(parents=True)
    write_frame_shard(decode_folder / "shards" / "frames-00000.h5")
    missing = {v: tmp_path / f"{v}.mp4" for v in ("vid-a", "vid-b")}  # never read: shard kept
    (tmp_path / "ground_truth.json").write_text(json.dumps(TRUTH))
    pairs = pd.DataFrame({"pair_id": list(TRUTH), "text": [f"caption of {p}" for p in TRUTH]})
    pairs.to_parquet(tmp_path / "pairs.parquet", index=False)
    return ReportSources(
        config_name="tiny",
        runs=runs,
        pretrain_metrics=tmp_path / "pretrain.jsonl",
        decode_table=write_decode_table(decode_folder, "shards/frames-00000.h5", missing),
        decode_folder=decode_folder,
        ground_truth=tmp_path / "ground_truth.json",
        s3d_random_init=True,
        dataset="youcook2",
        split="val",
        pairs_table=tmp_path / "pairs.parquet",
        adapter="youcook2",
    )


def read_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    image = matplotlib.image.imread(path)  # (h, w, 4) float in [0, 1]
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    return image


def has_colour(image: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    close = np.abs(image[..., :3] * 255 - np.array(rgb)).max(axis=-1) < 12  # (h, w)
    return int(close.sum()) >= 20


def sections(text: str) -> dict[str, str]:
    """The report's `## ` and `### ` sections by heading (their text up to the next heading)."""
    parts = re.split(r"^#{2,3} (.+)$", text, flags=re.MULTILINE)
    return {heading: body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


def table_rows(section: str) -> list[list[str]]:
    """The body rows of every markdown table in a section, as cells (headers and rules left)."""
    rows: list[list[str]] = []
    for block in re.split(r"\n(?!\|)", section):  # a table: a run of lines starting with "|"
        lines = [line for line in block.splitlines() if line.startswith("|")]
        rows += [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return rows


def precision(section: str) -> dict[str, tuple[float, float, int]]:
    """variant → (precision@k %, random expectation %, pairs) from the precision section."""
    found = re.findall(
        r"\*\*(\w+)\*\*: precision@\d+ = ([\d.]+)% vs ([\d.]+)% random expectation \((\d+)",
        section,
    )
    return {v: (float(p), float(r), int(n)) for v, p, r, n in found}


def test_report_tables_precision_and_figures(inputs: ReportSources, tmp_path: Path) -> None:
    out = tmp_path / "report"
    written = write_report(inputs, ReportConfig(strip_pairs=2, strip_seconds=24), out)
    assert written == ["report.md", "loss_curves.png", "strip-01.png", "strip-02.png"]
    text = (out / "report.md").read_text()
    parts = sections(text)
    assert re.search(r"^# FineCo report — tiny \(\d{4}-\d{2}-\d{2}\)$", text, re.MULTILINE)
    assert "randomly initialised" in text.split("## ")[0]  # the backbone, before any result
    results = next(body for heading, body in parts.items() if "Table 1: YouCookII" in heading)
    published, ours = results.split("**Ours**")
    assert table_rows(published) == [  # the paper's rows in a table of their own
        ["VideoCLIP (paper)", "no", "32.2", "62.6", "75.0", "3.0"],
        ["FineCo (paper)", "no", "35.7", "65.9", "77.5", "3.0"],
        ["FineCo (paper)", "yes", "37.6", "66.6", "78.2", "3.0"],
    ]
    assert "youcook2 val, 40 queries over 40 videos; chance R@1 2.5 %" in ours
    fixed = "yes, T=1 (fixed)"
    assert table_rows(ours) == [  # with and without DualSoftmax, R@1's Wilson interval
        ["ours: fineco (fixed_k, k=50)", "no", "12.5", "40.0", "60.0", "7.0", "5.5–26.1"],
        ["ours: fineco (fixed_k, k=50)", fixed, "15.0", "42.5", "62.5", "6.0", "7.1–29.1"],
        ["ours: baseline (VideoCLIP, no L1)", "no", "10.0", "35.0", "55.0", "8.0", "4.0–23.1"],
        ["ours: baseline (VideoCLIP, no L1)", fixed, "11.3", "37.5", "57.5", "7.5", "4.7–24.6"],
    ]  # 11.25 halves up
    mmpt = table_rows(parts["MMPT-compatible numbers"])
    assert mmpt[0] == ["ours: fineco (fixed_k, k=50)", "no", "17.5", "45.0", "65.0", "5.0"]
    assert mmpt[-1] == [
        "ours: baseline (VideoCLIP, no L1)",
        "yes, T=1 (fixed)",
        "14.0",
        "39.0",
        "59.0",
        "6.0",
    ]
    scores = parts["Frame-selector precision"]
    assert precision(scores) == {"fineco": (61.0, 48.0, 40), "baseline": (47.0, 48.0, 40)}
    assert "untrained" in scores.split("**baseline**")[1]  # the baseline's selector: chance
    assert "placeholder" not in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == ["loss_curves.png", "strip-01.png", "strip-02.png"]
    for link in links:
        read_png(out / link)
    assert not list(out.glob(".*tmp*"))


def test_strips_show_first_frames_of_the_sorted_first_pairs(
    inputs: ReportSources, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    write_report(inputs, ReportConfig(strip_pairs=3, strip_seconds=4), out)
    text = (out / "report.md").read_text()
    order = [text.index(f"### {n}. caption of {p}") for n, p in enumerate(["a_0", "a_1", "b_0"], 1)]
    assert order == sorted(order)
    # capped at 4 seconds: a window holding both relevant seconds (1, 2)
    assert re.search(r"pair a_0 · video vid-a · seconds (0–3|1–4) \(clip of 5 s\)", text)
    assert "pair a_1 · video vid-a · seconds 2–4 (clip of 3 s)" in text
    image = read_png(out / "strip-01.png")
    assert has_colour(image, RED), "thumbnails should be the first frame of each second"
    assert not has_colour(image, BLUE), "the second frame of a second was drawn"
    assert has_colour(image, (44, 160, 44)), "ground-truth seconds should be framed in green"


def test_frames_not_kept_and_video_missing_gives_placeholders(
    inputs: ReportSources, tmp_path: Path
) -> None:
    folder = tmp_path / "no-frames"
    folder.mkdir()
    missing = {v: tmp_path / "gone" / f"{v}.mp4" for v in ("vid-a", "vid-b")}
    table = write_decode_table(folder, "", missing)
    inputs = replace(inputs, decode_table=table, decode_folder=folder)
    out = tmp_path / "report"
    written = write_report(inputs, ReportConfig(strip_pairs=2, strip_seconds=24), out)
    assert written[-2:] == ["strip-01.png", "strip-02.png"]
    text = (out / "report.md").read_text()
    assert text.count("grey placeholders drawn") == 2
    assert "no such file" in text
    assert not has_colour(read_png(out / "strip-01.png"), RED)


def test_thumbnails_decoded_from_the_video_when_frames_were_not_kept(
    inputs: ReportSources, tmp_path: Path
) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    video = tmp_path / "red.mp4"
    command = "ffmpeg -nostdin -loglevel error -y -f lavfi -i color=c=0xFA0A0A:s=64x48:r=8:d=6"
    subprocess.run([*command.split(), "-pix_fmt", "yuv444p", str(video)], check=True)
    folder = tmp_path / "decoded"
    folder.mkdir()
    table = write_decode_table(folder, "", {"vid-a": video, "vid-b": video})
    out = tmp_path / "report"
    config = ReportConfig(strip_pairs=1, strip_seconds=24)
    write_report(replace(inputs, decode_table=table, decode_folder=folder), config, out)
    assert "placeholder" not in (out / "report.md").read_text()
    assert has_colour(read_png(out / "strip-01.png"), RED)


def test_without_ground_truth_precision_is_unavailable(
    inputs: ReportSources, tmp_path: Path
) -> None:
    inputs = replace(inputs, ground_truth=None, s3d_random_init=False, pairs_table=None)
    out = tmp_path / "report"
    written = write_report(inputs, ReportConfig(strip_pairs=1), out)
    text = (out / "report.md").read_text()
    assert precision(sections(text)["Frame-selector precision"]) == {}
    assert "unavailable" in sections(text)["Frame-selector precision"]
    assert "pretrained weights loaded" in text.split("## ")[0]
    assert "randomly initialised" not in text
    assert "### 1. (caption unavailable) a_0" in text
    read_png(out / written[-1])


def test_missing_training_logs_are_noted(inputs: ReportSources, tmp_path: Path) -> None:
    runs = [replace(run, train_metrics=tmp_path / "absent.jsonl") for run in inputs.runs]
    inputs = replace(inputs, runs=runs, pretrain_metrics=None)
    out = tmp_path / "report"
    write_report(inputs, ReportConfig(strip_pairs=0), out)
    text = (out / "report.md").read_text()
    missing = re.search(r"Missing or empty training log: ([\w, ]+)\.", text)
    assert missing is not None and missing.group(1).split(", ") == ["fineco", "baseline"]
    assert re.search(r"Logs shown: none\.", text)
    read_png(out / "loss_curves.png")
    assert not list(out.glob("strip-*.png"))


def test_training_log_keeps_the_last_entry_of_a_step_and_skips_a_torn_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "metrics.jsonl"
    entries = [{"step": 0, "loss": 3.0}, {"step": 1, "loss": 2.0}, {"step": 1, "loss": 1.5}]
    path.write_text("\n".join(json.dumps(e) for e in entries) + '\n{"step": 2, "lo')
    log = read_training_log(path)
    assert log is not None
    assert log.step.tolist() == [0, 1] and log.loss.tolist() == [3.0, 1.5]


def test_report_names_test_pairs_left_out_for_missing_features(
    inputs: ReportSources, tmp_path: Path
) -> None:
    path = inputs.runs[0].metrics_json
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "dropped_pairs": {"missing_features": 3}}))
    out = tmp_path / "report"
    write_report(inputs, ReportConfig(strip_pairs=0), out)
    text = (out / "report.md").read_text()
    assert "fineco: test pairs left out {'missing_features': 3}" in text
    assert "baseline: test pairs left out" not in text


def test_per_epoch_validation_is_a_table_per_validated_variant(
    inputs: ReportSources, tmp_path: Path
) -> None:
    epochs = tmp_path / "epochs.jsonl"
    records = [
        {"epoch": 0, "r1": 20.0, "r5": 50.0, "medr": 5.0, "selector_precision": 0.3,
         "selector_random": 0.15, "selector_entropy": 0.91, "best": True},
        {"epoch": 1, "r1": 32.5, "r5": 61.0, "medr": 3.0, "selector_precision": 0.62,
         "selector_random": 0.15, "selector_entropy": 0.55, "best": True},
        {"epoch": 2, "r1": 30.0, "r5": 60.0, "medr": 3.5, "selector_precision": None,
         "selector_random": None, "selector_entropy": None, "best": False},
    ]  # fmt: skip
    epochs.write_text("".join(json.dumps(record) + "\n" for record in records))
    selection = {
        "select": "best", "criterion": "validation R@1", "validation": "10% held out",
        "validation_pairs": 40, "selected_epoch": 1, "best_epoch": 1,
    }  # fmt: skip
    fineco = replace(inputs.runs[0], epochs=epochs, selection=selection)
    out = tmp_path / "report"
    write_report(replace(inputs, runs=[fineco, inputs.runs[1]]), ReportConfig(strip_pairs=0), out)
    section = sections((out / "report.md").read_text())["Validation per epoch"]
    assert "**fineco**: 40 validation pairs (10% held out); kept: epoch 2 (best" in section
    assert "baseline" not in section  # not validated
    assert table_rows(section) == [
        ["1", "20.0", "50.0", "5", "30.0%", "15.0%", "0.910"],
        ["2 (kept)", "32.5", "61.0", "3", "62.0%", "15.0%", "0.550"],
        ["3", "30.0", "60.0", "3.5", "–", "–", "–"],
    ]


def test_a_long_clips_strip_shows_the_relevant_and_the_selected_seconds() -> None:
    probabilities = np.full(60, 0.01)  # (K,) a 60-s clip starting at video second 100
    probabilities[[40, 41]] = 0.2  # the selector's top 2 seconds: 140, 141
    relevant = {130, 131}
    assert strip_window(probabilities, relevant, 100, 24) == (118, 142)  # earliest with all 4
    assert strip_window(probabilities, relevant, 100, 5) == (127, 132)  # ties: the earliest
    assert strip_window(probabilities, None, 100, 8) == (133, 141)  # no truth: the top second
    assert strip_window(probabilities[:20], relevant, 100, 24) == (100, 120)  # fits: all of it
    assert top_relevant(probabilities, relevant, 100) == (0, 2)
    assert top_relevant(probabilities, {140, 120}, 100) == (1, 2)

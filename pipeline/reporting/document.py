"""The report document: report.md with the metric tables, training curves and frame strips.

Reads only files earlier stages wrote, named in a `ReportSources`: evaluate's `metrics.json` and
`frame_scores.h5` per fine-tuned variant, the training logs (`metrics.jsonl`), the evaluated
dataset's `decode.parquet` and frame shards, and on synthetic data the ground-truth relevant
seconds. Writes

    report.md           title, backbone statement, the paper-style tables with ours (tables.py),
                        selector precision, curves and strips
    loss_curves.png     pretrain and fine-tune losses; FineCo's L1, L2 and all-positive share
    strip-NN.png        paper Figure 3 in spirit: 1-fps thumbnails of a test clip, the frame
                        selector's probability of each second as a bar, ground-truth seconds framed

A thumbnail that cannot be read is drawn as a grey placeholder and noted; it never fails the report.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from pipeline.config import ReportConfig
from pipeline.reporting.figures import (
    Strip,
    load_thumbnails,
    plot_frame_strip,
    plot_loss_curves,
    strip_window,
    top_relevant,
)
from pipeline.reporting.paper import RETRIEVAL_COLUMNS
from pipeline.reporting.tables import Run, results_markdown, sweep_markdown
from storage.atomic import atomic_write_text
from storage.tables import read_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSources:
    """One fine-tuned variant: its evaluation outputs and training log."""

    variant: str  # "fineco" or "baseline"
    metrics_json: Path  # evaluate's metrics.json
    frame_scores_h5: Path  # evaluate's frame_scores.h5
    train_metrics: Path  # finetune's metrics.jsonl
    fineco: dict[str, Any] = field(default_factory=dict)  # finetune info's whole FineCo section
    epochs: Path | None = None  # finetune's epochs.jsonl (per-epoch validation), when validated
    selection: dict[str, Any] | None = None  # finetune's SelectionFacts: the kept epoch and why


@dataclass(frozen=True)
class ReportSources:
    config_name: str
    runs: list[RunSources]
    pretrain_metrics: Path | None  # pretrain's metrics.jsonl
    # decode.parquet of the evaluated dataset (video_id, path, shard, ...) and its folder (shard
    # paths are relative to it); None when the dataset came as pre-extracted features.
    decode_table: Path | None
    decode_folder: Path | None
    ground_truth: Path | None  # synthetic ground_truth.json; None for real data
    s3d_random_init: bool  # from the extract manifest
    dataset: str
    split: str
    pairs_table: Path | None = None  # ingest's pairs.parquet (pair_id, text): strip captions
    adapter: str = ""  # the evaluated dataset's adapter and task: which paper table applies
    task: str = "retrieval"
    features_imported: bool = False  # the features came with the dataset (no S3D-G ran)


@dataclass(frozen=True)
class FrameScores:
    """evaluate's frame_scores.h5: frame j of pair i is video second start_s[i] + j."""

    pair_ids: list[str]  # (V,)
    video_ids: list[str]  # (V,)
    offsets: np.ndarray  # (V+1,) int64
    probabilities: np.ndarray  # (ΣK,) float32, softmax over each clip's frames
    start_s: np.ndarray  # (V,) int64

    def clip(self, pair_id: str) -> tuple[str, int, np.ndarray]:
        """(video id, first second, probabilities (K,)) of one pair."""
        i = self.pair_ids.index(pair_id)
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.video_ids[i], int(self.start_s[i]), self.probabilities[start:stop]


def write_report(inputs: ReportSources, config: ReportConfig, folder: Path) -> list[str]:
    """Write report.md and its PNG figures into `folder`; returns their paths relative to it."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {run.variant: read_metrics(run.metrics_json) for run in inputs.runs}
    runs = [Run(run.variant, run.fineco, metrics[run.variant]) for run in inputs.runs]
    truth = json.loads(inputs.ground_truth.read_text()) if inputs.ground_truth else None

    pretrain = read_training_log(inputs.pretrain_metrics) if inputs.pretrain_metrics else None
    finetune = {run.variant: read_training_log(run.train_metrics) for run in inputs.runs}
    plot_loss_curves(pretrain, finetune, folder / "loss_curves.png")
    pngs = ["loss_curves.png"]

    strips, strip_markdown = write_strips(inputs, config, truth, folder)
    pngs += strips
    sections = [
        header_markdown(inputs, metrics),
        results_markdown(inputs.adapter, inputs.task, runs),
        sweep_markdown(inputs.adapter, inputs.task, runs),
        precision_markdown(inputs.runs, metrics, truth is not None),
        validation_markdown(inputs.runs),
        curves_markdown(inputs, pretrain, finetune),
        strip_markdown,
    ]
    atomic_write_text(folder / "report.md", "\n\n".join(s for s in sections if s) + "\n")
    return ["report.md", *pngs]


# ---------------------------------------------------------------- reading earlier stages' files


def read_metrics(path: Path) -> dict[str, Any]:
    """evaluate's metrics.json, checked for the keys the report uses."""
    metrics = json.loads(Path(path).read_text())
    if metrics.get("task", "retrieval") in ("qa", "mc"):
        if not isinstance(metrics.get("accuracy"), int | float):
            raise ValueError(f"{path}: expected a numeric 'accuracy' for task {metrics['task']}")
        return metrics
    for key in ("plain", "dual_softmax"):
        missing = [c for c in RETRIEVAL_COLUMNS if c not in (metrics.get(key) or {})]
        if missing:
            raise ValueError(
                f"{path}: expected {key!r} with {RETRIEVAL_COLUMNS}, missing {missing}"
            )
    return metrics


def read_training_log(path: Path) -> pd.DataFrame | None:
    """metrics.jsonl as a frame (step, loss, lr, parts flattened to `part:<name>`), by step.

    None when the file is absent; unreadable lines (a killed writer's last line) are skipped and a
    step logged twice (a resumed run) keeps its last entry.
    """
    if not path.is_file():
        log.warning("report: training log %s is missing", path)
        return None
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            log.warning("report: %s line %d is not JSON; skipped", path, number)
            continue
        if not isinstance(entry, dict) or "step" not in entry or "loss" not in entry:
            continue
        parts = {f"part:{k}": v for k, v in (entry.get("parts") or {}).items()}
        rows.append({"step": entry["step"], "loss": entry["loss"], "lr": entry.get("lr"), **parts})
    if not rows:
        return None
    frame = pd.DataFrame(rows).drop_duplicates("step", keep="last")
    return frame.sort_values("step").reset_index(drop=True)


def read_frame_scores(path: Path) -> FrameScores:
    with h5py.File(path, "r") as handle:
        scores = FrameScores(
            pair_ids=list(handle["pair_ids"].asstr()[()]),
            video_ids=list(handle["video_ids"].asstr()[()]),
            offsets=handle["offsets"][()],
            probabilities=handle["probabilities"][()],
            start_s=handle["start_s"][()],
        )
    pairs = len(scores.pair_ids)
    if len(scores.offsets) != pairs + 1 or scores.offsets[-1] != len(scores.probabilities):
        raise ValueError(
            f"{path}: expected offsets of length {pairs + 1} ending at "
            f"{len(scores.probabilities)}, found {scores.offsets.tolist()[-3:]}"
        )
    return scores


def read_captions(path: Path | None) -> dict[str, str]:
    if path is None or not path.is_file():
        return {}
    pairs = read_table(path)
    return dict(zip(pairs.pair_id.astype(str), pairs.text.astype(str)))


# ---------------------------------------------------------------- markdown


def header_markdown(inputs: ReportSources, metrics: dict[str, dict[str, Any]]) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    if inputs.features_imported:
        backbone = (
            "**Video features: imported** from the dataset's pre-extracted feature files; no "
            "S3D-G ran in this pipeline."
        )
    elif inputs.s3d_random_init:
        backbone = (
            "**S3D-G backbone: randomly initialised.** The video features come from a randomly "
            "initialised S3D-G; numbers measure the pipeline, not the paper's model."
        )
    else:
        backbone = "**S3D-G backbone: pretrained weights loaded** (features as in the paper)."
    sizes = ", ".join(
        f"{v}: {m.get('queries')} queries" + (f" × {m['videos']} videos" if m.get("videos") else "")
        for v, m in metrics.items()
    )
    dropped = {v: m["dropped_pairs"] for v, m in metrics.items() if m.get("dropped_pairs")}
    dropped_text = "".join(
        f" {v}: test pairs left out {d} (their videos have no features)."
        for v, d in dropped.items()
    )
    return (
        f"# FineCo report — {inputs.config_name} ({date})\n\n{backbone}\n\n"
        f"Evaluated on **{inputs.dataset}** split **{inputs.split}** ({sizes}).{dropped_text}"
    )


def precision_markdown(
    runs: list[RunSources], metrics: dict[str, dict[str, Any]], has_ground_truth: bool
) -> str:
    title = "## Frame-selector precision\n\n"
    if not has_ground_truth:
        return title + (
            "Frame-selector precision is unavailable: this dataset has no ground-truth relevant "
            "seconds (only the synthetic data records them)."
        )
    lines = [
        "Share of the selector's top-k seconds that are ground-truth relevant, against the "
        "share a random choice of k seconds would get.\n"
    ]
    for run in runs:
        precision = metrics[run.variant].get("frame_precision")
        if precision is None:
            lines.append(f"- **{run.variant}**: not measured (no pair with ground truth).")
            continue
        ours, chance = precision["precision_at_k"], precision["random_expectation"]
        line = (
            f"- **{run.variant}**: precision@{precision['k']} = {100 * ours:.1f}% vs "
            f"{100 * chance:.1f}% random expectation ({precision['pairs']} pairs)"
        )
        if run.variant == "baseline":
            line += (
                "; the baseline's frame selector is untrained (its objective has no frame loss), "
                "so this is a chance-level reference"
            )
        lines.append(line + ".")
    return title + "\n".join(lines)


def validation_markdown(runs: list[RunSources]) -> str:
    """Per fine-tuned variant, its per-epoch validation: retrieval (or QA accuracy) and the
    frame selector."""
    validated = [run for run in runs if run.epochs is not None and run.selection]
    if not validated:
        return ""
    parts = ["## Validation per epoch"]
    for run in validated:
        assert run.epochs is not None and run.selection is not None
        lines = [json.loads(line) for line in run.epochs.read_text().splitlines() if line]
        chosen = run.selection
        kept = "best" if chosen["select"] == "best" else "last"
        parts.append(
            f"**{run.variant}**: {chosen['validation_pairs']} validation pairs "
            f"({chosen['validation']}); kept: epoch {chosen['selected_epoch'] + 1} ({kept}; "
            f"best {chosen['criterion']}: epoch {chosen['best_epoch'] + 1}).\n\n"
            + _epoch_table(lines, chosen["selected_epoch"])
        )
    return "\n\n".join(parts)


def _epoch_table(lines: list[dict[str, Any]], kept: int) -> str:
    """One row per validated epoch: retrieval R@1/R@5/MedR, or QA accuracy, and the selector."""
    qa = bool(lines) and "accuracy" in lines[0]
    quality = "accuracy" if qa else "R@1 | R@5 | MedR"
    head = f"| epoch | {quality} | selector P@k | random | selector entropy |\n"
    rule = "|---" * (5 if qa else 7) + "|\n"

    def share(line: dict[str, Any], name: str) -> str:
        value = line.get(name)
        return "–" if value is None else f"{100 * value:.1f}%"

    rows = []
    for line in lines:
        entropy = line.get("selector_entropy")
        scores = (
            f"{line['accuracy']:.1f}"
            if qa
            else f"{line['r1']:.1f} | {line['r5']:.1f} | {line['medr']:g}"
        )
        rows.append(
            f"| {line['epoch'] + 1}{' (kept)' if line['epoch'] == kept else ''} | {scores} | "
            f"{share(line, 'selector_precision')} | {share(line, 'selector_random')} | "
            f"{'–' if entropy is None else f'{entropy:.3f}'} |"
        )
    return head + rule + "\n".join(rows)


def curves_markdown(
    inputs: ReportSources, pretrain: pd.DataFrame | None, finetune: dict[str, pd.DataFrame | None]
) -> str:
    logs = {"pretrain": pretrain, **finetune} if inputs.pretrain_metrics else finetune
    shown = ", ".join(name for name, frame in logs.items() if frame is not None) or "none"
    missing = [name for name, frame in logs.items() if frame is None]
    note = f" Missing or empty training log: {', '.join(missing)}." if missing else ""
    return f"## Training curves\n\nLogs shown: {shown}.{note}\n\n![training loss](loss_curves.png)"


# ---------------------------------------------------------------- loss curves


# ---------------------------------------------------------------- frame strips (paper Figure 3)


def write_strips(
    inputs: ReportSources, config: ReportConfig, truth: dict[str, Any] | None, folder: Path
) -> tuple[list[str], str]:
    """strip-NN.png for the first `config.strip_pairs` pair ids (sorted) of the fineco run."""
    if not inputs.runs or config.strip_pairs == 0:
        return [], ""
    run = next((r for r in inputs.runs if r.variant == "fineco"), inputs.runs[0])
    scores = read_frame_scores(run.frame_scores_h5)
    videos, decode_problem = read_decode_rows(inputs.decode_table)
    captions = read_captions(inputs.pairs_table)
    framed = ", ground-truth relevant seconds framed in green" if truth is not None else ""
    lines = [
        "## Frame strips\n",
        f"The first {config.strip_pairs} test pairs (sorted ids): 1-fps thumbnails (at most "
        f"{config.strip_seconds} seconds: of a longer clip, the window holding the most relevant"
        f" and top-selected seconds) and under each the {run.variant} frame selector's "
        f"probability of that second (softmax over the whole clip; dashed: uniform 1/K){framed}.",
    ]
    names = []
    for number, pair_id in enumerate(sorted(set(scores.pair_ids))[: config.strip_pairs], 1):
        video_id, clip_start, probabilities = scores.clip(pair_id)
        pair_truth = (truth or {}).get(pair_id)
        relevant = set(pair_truth["seconds"]) if pair_truth else None
        start, stop = strip_window(probabilities, relevant, clip_start, config.strip_seconds)
        video = videos.get(video_id)
        thumbnails, problem = load_thumbnails(video, video_id, inputs.decode_folder, start, stop)
        if video is None and decode_problem:
            problem = decode_problem
        hits = ""
        found, count = top_relevant(probabilities, relevant or set(), clip_start)
        if count:
            hits = f" · its top {count} seconds: {found} relevant"
        strip = Strip(
            title=captions.get(pair_id)
            or f"(caption unavailable) {pair_truth['concept'] if pair_truth else pair_id}",
            subtitle=f"pair {pair_id} · video {video_id} · seconds {start}–{stop - 1}"
            f" (clip of {len(probabilities)} s) · {run.variant} selector{hits}",
            seconds=list(range(start, stop)),
            probabilities=probabilities[start - clip_start : stop - clip_start],
            clip_length=len(probabilities),
            thumbnails=thumbnails,
            relevant=relevant,
        )
        name = f"strip-{number:02d}.png"
        plot_frame_strip(strip, folder / name)
        names.append(name)
        lines.append(f"\n### {number}. {strip.title}\n\n{strip.subtitle}\n\n![{pair_id}]({name})")
        if problem:
            lines.append(f"\nThumbnails unavailable ({problem}); grey placeholders drawn.")
    return names, "\n".join(lines)


def read_decode_rows(path: Path | None) -> tuple[dict[str, dict[str, Any]], str]:
    """decode.parquet rows by video id, and why there are none ("" when read)."""
    if path is None:
        return {}, "the dataset came as pre-extracted features: there are no frames to show"
    try:
        table = read_table(path)
    except Exception as error:  # thumbnails only: never fail the report for them
        log.warning("report: cannot read %s: %s", path, error)
        return {}, f"cannot read {path}: {error}"
    rows = table.to_dict("records")
    return {str(row["video_id"]): row for row in rows}, ""

"""The report's paper-style tables: the paper's rows first, then ours, per task and protocol.

Each table follows the layout of the paper table it mirrors (reporting/paper.py): retrieval tables
R@1 / R@5 / R@10 / MedR with a DS column (DualSoftmax re-ranking, reported with and without for
every retrieval run), QA and multiple choice an accuracy column, DiDeMo's moment ranking rank@1 /
rank@5 / mIoU. An ablation sweep gets the layout of Table 6 (strategies, YouCookII R@1) or
Table 7 (fixed k, accuracy). Every number of ours comes from evaluate's metrics.json.

The paper's rows (real data, pretrained weights) and ours stand in separate tables: ours state
what they were measured on (queries, candidates, seeds), the chance level and a 95 % Wilson
interval of R@1 or accuracy over the queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from math import sqrt
from typing import Any

from pipeline.reporting.paper import (
    ACCURACY_COLUMNS,
    DIDEMO_MOMENTS,
    MOMENT_COLUMNS,
    RETRIEVAL_COLUMNS,
    TABLE6_R1,
    TABLE7_ACCURACY,
    TABLES,
    PaperTable,
    strategy_parameter,
)

PROTOCOL_TEXT = {
    "text_to_video": "text→video retrieval, one caption per clip; candidates: the test clips",
    "multi_sentence": (
        "multi-sentence text→video retrieval: every test caption is a query over the unique "
        "test videos"
    ),
    "paragraph_to_video": (
        "paragraph→video retrieval: all descriptions of a video joined into one query, one "
        "query per video"
    ),
    "qa": "open-ended QA: argmax over the answer vocabulary; out-of-vocabulary answers count wrong",
    "mc": "multiple choice: the video picks one of its candidate captions (video→text)",
}


@dataclass(frozen=True)
class Run:
    """One evaluated variant as the tables see it."""

    variant: str
    fineco: dict[str, Any]  # finetune info "fineco" section (enabled, strategy, k, ratio, ...)
    metrics: dict[str, Any]  # evaluate's metrics.json


def number(value: float | None) -> str:
    """One decimal, halves up (11.25 → 11.3); "-" for a value the paper leaves empty."""
    if value is None:
        return "-"
    decimal = Decimal(repr(float(value))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{decimal:.1f}"


def run_label(run: Run) -> str:
    """`ours: fineco (fixed_k, k=50)` / `ours: baseline (VideoCLIP, no L1)`."""
    if not run.fineco.get("enabled"):
        return f"ours: {run.variant} (VideoCLIP, no L1)"
    strategy, parameter = strategy_parameter(run.fineco)
    if strategy in ("fixed_k", "random"):
        detail = f"{strategy}, k={int(parameter)}"
    elif strategy == "ratio":
        detail = f"ratio={parameter:g}"
    else:
        detail = strategy
    return f"ours: {run.variant} ({detail})"


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], with_ds: bool) -> list[str]:
    head = ["Model", *(["DS"] if with_ds else []), *columns]
    align = ["---", *(["---"] if with_ds else []), *("---:" for _ in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def wilson_interval(percent: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval, in percent, of a share given in percent over n trials."""
    share = percent / 100.0
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


def interval_text(percent: float, n: Any) -> str:
    """`lo–hi` of the Wilson interval; "-" when the number of trials is unknown."""
    if not n:
        return "-"
    low, high = wilson_interval(float(percent), int(n))
    return f"{number(low)}–{number(high)}"


def scope_text(metrics: dict[str, Any]) -> str:
    """What our rows were measured on and the chance level, from evaluate's metrics.json."""
    protocol = metrics.get("protocol")
    if protocol == "qa":
        answers = metrics.get("answers")
        chance = f"; chance {number(100 / answers)} % (a uniform guess)" if answers else ""
        measured = f"{metrics.get('questions', '?')} questions, {answers or '?'} answers{chance}"
    elif protocol == "mc":
        options = metrics.get("candidates")
        chance = f"; chance {number(100 / options)} %" if options else ""
        measured = f"{metrics.get('questions', '?')} questions of {options or '?'} captions{chance}"
    else:
        videos = metrics.get("videos")
        chance = f"; chance R@1 {number(100 / videos)} %" if videos else ""
        measured = f"{metrics.get('queries', '?')} queries over {videos or '?'} videos{chance}"
    where = " ".join(str(metrics[key]) for key in ("dataset", "split") if metrics.get(key))
    return (
        f"{where + ', ' if where else ''}{measured}; one fine-tuning run (one seed) per variant "
        "(`fineco study` runs seeds with paired tests); CI: 95 % Wilson interval over queries"
    )


def _paper_rows(table: PaperTable | None, with_ds: bool) -> list[list[str]]:
    if table is None:
        return []
    rows = []
    for row in table.rows:
        ds = [{True: "yes", False: "no", None: "?"}[row.ds]] if with_ds else []
        rows.append([row.model, *ds, *(number(v) for v in row.values)])
    return rows


def retrieval_table(runs: Sequence[Run]) -> str:
    """Each variant without and with DualSoftmax (tie-safe ranks), with R@1's interval."""
    rows = []
    for run in runs:
        for ds, key in (("no", "plain"), (ds_label(run.metrics), "dual_softmax")):
            values = [number(run.metrics[key][c]) for c in RETRIEVAL_COLUMNS]
            ci = interval_text(run.metrics[key]["R@1"], run.metrics.get("queries"))
            rows.append([run_label(run), ds, *values, ci])
    return "\n".join(_table([*RETRIEVAL_COLUMNS, "R@1 95 % CI"], rows, with_ds=True))


def ds_label(metrics: dict[str, Any]) -> str:
    """The DS column of a DualSoftmax row: "yes, T=<t>" with "(val)" when T was chosen on
    validation pairs, "(fixed)" when it is the config's untuned value."""
    temperature = metrics.get("dual_softmax_temperature")
    if temperature is None:
        return "yes"
    chosen = (metrics.get("dual_softmax_choice") or {}).get("chosen_on", "")
    return f"yes, T={temperature:g} ({'val' if chosen.startswith('validation') else 'fixed'})"


def mmpt_table(runs: Sequence[Run]) -> str:
    """The same scores ranked with MMPT's recipe (only for one query per clip)."""
    rows = []
    for run in runs:
        for ds, key in (("no", "mmpt"), (ds_label(run.metrics), "mmpt_dual_softmax")):
            if run.metrics.get(key):
                rows.append(
                    [run_label(run), ds, *(number(run.metrics[key][c]) for c in RETRIEVAL_COLUMNS)]
                )
    return "\n".join(_table(RETRIEVAL_COLUMNS, rows, with_ds=True)) if rows else ""


def moments_table(runs: Sequence[Run]) -> str:
    rows = []
    for run in runs:
        moments = run.metrics.get("moments")
        if moments:
            rows.append([run_label(run), *(number(moments[c]) for c in MOMENT_COLUMNS)])
    return "\n".join(_table(MOMENT_COLUMNS, rows, with_ds=False))


def accuracy_table(runs: Sequence[Run]) -> str:
    rows = [
        [
            run_label(run),
            number(run.metrics["accuracy"]),
            interval_text(run.metrics["accuracy"], run.metrics.get("questions")),
        ]
        for run in runs
    ]
    return "\n".join(_table([*ACCURACY_COLUMNS, "95 % CI"], rows, with_ds=False))


def paper_table(table: PaperTable | None, columns: Sequence[str], with_ds: bool) -> list[str]:
    """The paper's rows as their own table, introduced as published numbers; [] when none."""
    if table is None:
        return []
    rows = _paper_rows(table, with_ds)
    return [
        "**Published** (the paper: real data, public pretrained weights; for orientation, not "
        "comparable with runs on other data):\n",
        *_table(columns, rows, with_ds),
        "",
    ]


def results_markdown(adapter: str, task: str, runs: Sequence[Run]) -> str:
    """The main results section: the paper's table for this dataset and task, with our rows."""
    if not runs:
        return ""
    protocol = str(runs[0].metrics.get("protocol", "text_to_video"))
    paper = TABLES.get((adapter, task))
    title = f"{paper.number}: {paper.title}" if paper else f"{adapter} ({task})"
    lines = [
        f"## Results — {title}\n",
        f"Protocol: {PROTOCOL_TEXT.get(protocol, protocol)}."
        + ("" if paper else " The paper has no table for this dataset."),
        "",
    ]
    ours = f"**Ours** ({scope_text(runs[0].metrics)}):\n"
    if task in ("qa", "mc"):
        lines += [*paper_table(paper, ACCURACY_COLUMNS, with_ds=False), ours]
        lines.append(accuracy_table(runs))
        if task == "qa":
            lines += ["", vocabulary_text(runs[0].metrics)]
        return "\n".join(lines)
    lines += [
        *paper_table(paper, RETRIEVAL_COLUMNS, with_ds=True),
        ours,
        "Tie-safe ranks (a tie with the target counts against it), R@K in percent; "
        "DS = DualSoftmax re-ranking S ⊙ softmax(S / T) with its temperature T: (val) chosen on "
        "the fine-tuning run's validation pairs, (fixed) the config's untuned value.\n",
        retrieval_table(runs),
    ]
    mmpt = mmpt_table(runs)
    if mmpt:
        lines += [
            "\n### MMPT-compatible numbers\n",
            "The same scores ranked with MMPT's recipe (`where(sx - d == 0)`), which skews R@K "
            "on ties; given for comparison with VideoCLIP's published code.\n",
            mmpt,
        ]
    if any(run.metrics.get("moments") for run in runs):
        lines += [
            "\n### DiDeMo moment ranking (a different protocol)\n",
            "LocalizingMoments / MMPT `DiDeMoMetric`: each description ranks the 21 candidate "
            "moments of its own video (5-second chunks); rank@1 / rank@5 over the best 3 of 4 "
            "annotators, mIoU of the top moment, in percent. The paper's Table 4 mixes this "
            "protocol (its VideoCLIP row) with paragraph retrieval (its FineCo row).\n",
            *paper_table(DIDEMO_MOMENTS, MOMENT_COLUMNS, with_ds=False),
            "**Ours:**\n",
            moments_table(runs),
        ]
    return "\n".join(lines)


def vocabulary_text(metrics: dict[str, Any]) -> str:
    """How much of the test set the answer vocabulary can answer at all."""
    answers, oov = metrics.get("answers"), metrics.get("out_of_vocabulary_share")
    if answers is None or oov is None:
        return ""
    covered = 100.0 * (1.0 - float(oov))
    return (
        f"Answer vocabulary: {answers} answers; {number(covered)}% of the test questions have "
        "their answer in it, the ceiling of the accuracy (the paper: 1500 answers covering over "
        "93% of the samples)."
    )


def sweep_markdown(adapter: str, task: str, runs: Sequence[Run]) -> str:
    """Table 6 (strategies, R@1) or Table 7 (fixed k, accuracy) when a run has a sweep."""
    if not any(run.variant.startswith("fineco-") for run in runs):
        return ""
    if task in ("qa", "mc"):
        return _table7(task, runs)
    return _table6(adapter, runs)


def _table6(adapter: str, runs: Sequence[Run]) -> str:
    paper = TABLE6_R1 if adapter == "youcook2" else {}
    rows = []
    for run in runs:
        if not run.fineco.get("enabled"):
            setting = ("off (VideoCLIP)", "")
            published = None
        else:
            strategy, parameter = strategy_parameter(run.fineco)
            shown = "" if strategy == "median" else f"{parameter:g}"
            setting = (strategy, shown)
            published = paper.get((strategy, parameter))
        ours = [number(run.metrics[key]["R@1"]) for key in ("plain", "dual_softmax")]
        rows.append([run.variant, *setting, number(published), *ours])
    header = ["Variant", "Strategy", "k / ratio", "Paper R@1", "Ours R@1", "Ours R@1 DS"]
    note = (
        "Paper R@1 from Table 6 (YouCookII, 256 frames; the paper does not say whether DS was "
        "used)."
    )
    if adapter != "youcook2":
        note = "The paper's Table 6 is on YouCookII only; paper column empty for this dataset."
    note += f" Ours: {scope_text(runs[0].metrics)}."
    return _plain_table("## Ablation — Table 6: positive-frame strategies", note, header, rows)


def _table7(task: str, runs: Sequence[Run]) -> str:
    paper = TABLE7_ACCURACY.get(task, {})
    rows = []
    for run in runs:
        if not run.fineco.get("enabled"):
            rows.append([run.variant, "off (VideoCLIP)", "-", number(run.metrics["accuracy"])])
            continue
        strategy, parameter = strategy_parameter(run.fineco)
        k = f"{strategy} {parameter:g}" if strategy != "fixed_k" else f"{int(parameter)}"
        published = paper.get(int(parameter)) if strategy == "fixed_k" else None
        rows.append([run.variant, k, number(published), number(run.metrics["accuracy"])])
    header = ["Variant", "k", "Paper accuracy", "Ours accuracy"]
    name = "MSR-VTT QA" if task == "qa" else "MSR-VTT MC (row empty in the paper's text)"
    note = (
        f"Paper column: Table 7, {name}; k = 32 equals VideoCLIP on 32 frames (L1 = 0). "
        f"Ours: {scope_text(runs[0].metrics)}."
    )
    return _plain_table("## Ablation — Table 7: number of positive frames", note, header, rows)


def _plain_table(title: str, note: str, header: list[str], rows: list[list[str]]) -> str:
    align = ["---", "---", *("---:" for _ in header[2:])]
    lines = [f"{title}\n", note, "", "| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)

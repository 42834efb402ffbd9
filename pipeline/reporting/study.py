"""study.md: the study's tables, with the set, queries, seeds, chance level and intervals stated.

Synthetic results stand on their own: no paper column, no paper number beside them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

METRICS = (("r1", "R@1"), ("r5", "R@5"), ("r10", "R@10"), ("medr", "MedR"))


def study_markdown(document: dict[str, Any]) -> str:
    benchmark, seeds = document["benchmark"], document["seeds"]
    parameters = benchmark["parameters"]
    lines = [
        "# FineCo study on the long-sparse benchmark",
        "",
        f"Synthetic features (benchmark seed {parameters['seed']}): long clips of "
        f"{parameters['min_seconds']}–{parameters['max_seconds']} s, at most "
        f"{100 * parameters['max_relevant_share']:.0f} % relevant seconds in 1–"
        f"{parameters['max_runs']} runs (test mean {benchmark['long_mean_seconds']:.1f} s, "
        f"{100 * benchmark['long_relevant_share_mean']:.1f} % relevant); the short set holds the "
        f"same captions with each clip cut to its relevant seconds (mean "
        f"{benchmark['short_mean_seconds']:.1f} s). {benchmark['train_clips']} training clips, "
        f"{benchmark['test_queries']} test queries over as many clips: chance R@1 = "
        f"{benchmark['chance_r1']:.2f} %. Seeds {', '.join(map(str, seeds))} (training and "
        "weight init); mean ± std over seeds. These are not the paper's datasets: no paper "
        "number belongs beside them.",
    ]
    for name, queries in document["queries"].items():
        lines += ["", f"## {name} set ({queries} queries, {len(seeds)} seeds)", ""]
        lines += _results_table(document["results"], name)
        lines += ["", "Paired against the baseline, query by query, seeds pooled:", ""]
        lines += _comparison_table(document["comparisons"], name)
    if document.get("long_vs_short"):
        lines += ["", "## More on long clips than on short ones?", ""]
        lines += _long_short_table(document["long_vs_short"])
    lines += ["", "## Frame selector", "", *_selector_table(document["selector"])]
    if document.get("epochs"):
        lines += ["", "## During training (validation)", "", *_epoch_table(document)]
    lines += [
        "",
        "ΔR@1: mean over queries of the hit@1 difference (mean over seeds), percentage points; "
        "95 % CI: bootstrap over queries (it covers which queries were drawn, not the training "
        "randomness beyond the seeds averaged, nor the benchmark's own draw); p: two-sided "
        "sign-flip permutation test over queries, the test of record; McNemar: exact, over all "
        "(seed, query) pairs as if independent, so optimistic with several seeds. A difference "
        "counts as a gain only when its CI lies above 0 and p < 0.05; the comparisons are not "
        "corrected for their number. Query-scored: the pretrained model's frames weighted by "
        "softmax of their cosine to the query (τ = 0.1, not tuned); oracle: the baseline's "
        "frame states pooled over the true relevant seconds only (a reference, not a bound: "
        "those states have attended to the distractors). On the short set every second is "
        "relevant, so every selector precision there is 100 % by construction.",
    ]
    return "\n".join(lines) + "\n"


def _results_table(results: list[dict[str, Any]], name: str) -> list[str]:
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in results:
        if row["set"] == name:
            by_method[row["method"]].append(row)
    header = "| method | " + " | ".join(label for _, label in METRICS) + " | selector P@k |"
    lines = [header, "|---|" + "---:|" * (len(METRICS) + 1)]
    for method, rows in by_method.items():
        cells = [_mean_std([row[key] for row in rows]) for key, _ in METRICS]
        selector = [
            row["selector_precision"] for row in rows if row["selector_precision"] is not None
        ]
        cells.append(_mean_std([100 * p for p in selector]) if selector else "–")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _long_short_table(rows: list[dict[str, Any]]) -> list[str]:
    """FineCo's claim is a gain that grows with clip length: each method's ΔR@1 over the
    baseline on the long set minus that on the short set, paired by caption."""
    lines = [
        "Each method's ΔR@1 over the baseline on the long set minus its ΔR@1 on the short set "
        "(the same captions), query by query, seeds averaged:",
        "",
        "| A vs B | Δlong − Δshort | 95 % CI | p | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        cells = _tested(row, "long_minus_short_r1_diff", ("more on long", "less on long"))
        lines.append(f"| {row['a']} vs {row['b']} | " + " | ".join(cells) + " |")
    return lines


def _tested(row: dict[str, Any], key: str, verdicts: tuple[str, str]) -> list[str]:
    """A tested difference's cells: the difference, its CI, p, and the verdict (the first of
    `verdicts` when significantly above 0, the second when below)."""
    low, high = row["ci95"]
    verdict = "no detectable difference"
    if row["significant"]:
        verdict = verdicts[0] if row[key] > 0 else verdicts[1]
    return [f"{row[key]:+.1f}", f"[{low:+.1f}, {high:+.1f}]", f"{row['p_value']:.3g}", verdict]


def _comparison_table(comparisons: list[dict[str, Any]], name: str) -> list[str]:
    lines = [
        "| A vs B | ΔR@1 | 95 % CI | p | McNemar p | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in comparisons:
        if row["set"] != name:
            continue
        diff, ci, p, verdict = _tested(row, "r1_diff_mean", ("A better", "A worse"))
        lines.append(
            f"| {row['a']} vs {row['b']} | {diff} | {ci} | {p} | {row['mcnemar_p']:.3g} | "
            f"{verdict} |"
        )
    return lines


def _selector_table(selector: dict[str, dict[str, Any]]) -> list[str]:
    methods = sorted({m for row in selector.values() for m in row["by_method"]})
    lines = [
        "Precision@k of the selector's top-k seconds against the true relevant seconds (test "
        "clips, mean over seeds); untrained = the baseline's selector, which no loss trains.",
        "",
        "| set | k | " + " | ".join(methods) + " | untrained | random | oracle |",
        "|---|---:|" + "---:|" * (len(methods) + 3),
    ]
    for name, row in selector.items():
        cells = [_percent(row["by_method"].get(m)) for m in methods]
        cells += [_percent(row[key]) for key in ("untrained", "random", "oracle")]
        lines.append(f"| {name} | {row['k']} | " + " | ".join(cells) + " |")
    return lines


def _epoch_table(document: dict[str, Any]) -> list[str]:
    """Validation R@1, selector P@k and entropy after each epoch, and which epochs were kept."""
    rows = document["epochs"]
    epochs = sorted({row["epoch"] for row in rows})
    selection = document.get("selection") or []
    source = selection[0] if selection else None
    intro = "Each fine-tuning run validated after every epoch"
    if source:
        best = source["select"] == "best"
        kept = f"the best epoch by {source['criterion']}" if best else "the last epoch"
        intro += (
            f" on {source['validation']} ({source['validation_pairs']} pairs); weights kept: {kept}"
        )
    lines = [
        intro + ". Cells: R@1 / selector P@k / selector entropy (1 = uniform), mean over seeds.",
        "",
        "| set | method | " + " | ".join(f"epoch {e + 1}" for e in epochs) + " | kept epochs |",
        "|---|---|" + "---|" * (len(epochs) + 1),
    ]
    cells: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
    for row in rows:
        precision, entropy = row["selector_precision"], row["selector_entropy"]
        cells[(row["set"], row["method"])][row["epoch"]] = (
            f"{row['r1']:.1f} / {_percent(precision)} / "
            f"{'–' if entropy is None else f'{entropy:.2f}'}"
        )
    for (name, method), by_epoch in cells.items():
        kept = [
            str(row["selected_epoch"] + 1)
            for row in selection
            if (row["set"], row["method"]) == (name, method)
        ]
        row_cells = [by_epoch.get(e, "–") for e in epochs]
        lines.append(f"| {name} | {method} | " + " | ".join(row_cells) + f" | {', '.join(kept)} |")
    return lines


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"

"""The study's tables as data: per-run metrics, paired comparisons, the selector's precision.

Pure functions over per-query ranks and hits (pipeline/study.py reads the files): `result_row`
is one (set, method, seed) row of study.json, `comparisons` pairs every method with the baseline
query by query (significance.py), `selector_summary` the selector's precision against chance.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.evaluation.retrieval_metrics import retrieval_metrics
from pipeline.evaluation.significance import (
    paired_comparison,
    paired_differences,
    significant,
)
from pipeline.training.variants import BASELINE


def result_row(
    name: str, method: str, seed: int, query_ranks: pd.Series, selector: float | None
) -> dict[str, Any]:
    metrics = retrieval_metrics(query_ranks.to_numpy(np.int64))
    return {
        "set": name,
        "method": method,
        "seed": seed,
        "r1": metrics["R@1"],
        "r5": metrics["R@5"],
        "r10": metrics["R@10"],
        "medr": metrics["MedR"],
        "queries": len(query_ranks),
        "selector_precision": selector,
    }


def queries(results: list[dict[str, Any]], name: str) -> int:
    """The number of test queries of set `name` (every run of a set has the same)."""
    return int(next(row["queries"] for row in results if row["set"] == name))


def comparisons(
    hits: dict[tuple[str, str], dict[int, pd.Series]], seeds: Sequence[int]
) -> list[dict[str, Any]]:
    """Every method against the baseline, per set, paired by query and pooled over seeds."""
    rows = []
    for name, method in sorted(hits):
        if method == BASELINE:
            continue
        _, a, b = paired_hits(hits, name, method, seeds)
        result = paired_comparison(a, b)
        rows.append(
            {
                "set": name,
                "a": method,
                "b": BASELINE,
                "r1_diff_mean": result.diff_mean,
                "ci95": list(result.ci95),
                "p_value": result.p_value,
                "mcnemar_p": result.mcnemar_p,
                "significant": result.significant,
            }
        )
    return rows


def paired_hits(
    hits: dict[tuple[str, str], dict[int, pd.Series]], name: str, method: str, seeds: Sequence[int]
) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """The query ids of set `name` and the (seeds, queries) hits of `method` and the baseline in
    that order; every run must have ranked the same queries."""
    baseline = hits[(name, BASELINE)]
    order = baseline[seeds[0]].index
    for seed in seeds:
        for run, series in ((method, hits[(name, method)][seed]), (BASELINE, baseline[seed])):
            if set(series.index) != set(order):
                raise ValueError(
                    f"study: {name} {run} seed {seed} ranked other test queries than "
                    f"{name} {BASELINE} seed {seeds[0]}; paired tests need the same ones"
                )
    a = np.stack([hits[(name, method)][seed].reindex(order).to_numpy(bool) for seed in seeds])
    b = np.stack([baseline[seed].reindex(order).to_numpy(bool) for seed in seeds])
    return order, a, b


def long_versus_short(
    hits: dict[tuple[str, str], dict[int, pd.Series]],
    seeds: Sequence[int],
    long_set: str = "long",
    short_set: str = "short",
) -> list[dict[str, Any]]:
    """Does a method gain more over the baseline on the long clips than on the short ones? The
    two sets share their captions (query ids), so the test is paired by query: its gain on long
    minus its gain on short, each averaged over seeds."""
    rows = []
    methods = sorted({method for name, method in hits if name == long_set} - {BASELINE})
    for method in (m for m in methods if (short_set, m) in hits):
        gains = {}
        for name in (long_set, short_set):
            order, a, b = paired_hits(hits, name, method, seeds)
            gains[name] = pd.Series((a.astype(float) - b.astype(float)).mean(axis=0), order)
        if set(gains[long_set].index) != set(gains[short_set].index):
            raise ValueError(f"study: the {long_set} and {short_set} sets have other queries")
        extra = (gains[long_set] - gains[short_set].reindex(gains[long_set].index)).to_numpy()
        mean, ci95, p_value = paired_differences(extra)
        rows.append(
            {
                "a": method,
                "b": BASELINE,
                "long_minus_short_r1_diff": mean,
                "ci95": list(ci95),
                "p_value": p_value,
                "significant": significant(ci95, p_value),
            }
        )
    return rows


def selector_summary(
    precision: dict[tuple[str, str, int], dict[str, Any] | None],
    sets: Sequence[str],
    k: int,
    main: str,
) -> dict[str, Any]:
    """Per set: the trained selector's precision@k (`main`, the paper's FineCo, and every FineCo
    method in `by_method`), the untrained one's (the baseline's selector never gets a loss), a
    random choice's and the oracle's 1.0 — each a mean over seeds.

    `precision`: (set, method, seed) → evaluate's `frame_precision` (None without ground truth).
    """
    summary = {}
    for name in sets:
        found: dict[str, list[dict[str, Any]]] = {}
        for (s, method, _), value in precision.items():
            if s == name and value:
                found.setdefault(method, []).append(value)
        untrained = found.get(BASELINE, [])
        summary[name] = {
            "k": k,
            "trained": _mean(p["precision_at_k"] for p in found.get(main, [])),
            "untrained": _mean(p["precision_at_k"] for p in untrained),
            "random": _mean(p["random_expectation"] for p in untrained),
            "oracle": 1.0,
            "by_method": {
                method: _mean(p["precision_at_k"] for p in values)
                for method, values in found.items()
                if method != BASELINE
            },
        }
    return summary


def epoch_summary(
    records: dict[tuple[str, str, int], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Per (set, method, epoch): validation R@1, selector precision@k and entropy, each a mean
    over seeds (`records`: (set, method, seed) → that run's epochs.jsonl lines)."""
    grouped: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for (name, method, _), lines in records.items():
        for line in lines:
            grouped.setdefault((name, method, line["epoch"]), []).append(line)
    return [
        {
            "set": name,
            "method": method,
            "epoch": epoch,
            "seeds": len(lines),
            "r1": _mean(line["r1"] for line in lines),
            "selector_precision": _mean(
                line["selector_precision"] for line in lines if "selector_precision" in line
            ),
            "selector_entropy": _mean(
                line["selector_entropy"]
                for line in lines
                if line.get("selector_entropy") is not None
            ),
        }
        for (name, method, epoch), lines in grouped.items()
    ]


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None

"""`fineco study`: does FineCo beat the VideoCLIP baseline where its claim lives? (issue 11)

On the long-sparse benchmark (pipeline/synth/long_sparse.py, features level) and its matched
short set, for every seed: pretrain once on the benchmark's HowTo100M-format corpus, fine-tune
the baseline (VideoCLIP's loss) and FineCo (each strategy asked for) from that checkpoint on each
set, evaluate; beside them two reference methods without a selector of their own: query-scored
pooling of the pretrained model, and oracle pooling of the baseline's frames over the true
relevant seconds. Every call is an ordinary cached stage (any executor); the last, `study`,
reads their per-query ranks and writes

    study.json   {"benchmark", "seeds", "results", "comparisons", "selector"} (issue 11 schema)
                 + "long_vs_short", "epochs", "selection"
    study.md     the same as tables: mean ± std over seeds, chance level, 95 % CI, p

Comparisons pair the methods query by query and pool the seeds (evaluation/significance.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.config import (
    BenchmarkConfig,
    Config,
    EvaluateConfig,
    ModelConfig,
)
from pipeline.datasets.synthetic import GROUND_TRUTH_FILE
from pipeline.devices import resolve_device
from pipeline.evaluate import EvaluateInputs, run_evaluate
from pipeline.evaluation.frames import encode_pairs
from pipeline.evaluation.pooling import QUERY_TEMPERATURE, oracle_scores, query_scored_scores
from pipeline.evaluation.protocols import clip_targets
from pipeline.evaluation.retrieval_metrics import ranks
from pipeline.evaluation.significance import RESAMPLES
from pipeline.evaluation.study_results import (
    comparisons,
    epoch_summary,
    long_versus_short,
    queries,
    result_row,
    selector_summary,
)
from pipeline.finetune import FinetuneInputs, run_finetune
from pipeline.pretrain import PretrainInputs, run_pretrain
from pipeline.reporting.study import study_markdown
from pipeline.runner import Executor, call_directly, run_front_end
from pipeline.stage import (
    BenchmarkInfo,
    EvaluateInfo,
    FinetuneInfo,
    PretrainInfo,
    StageInputs,
    StageResult,
    StudyInfo,
    run_cached,
)
from pipeline.study_plan import (
    DEFAULT_VARIANTS,
    PRETRAIN,
    SETS,
    seeded,
    study_config,
    study_methods,
)
from pipeline.synth.long_sparse import write_benchmark
from pipeline.training.checkpoints import load_weights
from pipeline.training.data import split_pairs
from pipeline.training.model_factory import build_model, load_tokenizer
from pipeline.training.variants import BASELINE
from storage.atomic import atomic_write_json, atomic_write_text
from storage.layout import Manifest
from storage.tables import read_table

log = logging.getLogger(__name__)

QUERY_SCORED, ORACLE = "query-scored", "oracle"  # the reference methods


@dataclass(frozen=True, kw_only=True)
class BenchmarkInputs(StageInputs):
    """The benchmark's parameters: its files are a function of them alone."""

    stage: ClassVar[str] = "benchmark"
    modules: ClassVar[tuple[str, ...]] = (
        "pipeline.synth.long_sparse",
        "pipeline.synth.concepts",
        "pipeline.synth.render",
        "storage",
    )
    info_type: ClassVar[type] = BenchmarkInfo

    config: BenchmarkConfig

    def section(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)


def run_benchmark(inputs: BenchmarkInputs) -> Manifest[BenchmarkInfo]:
    """Write the long, short and pretrain sets into the stage folder (cached by parameters)."""

    def build(folder: Path) -> StageResult[BenchmarkInfo]:
        described = write_benchmark(inputs.config, folder)
        atomic_write_json(folder / "benchmark.json", described)
        info = BenchmarkInfo(
            test_queries=described["test_queries"],
            chance_r1=described["chance_r1"],
            long_relevant_share_mean=described["long_relevant_share_mean"],
            long_mean_seconds=described["long_mean_seconds"],
        )
        return StageResult(outputs={"benchmark": "benchmark.json"}, info=info)

    return run_cached(inputs, build)


@dataclass(frozen=True)
class StudyRun:
    """One fine-tuned and evaluated method of one set and seed."""

    set: str
    method: str
    seed: int
    finetune: Manifest[FinetuneInfo]
    evaluate: Manifest[EvaluateInfo]


@dataclass(frozen=True, kw_only=True)
class StudyInputs(StageInputs):
    stage: ClassVar[str] = "study"
    modules: ClassVar[tuple[str, ...]] = (
        "pipeline.study",
        "pipeline.study_plan",
        "pipeline.evaluation",
        "pipeline.reporting.study",
        "pipeline.training.batches",
        "pipeline.training.data",
        "pipeline.training.model_factory",
        "pipeline.training.checkpoints",
        "models",
        "storage",
    )
    info_type: ClassVar[type] = StudyInfo

    benchmark: Manifest[BenchmarkInfo]
    model: ModelConfig
    evaluate: EvaluateConfig
    seeds: tuple[int, ...]
    pretrains: tuple[Manifest[PretrainInfo], ...]  # one per seed, in seed order
    fronts: dict[str, dict[str, Manifest[Any]]]  # set → {"ingest", "extract"}
    runs: tuple[StudyRun, ...]

    def section(self) -> dict[str, Any]:
        return {
            "seeds": list(self.seeds),
            "model": dataclasses.asdict(self.model),
            "evaluate": dataclasses.asdict(self.evaluate),
            "query_temperature": QUERY_TEMPERATURE,
            "resamples": RESAMPLES,
        }

    def upstream(self) -> tuple[Manifest[Any], ...]:
        fronts = [self.fronts[name][stage] for name in SETS for stage in ("ingest", "extract")]
        runs = [m for run in self.runs for m in (run.finetune, run.evaluate)]
        return (self.benchmark, *self.pretrains, *fronts, *runs)


def run_study(
    config: Config,
    artifacts: Path,
    seeds: Sequence[int],
    strategies: Sequence[str] = ("median",),
    execute: Executor = call_directly,
    variants: Sequence[str] = DEFAULT_VARIANTS,
) -> Manifest[StudyInfo]:
    """Every stage of the study (each cached), then the study stage itself."""
    benchmark = execute(
        "long-sparse", run_benchmark, BenchmarkInputs(artifacts=artifacts, config=config.benchmark)
    )
    base = study_config(config, Path(benchmark.path))
    fronts = {
        name: run_front_end(base, name, "extract", artifacts, execute) for name in (PRETRAIN, *SETS)
    }
    pretrains, runs = [], []
    for seed in seeds:
        settings = seeded(base, seed)
        source = fronts[PRETRAIN]
        pretraining = PretrainInputs(
            artifacts=artifacts,
            config=settings.pretrain,
            model=settings.model,
            ingest=source["ingest"],
            extract=source["extract"],
        )
        pretrain = execute(f"seed {seed}", run_pretrain, pretraining)
        pretrains.append(pretrain)
        for name in SETS:
            for method, (section, model) in study_methods(settings, strategies, variants).items():
                label = f"{name} {method} seed {seed}"
                tuning = FinetuneInputs(
                    artifacts=artifacts,
                    variant=method,
                    config=dataclasses.replace(section, dataset=name),
                    model=model,
                    ingest=fronts[name]["ingest"],
                    extract=fronts[name]["extract"],
                    pretrain=pretrain,
                )
                finetune = execute(label, run_finetune, tuning)
                scoring = EvaluateInputs(
                    artifacts=artifacts,
                    variant=method,
                    config=dataclasses.replace(settings.evaluate, dataset=name),
                    model=model,
                    finetune=finetune,
                    ingest=fronts[name]["ingest"],
                    extract=fronts[name]["extract"],
                )
                evaluate = execute(label, run_evaluate, scoring)
                runs.append(StudyRun(name, method, seed, finetune, evaluate))
    inputs = StudyInputs(
        artifacts=artifacts,
        benchmark=benchmark,
        model=base.model,
        evaluate=base.evaluate,
        seeds=tuple(seeds),
        pretrains=tuple(pretrains),
        fronts={name: fronts[name] for name in SETS},
        runs=tuple(runs),
    )
    return execute("study", run_study_stage, inputs)


def run_study_stage(inputs: StudyInputs) -> Manifest[StudyInfo]:
    """Read every run's per-query ranks, add the reference methods, compare, write the files."""

    def build(folder: Path) -> StageResult[StudyInfo]:
        document = analyse(inputs)
        atomic_write_json(folder / "study.json", document)
        atomic_write_text(folder / "study.md", study_markdown(document))
        methods = sorted({row["method"] for row in document["results"]})
        queries = {name: document["queries"][name] for name in SETS}
        info = StudyInfo(seeds=list(inputs.seeds), methods=methods, queries=queries)
        return StageResult(outputs={"study": "study.json", "markdown": "study.md"}, info=info)

    return run_cached(inputs, build)


# ---------------------------------------------------------------- the analysis


def analyse(inputs: StudyInputs) -> dict[str, Any]:
    """study.json's document (the schema of issue 11)."""
    hits: dict[tuple[str, str], dict[int, pd.Series]] = {}  # (set, method) → seed → hit@1
    results, precision, epochs = [], {}, {}
    for run in inputs.runs:
        if "epochs" in run.finetune.outputs:
            lines = run.finetune.output("epochs").read_text().splitlines()
            epochs[(run.set, run.method, run.seed)] = [json.loads(line) for line in lines]
        query_ranks = read_table(run.evaluate.output("ranks")).set_index("pair_id")["rank"]
        metrics = json.loads(run.evaluate.output("metrics").read_text())
        selected = metrics.get("frame_precision")
        precision[(run.set, run.method, run.seed)] = selected
        value = selected["precision_at_k"] if selected and run.method != BASELINE else None
        results.append(result_row(run.set, run.method, run.seed, query_ranks, value))
        hits.setdefault((run.set, run.method), {})[run.seed] = query_ranks <= 1
    for seed, pretrain in zip(inputs.seeds, inputs.pretrains, strict=True):
        for name in SETS:
            baseline = next(
                r for r in inputs.runs if (r.set, r.method, r.seed) == (name, BASELINE, seed)
            )
            for method, query_ranks in reference_ranks(inputs, name, pretrain, baseline).items():
                results.append(result_row(name, method, seed, query_ranks, None))
                hits.setdefault((name, method), {})[seed] = query_ranks <= 1
    return {
        "benchmark": json.loads(inputs.benchmark.output("benchmark").read_text()),
        "seeds": list(inputs.seeds),
        "queries": {name: queries(results, name) for name in SETS},
        "results": results,
        "comparisons": comparisons(hits, inputs.seeds),
        "long_vs_short": long_versus_short(hits, inputs.seeds, *SETS),
        "selector": selector_summary(
            precision, SETS, inputs.evaluate.precision_k, main=inputs.runs[0].method
        ),
        "epochs": epoch_summary(epochs),
        "selection": selections(inputs.runs),
    }


def selections(runs: Sequence[StudyRun]) -> list[dict[str, Any]]:
    """Which epoch each fine-tuned run kept, and on what criterion (empty without validation)."""
    found = []
    for run in runs:
        selection = run.finetune.info.training.selection
        if selection is not None:
            row = {"set": run.set, "method": run.method, "seed": run.seed}
            found.append(row | dataclasses.asdict(selection))
    return found


def reference_ranks(
    inputs: StudyInputs, name: str, pretrain: Manifest[PretrainInfo], baseline: StudyRun
) -> dict[str, pd.Series]:
    """Per-query ranks of query-scored pooling (pretrained model) and oracle pooling (the
    baseline's fine-tuned model), on the set's test pairs."""
    front, config, model_config = inputs.fronts[name], inputs.evaluate, inputs.model
    tokenizer = load_tokenizer(model_config.bert, inputs.artifacts)
    dataset = split_pairs(front["ingest"], front["extract"], config.split, tokenizer, model_config)
    spans = [dataset.clip_seconds(i) for i in range(len(dataset))]
    clips = clip_targets(dataset.video_ids, spans)
    truth = json.loads((Path(front["ingest"].info.root) / GROUND_TRUTH_FILE).read_text())
    device = resolve_device(config.device)
    found = {}
    for method, weights in ((QUERY_SCORED, pretrain), (ORACLE, baseline.finetune)):
        model, _ = build_model(model_config, inputs.artifacts)
        load_weights(weights.output("weights"), model)
        encoded = encode_pairs(model, dataset, config.batch_size, device, keep_frames=True)
        assert encoded.frame_hidden is not None
        frames = [encoded.frame_hidden[i] for i in clips.first]
        if method == QUERY_SCORED:
            scores = query_scored_scores(frames, encoded.text)
        else:
            relevant = []
            for clip, i in zip(frames, clips.first, strict=True):
                seconds, start = set(truth[dataset.pair_ids[i]]["seconds"]), spans[i][0]
                relevant.append(np.array([start + j in seconds for j in range(len(clip))]))
            scores = oracle_scores(frames, relevant, encoded.text)
        found[method] = pd.Series(ranks(scores, clips.targets), index=dataset.pair_ids)
    return found

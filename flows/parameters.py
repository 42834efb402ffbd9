"""The flows' parameters, checked before any work is done (issue 12; DESIGN.md §6).

The flows turn Prefect's own parameter validation off (`validate_parameters=False`): its
pydantic report spans several lines, and these checks cover the types too.

The flow's first step and `fineco submit` call the same functions. A misspelt preset, stage,
override key, strategy or variant therefore fails in seconds, with one line that names it and
lists the valid choices, instead of failing with a traceback after the run has waited in a queue.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.config import STAGES, Config, ConfigError, FinecoConfig
from pipeline.config.loading import load_config
from pipeline.config.runs import parse_stages, with_synthetic_data

STRATEGIES = typing.get_args(typing.get_type_hints(FinecoConfig)["strategy"])


@dataclass(frozen=True)
class PipelineRequest:
    """The checked parameters of a `fineco/full` or stage run."""

    settings: Config
    stages: list[str]  # pipeline order
    rerun: set[str]


@dataclass(frozen=True)
class StudyRequest:
    """The checked parameters of a `fineco/study` run."""

    settings: Config
    seeds: list[int]
    strategies: list[str]
    variants: list[str]


def _names(value: object, key: str) -> list[str]:
    """A list of names from a parameter that must be a list of strings (or None)."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"parameter {key}: expected a list of names, got {value!r}")
    if not all(isinstance(item, str) for item in value):
        raise ConfigError(f"parameter {key}: expected a list of names, got {value!r}")
    return list(value)


def _text(value: object, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"parameter {key}: expected a preset name or YAML path, got {value!r}")
    return value


def _flag(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"parameter {key}: expected true or false, got {value!r}")
    return value


def check_pipeline(
    config: str,
    stages: Sequence[str] | None,
    rerun: Sequence[str] | None,
    overrides: Sequence[str] | None,
    synthetic: bool,
) -> PipelineRequest:
    """The settings and stage lists of a pipeline run, or a ConfigError naming the bad value."""
    chosen, reruns = _pipeline_shape(config, stages, rerun, overrides, synthetic)
    settings = load_config(config, list(overrides or []))
    if synthetic:
        settings = with_synthetic_data(settings)
    return PipelineRequest(settings, chosen, reruns)


def _pipeline_shape(
    config: object, stages: object, rerun: object, overrides: object, synthetic: object
) -> tuple[list[str], set[str]]:
    """Everything of a pipeline run's parameters but the config's content; the stage lists."""
    _text(config, "config")
    _names(overrides, "overrides")
    _flag(synthetic, "synthetic")
    chosen = parse_stages(_names(stages, "stages") or list(STAGES))
    return chosen, set(parse_stages(_names(rerun, "rerun")))


def check_study(
    config: str,
    seeds: int,
    strategies: Sequence[str] | None,
    variants: Sequence[str] | None,
    quick: bool,
    overrides: Sequence[str] | None,
    rerun_analysis: bool = False,
    read_config: bool = True,
) -> StudyRequest | None:
    """The settings and method lists of a study run, or a ConfigError naming the bad value.
    Without `read_config`, everything but the config's content is checked (and None returned)."""
    from pipeline.study_plan import DEFAULT_VARIANTS, FINECO_VARIANTS, study_settings

    _flag(rerun_analysis, "rerun_analysis")
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ConfigError(f"parameter seeds: must be a whole number of at least 1, got {seeds!r}")
    chosen_strategies = _names(strategies, "strategies") or ["median"]
    unknown = [name for name in chosen_strategies if name not in STRATEGIES]
    if unknown:
        raise ConfigError(f"unknown strategy(ies) {unknown}; strategies: {', '.join(STRATEGIES)}")
    chosen_variants = _names(variants, "variants") or list(DEFAULT_VARIANTS)
    unknown = [name for name in chosen_variants if name not in FINECO_VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant(s) {unknown}; variants: {', '.join(FINECO_VARIANTS)}")
    config, override_list = _text(config, "config"), _names(overrides, "overrides")
    quick = _flag(quick, "quick")
    if not read_config:
        return None
    settings, seed_list = study_settings(config, override_list, seeds, quick)
    return StudyRequest(settings, seed_list, chosen_strategies, chosen_variants)


PIPELINE_PARAMETERS = ("config", "stages", "rerun", "overrides", "synthetic")
STUDY_PARAMETERS = (
    *("config", "seeds", "strategies", "variants", "quick", "overrides", "rerun_analysis"),
)


def check_deployment_parameters(
    deployment: str, parameters: Mapping[str, Any], read_config: bool = True
) -> None:
    """Check the full parameters (the deployment's defaults with the caller's on top) of a run of
    `fineco/<deployment>`, as its flow's first step will: a ConfigError names what is wrong.
    Without `read_config` (a config file only the workers have), the config is not read."""
    study = deployment == "study"
    known = STUDY_PARAMETERS if study else PIPELINE_PARAMETERS
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ConfigError(
            f"fineco/{deployment} has no parameter(s) {unknown}; parameters: {', '.join(known)}"
        )
    if study:
        check_study(
            parameters.get("config", "study"),
            parameters.get("seeds", 3),
            parameters.get("strategies"),
            parameters.get("variants"),
            parameters.get("quick", False),
            parameters.get("overrides"),
            parameters.get("rerun_analysis", False),
            read_config,
        )
        return
    defaults = {"config": "demo", "synthetic": False}
    values = [parameters.get(name, defaults.get(name)) for name in PIPELINE_PARAMETERS]
    (check_pipeline if read_config else _pipeline_shape)(*values)

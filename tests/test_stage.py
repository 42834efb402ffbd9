"""Typed stage inputs, the one cache key and the run-once rule of DESIGN.md §3."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pipeline.stage import StageInputs, StageResult, rebuilding, run_cached, stage_key
from storage.atomic import atomic_output, atomic_write_json, remove_stale_temporaries
from storage.layout import MANIFEST_NAME, Manifest, cache_key, read_manifest


@dataclass(frozen=True)
class ToyInfo:
    n: int


@dataclass(frozen=True, kw_only=True)
class ToyInputs(StageInputs):
    stage: ClassVar[str] = "toy"
    modules: ClassVar[tuple[str, ...]] = ("storage.layout",)
    info_type: ClassVar[type] = ToyInfo

    a: int = 1
    upstream_manifests: tuple[Manifest[Any], ...] = ()
    declared: tuple[tuple[str, Path], ...] = ()
    asked: list[str] = field(default_factory=list, compare=False)  # each section() call

    def section(self) -> dict[str, Any]:
        self.asked.append("section")
        return {"a": self.a}

    def upstream(self) -> tuple[Manifest[Any], ...]:
        return self.upstream_manifests

    def files(self) -> dict[str, Path]:
        return dict(self.declared)


def _build_counter(calls: list[Path], text: str = "result"):
    def build(folder: Path) -> StageResult[ToyInfo]:
        calls.append(folder)
        (folder / "out.txt").write_text(text)
        return StageResult(outputs={"out": "out.txt"}, info=ToyInfo(n=len(calls)))

    return build


def test_second_call_is_a_cache_hit_with_typed_facts(tmp_path: Path) -> None:
    calls: list[Path] = []
    first = run_cached(ToyInputs(artifacts=tmp_path), _build_counter(calls))
    second = run_cached(ToyInputs(artifacts=tmp_path), _build_counter(calls))
    assert len(calls) == 1
    assert first == second and second.output("out").read_text() == "result"
    assert second.info == ToyInfo(n=1)  # read back from manifest.json as its type
    assert second.output_digests["out"] and second.digest


def test_key_is_known_before_the_stage_runs_and_computed_once(tmp_path: Path) -> None:
    inputs = ToyInputs(artifacts=tmp_path)
    key = inputs.key  # what an orchestrator's cache_key_fn asks first
    assert key == stage_key(ToyInputs(artifacts=tmp_path)) and not (tmp_path / "toy").exists()
    manifest = run_cached(inputs, _build_counter([]))
    assert manifest.cache_key == key and Path(manifest.path) == tmp_path / "toy" / key
    assert inputs.asked == ["section"]  # the run used the key computed before it


def test_key_changes_with_section_upstream_files_and_code() -> None:
    base = cache_key("toy", {"a": 1}, ["d1"], "code1", {"f": "x"})
    assert cache_key("toy", {"a": 2}, ["d1"], "code1", {"f": "x"}) != base
    assert cache_key("toy", {"a": 1}, ["d2"], "code1", {"f": "x"}) != base
    assert cache_key("toy", {"a": 1}, ["d1"], "code2", {"f": "x"}) != base
    assert cache_key("toy", {"a": 1}, ["d1"], "code1", {"f": "y"}) != base
    assert cache_key("toy", {"a": 1}, ["d1"], "code1", {"f": None}) != base
    assert cache_key("other", {"a": 1}, ["d1"], "code1", {"f": "x"}) != base
    assert cache_key("toy", {"a": 1}, ["d1"], "code1", {"f": "x"}) == base


def test_declared_file_content_decides_the_key(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    declared = (("truth", truth),)
    absent = stage_key(ToyInputs(artifacts=tmp_path, declared=declared))
    truth.write_text("[1]")
    present = stage_key(ToyInputs(artifacts=tmp_path, declared=declared))
    truth.write_text("[2]")
    edited = stage_key(ToyInputs(artifacts=tmp_path, declared=declared))
    moved = tmp_path / "elsewhere.json"
    truth.rename(moved)
    same_content = stage_key(ToyInputs(artifacts=tmp_path, declared=(("truth", moved),)))
    assert len({absent, present, edited}) == 3
    assert same_content == edited  # keyed by role and content, not by path


def test_downstream_key_follows_upstream_content(tmp_path: Path) -> None:
    """Upstream digests are content digests: new outputs re-key downstream, equal ones do not."""
    first = run_cached(ToyInputs(artifacts=tmp_path, a=1), _build_counter([], "x"))
    changed = run_cached(ToyInputs(artifacts=tmp_path, a=2), _build_counter([], "y"))
    same = run_cached(ToyInputs(artifacts=tmp_path, a=3), _build_counter([], "x"))

    def downstream(upstream: Manifest[Any]) -> str:
        return stage_key(ToyInputs(artifacts=tmp_path, a=0, upstream_manifests=(upstream,)))

    assert downstream(changed) != downstream(first)
    assert downstream(same) == downstream(first)


def test_failed_build_leaves_no_manifest(tmp_path: Path) -> None:
    inputs = ToyInputs(artifacts=tmp_path)

    def broken(folder: Path) -> StageResult[ToyInfo]:
        (folder / "partial.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_cached(inputs, broken)
    folder = tmp_path / "toy" / inputs.key
    assert read_manifest(folder, lambda raw: raw) is None
    calls: list[Path] = []
    run_cached(inputs, _build_counter(calls))  # the retry runs again
    assert len(calls) == 1 and (folder / MANIFEST_NAME).is_file()


def test_facts_of_the_wrong_type_are_refused(tmp_path: Path) -> None:
    def wrong(folder: Path) -> StageResult[Any]:
        (folder / "out.txt").write_text("x")
        return StageResult(outputs={"out": "out.txt"}, info={"n": 1})

    with pytest.raises(TypeError, match="returned dict facts, expected ToyInfo"):
        run_cached(ToyInputs(artifacts=tmp_path), wrong)


def test_atomic_output_keeps_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "t.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(ValueError), atomic_output(target) as tmp:
        tmp.write_text("partial")
        raise ValueError("writer died")
    assert target.read_text().strip().startswith("{") and '"v": 1' in target.read_text()
    assert list(tmp_path.iterdir()) == [target]


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".x.h5.tmp-123-abcd").write_text("left by a killed writer")
    (tmp_path / "kept.h5").write_text("complete")
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["kept.h5"]


def test_rebuilding_runs_a_complete_stage_again(tmp_path: Path) -> None:
    calls: list[Path] = []
    inputs = ToyInputs(artifacts=tmp_path)
    run_cached(inputs, _build_counter(calls))
    with rebuilding():
        again = run_cached(inputs, _build_counter(calls))
    assert len(calls) == 2 and again.output("out").read_text() == "result"
    assert len(list((tmp_path / "toy").glob(f"{inputs.key}.replaced-*"))) == 1

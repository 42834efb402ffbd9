"""Cache keys, manifests and the run-once rule of DESIGN.md §3."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.stage import StageResult, StageSpec, run_cached
from storage.atomic import atomic_output, atomic_write_json, remove_stale_temporaries
from storage.layout import MANIFEST_NAME, cache_key, read_manifest


def _build_counter(calls: list[Path]):
    def build(folder: Path) -> StageResult:
        calls.append(folder)
        (folder / "out.txt").write_text("result")
        return StageResult(outputs={"out": "out.txt"}, info={"n": 1})

    return build


def test_second_call_is_a_cache_hit(tmp_path: Path) -> None:
    calls: list[Path] = []
    spec = StageSpec("toy", {"a": 1}, [], ["storage.layout"])
    first = run_cached(tmp_path, spec, _build_counter(calls))
    second = run_cached(tmp_path, spec, _build_counter(calls))
    assert len(calls) == 1
    assert first.digest == second.digest and first.cache_key == second.cache_key
    assert second.output("out").read_text() == "result"
    assert second.info["n"] == 1


def test_key_changes_with_section_upstream_and_code(tmp_path: Path) -> None:
    base = cache_key("toy", {"a": 1}, ["d1"], "code1")
    assert cache_key("toy", {"a": 2}, ["d1"], "code1") != base
    assert cache_key("toy", {"a": 1}, ["d2"], "code1") != base
    assert cache_key("toy", {"a": 1}, ["d1"], "code2") != base
    assert cache_key("other", {"a": 1}, ["d1"], "code1") != base
    assert cache_key("toy", {"a": 1}, ["d1"], "code1") == base


def _writer(text: str):
    def build(folder: Path) -> StageResult:
        (folder / "out.txt").write_text(text)
        return StageResult(outputs={"out": "out.txt"})

    return build


def test_downstream_key_follows_upstream_content(tmp_path: Path) -> None:
    """Upstream digests are content digests: new outputs re-key downstream, equal ones do not."""
    modules = ["storage.layout"]
    first = run_cached(tmp_path, StageSpec("up", {"a": 1}, [], modules), _writer("x"))
    changed = run_cached(tmp_path, StageSpec("up", {"a": 2}, [], modules), _writer("y"))
    same = run_cached(tmp_path, StageSpec("up", {"a": 3}, [], modules), _writer("x"))
    key = StageSpec("down", {}, [first], modules).key()
    assert StageSpec("down", {}, [changed], modules).key() != key
    assert StageSpec("down", {}, [same], modules).key() == key


def test_failed_build_leaves_no_manifest(tmp_path: Path) -> None:
    spec = StageSpec("toy", {"a": 1}, [], ["storage.layout"])

    def broken(folder: Path) -> StageResult:
        (folder / "partial.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_cached(tmp_path, spec, broken)
    folder = tmp_path / "toy" / spec.key()
    assert read_manifest(folder) is None
    calls: list[Path] = []
    run_cached(tmp_path, spec, _build_counter(calls))  # the retry runs again
    assert len(calls) == 1 and (folder / MANIFEST_NAME).is_file()


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


def test_stage_key_probes_without_running(tmp_path: Path) -> None:
    from pipeline.stage import stage_key

    calls: list[Path] = []
    spec = StageSpec("toy", {"a": 1}, [], ["storage.layout"])
    key = stage_key(lambda: run_cached(tmp_path, spec, _build_counter(calls)))
    assert key == f"toy-{spec.key()}"
    assert calls == [] and not (tmp_path / "toy").exists()


def test_rebuilding_runs_a_complete_stage_again(tmp_path: Path) -> None:
    from pipeline.stage import rebuilding

    calls: list[Path] = []
    spec = StageSpec("toy", {"a": 1}, [], ["storage.layout"])
    run_cached(tmp_path, spec, _build_counter(calls))
    with rebuilding():
        again = run_cached(tmp_path, spec, _build_counter(calls))
    assert len(calls) == 2 and again.output("out").read_text() == "result"
    assert len(list((tmp_path / "toy").glob(f"{spec.key()}.replaced-*"))) == 1

"""Stage progress in the stages' own units (issue 12): every unit reported, 100 % at the end."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from pathlib import Path

from pipeline import progress
from pipeline.config import STAGES
from pipeline.config.loading import load_config
from pipeline.runner import run_stages


def test_tallies_add_up_across_threads_that_copied_the_context() -> None:
    seen: list[tuple[str, int, int]] = []
    with progress.listening(lambda what, done, total: seen.append((what, done, total))):
        progress.expect("videos", 40, done=10)
        context = contextvars.copy_context()
        workers = [
            threading.Thread(target=context.copy().run, args=(_advance_ten,)) for _ in range(3)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        progress.at_least("videos", 25, 40)  # behind the workers' count: it does not go back
        before_the_end = seen[-1]
        progress.at_least("videos", 40, 40)  # the gathered count says all are done
    progress.advance("videos")  # nobody listens any more: nothing happens
    assert seen[0] == ("videos", 10, 40)
    assert before_the_end == ("videos", 39, 40)  # workers' counts never show the end
    assert seen[-1] == ("videos", 40, 40)
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)
    assert len(seen) == 1 + 30 + 2


def _advance_ten() -> None:
    for _ in range(10):
        progress.advance("videos")


def test_every_stage_reports_its_units_up_to_the_total(
    fresh_root: Callable[[str], Path],
) -> None:
    """decode in videos, extract in video-seconds, training in steps (each one), evaluate in
    pairs; a stage's last report is its total."""
    config = load_config("tiny", ["decode.workers=1"])  # shards in this process: per video
    seen: list[tuple[str, int, int]] = []
    with progress.listening(lambda what, done, total: seen.append((what, done, total))):
        run_stages(config, list(STAGES), fresh_root("progress"))
    kinds = {what for what, _, _ in seen}
    assert {"decode: videos", "extract: video-seconds", "training steps"} <= kinds, kinds
    assert any(
        what.startswith("evaluate: ") and what.endswith(" pairs encoded") for what in kinds
    ), kinds
    for kind in kinds:
        reports = [(done, total) for what, done, total in seen if what == kind]
        assert reports[-1][0] == reports[-1][1] > 0, (kind, reports[-3:])
    steps = [done for what, done, _ in seen if what == "training steps"]
    assert set(range(1, max(steps) + 1)) <= set(steps)  # one report per step

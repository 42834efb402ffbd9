"""Session fixtures: what many tests need is made once per test session and shared.

- `tiny_synth`: the `tiny` preset's synthetic sets (HowTo100M, YouCookII, MSR-VTT, MSVD and
  DiDeMo formats), rendered once into a session artifact root.
- `tiny_run`: every stage of the `tiny` preset, run once on that root: features, the pretrained
  and fine-tuned tiny checkpoints, evaluations and the report. Tests that read these, or add runs
  beside them (other overrides, other presets), use the same root; runs already there are cache
  hits. A test that edits a shared input restores it before it ends.
- `fresh_artifacts` (`fresh_root(name)` for more than one): a new artifact root holding a copy of
  the rendered sets (files and mtimes), for tests that change the inputs or need stages that
  have never run on them.
- `prefect_server`: one Prefect test server (SQLite) for the session.
- `main_thread_owns_pythons_global_rng`: other threads draw from a private `random` while a
  test runs (draw-for-draw comparisons, hypothesis).
"""

from __future__ import annotations

import os

os.environ.setdefault("DO_NOT_TRACK", "1")  # before Prefect is imported: no analytics
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import random
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.config import STAGES
from pipeline.config.loading import load_config
from pipeline.runner import Results, run_stages
from pipeline.synth.sets import synthesize
from storage.layout import expand_path

SYNTH_FOLDER = "synth"  # tiny.yaml: synth.out_dir = {artifacts}/synth/tiny


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session artifact root with the tiny synthetic sets under `synth/tiny`."""
    root = tmp_path_factory.mktemp("tiny-artifacts")
    config = load_config("tiny")
    synthesize(config.synth, expand_path(config.synth.out_dir, root))
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_synth: Path) -> Results:
    """Every stage of the tiny preset on the session root (run once)."""
    return run_stages(load_config("tiny"), STAGES, tiny_synth)


@pytest.fixture(scope="session")
def synthetic_copy(tiny_synth: Path) -> Callable[[Path], Path]:
    """Makes `root` a new artifact root with a copy of the synthetic sets (contents, mtimes)."""

    def copy(root: Path) -> Path:
        shutil.copytree(tiny_synth / SYNTH_FOLDER, root / SYNTH_FOLDER)
        return root

    return copy


@pytest.fixture
def fresh_root(synthetic_copy: Callable[[Path], Path], tmp_path: Path) -> Callable[[str], Path]:
    """Makes new artifact roots under the test's tmp_path, each with its own copy of the sets."""
    return lambda name: synthetic_copy(tmp_path / name)


@pytest.fixture
def fresh_artifacts(fresh_root: Callable[[str], Path]) -> Path:
    """A new artifact root with a copy of the synthetic sets (a test may change them)."""
    return fresh_root("artifacts")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One Prefect API server (a temporary SQLite database) for every test that needs one."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


_DRAWS = ("random", "uniform", "randint", "randrange", "choice", "choices", "shuffle", "sample")


@pytest.fixture
def main_thread_owns_pythons_global_rng(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests that compare runs draw for draw, python's global `random` included (the training
    loop must checkpoint and restore it), and for hypothesis (it checks that nothing else moved
    the global generator during a draw). Background threads that earlier tests of the session
    leave behind (Prefect's event-loop thread, whose reconnect back-off draws jitter from
    `random`) can shift those draws at any moment: while such a test runs, every other thread
    calling these module functions draws from a private generator instead, and the main thread
    from the global one as before. Draws through other functions are not diverted (hypothesis
    still warns once in a full run, cause not found)."""
    main, private = threading.main_thread(), random.Random(0)

    def dispatching(name: str) -> Callable[..., object]:
        shared = getattr(random, name)

        def draw(*args: object, **kwargs: object) -> object:
            own = threading.current_thread() is main
            return (shared if own else getattr(private, name))(*args, **kwargs)

        return draw

    for name in _DRAWS:
        monkeypatch.setattr(random, name, dispatching(name))

"""DDP under torchrun on CPU (gloo, 2 processes) against one process.

Tolerance: one step's loss to 1e-6 relative and every gradient to 1e-5 + 1e-4 relative (float32
sums in another order); a 2-process tiny fine-tune's losses to 1e-4 relative at every step and its
final weights to 1e-4 + 1e-3 relative, with the same evaluate metrics.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.config import Config
from pipeline.config.loading import load_config
from pipeline.config.runs import with_processes
from pipeline.runner import Results, run_stages
from pipeline.training.checkpoints import LATEST, checkpoint_name
from pipeline.training.data import make_loader, rank_share
from storage.layout import MANIFEST_NAME

STEP_SCRIPT = Path(__file__).with_name("ddp_step.py")


def _steps(out: Path, nproc: int) -> dict[str, dict]:
    """{"gather": the step with gathered negatives, "local": without} (module ddp_step)."""
    if nproc == 1:  # no process group: the steps run here
        from ddp_step import main

        main(out)
        return torch.load(out)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc-per-node={nproc}", str(STEP_SCRIPT), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return torch.load(out)


def _assert_same_gradients(one: dict, two: dict) -> None:
    names = set(one) | set(two)
    for name in sorted(names):
        first = one.get(name)
        second = two.get(name)
        first = torch.zeros_like(second) if first is None else first
        second = torch.zeros_like(first) if second is None else second
        torch.testing.assert_close(second, first, atol=1e-5, rtol=1e-4, msg=name)


def test_one_step_on_two_processes_equals_one_process(tmp_path: Path) -> None:
    """Gathered negatives, the global median threshold and the row weighting: loss and every
    gradient of a 2-rank step (3 + 2 rows) equal one process on the 5-clip batch. The check can
    fail: with each rank's negatives its own rows, the 2-rank loss is lower."""
    one = _steps(tmp_path / "one.pt", 1)["gather"]  # one process: gathering changes nothing
    steps = _steps(tmp_path / "two.pt", 2)
    two, local = steps["gather"], steps["local"]
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-6)
    for name in ("l1", "l2"):
        assert two["parts"][name] == pytest.approx(one["parts"][name], rel=1e-6)
    assert len(one["grads"]) > 10
    _assert_same_gradients(one["grads"], two["grads"])
    assert local["parts"]["l2"] < one["parts"]["l2"] - 1e-3  # fewer negatives, lower loss


def test_rank_shares_cover_each_batch_once() -> None:
    batch = list(range(7))
    shares = [rank_share(batch, rank, 3) for rank in range(3)]
    assert shares == [[0, 1, 2], [3, 4], [5, 6]]
    loaders = [
        make_loader(list(range(10)), 4, True, 0, 1, 0, rank=rank, world_size=2)  # type: ignore[arg-type]
        for rank in range(2)
    ]
    assert loaders[0].batch_sampler is not None and loaders[1].batch_sampler is not None
    one = make_loader(list(range(10)), 4, True, 0, 1, 0)  # type: ignore[arg-type]
    for whole, first, second in zip(
        one.batch_sampler, loaders[0].batch_sampler, loaders[1].batch_sampler, strict=True
    ):
        assert list(first) + list(second) == list(whole)


def _config(nproc: int) -> Config:
    config = with_processes(load_config("tiny", ["model.dropout=0"]), nproc)
    # Pretraining is left out (the fine-tune starts from the tiny random init), and so is the
    # baseline: the FineCo variant runs every loss the baseline does and more.
    finetune = dataclasses.replace(config.finetune, from_pretrain=False, baseline=False)
    return dataclasses.replace(config, finetune=finetune)


def _finetunes(results: Results) -> dict[str, Path]:
    return {
        variant: Path(results[variant]["finetune"].path)
        for variant in ("fineco", "baseline")
        if "finetune" in results.get(variant, {})
    }


def _losses(folder: Path) -> list[float]:
    lines = (folder / "checkpoints" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    return load_file(folder / manifest["outputs"]["weights"])


def _assert_same_run(first: Path, second: Path) -> None:
    assert _losses(second) == pytest.approx(_losses(first), rel=1e-4)
    one, two = _weights(first), _weights(second)
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-4, rtol=1e-3, msg=name)


def _cut_back(folder: Path, step: int) -> None:
    """Make a finished fine-tune look killed after its checkpoint at `step`."""
    (folder / MANIFEST_NAME).unlink()
    checkpoints = folder / "checkpoints"
    for later in checkpoints.glob("checkpoint-*"):
        if later.name > checkpoint_name(step):
            for path in later.iterdir():
                path.unlink()
            later.rmdir()
    (checkpoints / LATEST).write_text(checkpoint_name(step) + "\n")


def test_two_process_fine_tune_matches_one_process_and_resumes_with_another_count(
    fresh_root: Callable[[str], Path],
) -> None:
    """`--nproc 2` end to end through the stages (torchrun launches, rank 0's files, the
    manifest here): the same losses, weights and metrics as one process; a run killed after
    step 4 under one process resumes under two, and one killed under two resumes under one."""
    one_root, two_root = fresh_root("one"), fresh_root("two")
    one = run_stages(_config(1), ["evaluate"], one_root)
    two = run_stages(_config(2), ["evaluate"], two_root)
    for variant, folder in _finetunes(one).items():
        _assert_same_run(folder, _finetunes(two)[variant])
        assert two[variant]["evaluate"].info.plain == one[variant]["evaluate"].info.plain

    reference = {variant: _weights(folder) for variant, folder in _finetunes(one).items()}
    for root, nproc in ((one_root, 2), (two_root, 1)):  # resume with the other count
        for folder in _finetunes(one if root == one_root else two).values():
            _cut_back(folder, 4)
        resumed = run_stages(_config(nproc), ["finetune"], root)
        for variant, folder in _finetunes(resumed).items():
            assert resumed[variant]["finetune"].info.training.resumed_from_step == 4
            for name, tensor in _weights(folder).items():
                torch.testing.assert_close(
                    tensor, reference[variant][name], atol=1e-4, rtol=1e-3, msg=name
                )


def test_a_batch_that_cannot_feed_every_process_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10 items in batches of 4 end with a batch of 2: one process trains on it, so 4 processes
    must not leave it out (other steps, other key content); the error says what fits."""
    from pipeline.training import ddp, fit

    assert fit._drops_last_batch(9, 4, contrastive=True, shuffled=True)  # a lone item: dropped
    assert not fit._drops_last_batch(10, 4, contrastive=True, shuffled=True)
    monkeypatch.setattr(ddp, "world_size", lambda: 4)
    with pytest.raises(ValueError, match="make a batch of 2: run at most 2 processes"):
        fit._drops_last_batch(10, 4, contrastive=True, shuffled=True)
    assert fit._drops_last_batch(9, 4, contrastive=True, shuffled=True)  # same rule as one


def test_nproc_auto_is_one_process_on_the_cpu() -> None:
    from pipeline.config import OptimConfig
    from pipeline.training.launch import resolve_nproc

    assert resolve_nproc(OptimConfig(device="cpu")) == 1
    assert resolve_nproc(OptimConfig(device="cpu", nproc=3)) == 3


def test_a_rank_that_fails_ends_the_launch_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Rank 1 raises after a DDP step while rank 0 waits in a collective: the failed rank exits,
    torchrun stops rank 0 and the stage fails naming the error, in seconds rather than at the
    2-hour collective timeout."""
    from concurrent.futures import ThreadPoolExecutor

    from ddp_step import failing_build

    from pipeline.training.launch import _launch

    monkeypatch.setenv("PYTHONPATH", str(STEP_SCRIPT.parent))  # the ranks import ddp_step
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    caplog.set_level("INFO", logger="pipeline.training.launch")
    with ThreadPoolExecutor(1) as pool:
        launch = pool.submit(_launch, failing_build, None, 2, "gloo", tmp_path)
        with pytest.raises(RuntimeError, match="2-process torchrun run exited with 1"):
            launch.result(timeout=240)
    assert "rank 1 fails on purpose" in caplog.text

"""pipeline/training/loop.py on a toy regression: schedule, bit-for-bit resume, NaN guard,
metrics."""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.config import OptimConfig
from pipeline.training.checkpoints import latest_checkpoint, load_weights
from pipeline.training.loop import LossTerms, NonFiniteLossError, train
from pipeline.training.schedule import effective_warmup, lr_factor, resolve_amp

ITEMS, BATCH, IN, OUT = 16, 4, 5, 3  # 4 steps per epoch
# Draw for draw comparisons: no other thread may draw from python's global `random` (conftest).
pytestmark = pytest.mark.usefixtures("main_thread_owns_pythons_global_rng")


STEPS_PER_EPOCH = ITEMS // BATCH
DATA = torch.Generator().manual_seed(1234)
INPUTS = torch.randn(ITEMS, IN, generator=DATA)  # (N, IN)
TARGETS = torch.randn(ITEMS, OUT, generator=DATA)  # (N, OUT)


@dataclass
class ToyBatch:
    x: torch.Tensor  # (B, IN)
    y: torch.Tensor  # (B, OUT)

    @property
    def size(self) -> int:
        return int(self.x.shape[0])

    def to(self, device) -> ToyBatch:
        return ToyBatch(self.x.to(device), self.y.to(device))


def make_loader(seed: int):
    """Shuffled batches in an order fixed by (seed, epoch), as pipeline.training.data does."""

    def loader(epoch: int, skip_batches: int):
        order = torch.randperm(ITEMS, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for start in range(skip_batches * BATCH, ITEMS, BATCH):
            index = order[start : start + BATCH]
            yield ToyBatch(INPUTS[index], TARGETS[index])

    return loader


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN, 7), nn.Tanh(), nn.Dropout(0.3), nn.Linear(7, OUT))


def toy_loss(model: nn.Module, batch: ToyBatch) -> LossTerms:
    # numpy and python draws too, so every generator a checkpoint holds matters
    jitter = 1.0 + 0.1 * float(np.random.rand()) + 0.1 * random.random()
    mse = nn.functional.mse_loss(model(batch.x), batch.y)
    return LossTerms(mse * jitter, {"mse": mse.item(), "jitter": jitter})


def config(**changes) -> OptimConfig:
    values = dict(
        epochs=3,
        batch_size=BATCH,
        lr=1e-2,
        warmup_steps=3,
        decay_power=1.0,
        checkpoint_every=4,
        amp="off",
        device="cpu",
        seed=7,
    )
    return OptimConfig(**{**values, **changes})


def run(out_dir, model=None, loss_fn=toy_loss, **kwargs):
    model = make_model() if model is None else model
    optim = config(**kwargs.pop("optim", {}))
    result = train(
        model, loss_fn, make_loader(optim.seed), STEPS_PER_EPOCH, optim, out_dir, **kwargs
    )
    return model, result


def metrics(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def scramble_rngs() -> None:
    torch.manual_seed(999)
    np.random.seed(999)
    random.seed(999)


def test_lr_factor_warms_up_linearly_then_decays_polynomially():
    # warm-up 4 of 12 steps, power 2: factor s/4, then (1 - (s - 4) / 8) ** 2
    expected = {0: 0.0, 1: 0.25, 2: 0.5, 4: 1.0, 6: 0.5625, 8: 0.25, 10: 0.0625, 11: 1 / 64}
    for step, value in expected.items():
        assert lr_factor(step, 4, 12, 2.0) == pytest.approx(value), step
    assert lr_factor(12, 4, 12, 2.0) == 0.0
    assert lr_factor(20, 4, 12, 2.0) == 0.0
    assert lr_factor(0, 0, 10, 1.0) == 1.0
    assert lr_factor(5, 0, 10, 1.0) == pytest.approx(0.5)


def test_warmup_longer_than_the_run_is_clamped(caplog):
    assert effective_warmup(50, 600) == 50
    with caplog.at_level(logging.WARNING, logger="pipeline.training.loop"):
        assert effective_warmup(1000, 750) == 75
        assert effective_warmup(1000, 12) == 1
    assert "warmup_steps=1000 is not below the run's 750 steps" in caplog.text


def test_the_optimizer_follows_the_schedule(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.training.loop"):
        _, result = run(tmp_path, optim={"warmup_steps": 100})  # clamped to 12 // 10 = 1
    assert "warming up over 1 steps" in caplog.text
    lines = metrics(result.metrics_path)
    assert [line["step"] for line in lines] == list(range(1, 13))
    for line in lines:
        assert line["lr"] == pytest.approx(1e-2 * lr_factor(line["step"] - 1, 1, 12, 1.0))
        assert line["epoch"] == (line["step"] - 1) // STEPS_PER_EPOCH
        assert line["grad_norm"] > 0 and line["samples_per_s"] > 0
        assert set(line["parts"]) == {"mse", "jitter"}


def test_decay_steps_sets_the_horizon_as_mmpt(tmp_path):
    """MMPT's fine-tuning schedule: warm-up, then a decay over 1e6 updates, so the lr stays
    within a hair of its peak for a run of any practical length."""
    _, result = run(tmp_path, optim={"warmup_steps": 2, "decay_steps": 1_000_000})
    lrs = [line["lr"] for line in metrics(result.metrics_path)]
    assert lrs[:2] == pytest.approx([0.0, 0.5e-2])
    assert lrs[2:] == pytest.approx([1e-2 * (1 - s / 999_998) for s in range(10)])
    assert min(lrs[2:]) > 0.99999e-2


def test_decay_steps_must_end_after_the_warm_up_and_a_short_one_is_said(tmp_path, caplog):
    with pytest.raises(ValueError, match=r"optim.decay_steps = 2 must exceed the warm-up \(2"):
        run(tmp_path / "a", optim={"warmup_steps": 2, "decay_steps": 2})
    with caplog.at_level(logging.WARNING):
        _, result = run(tmp_path / "b", optim={"warmup_steps": 2, "decay_steps": 6})
    assert "ends before the run's 12 steps" in caplog.text
    assert [line["lr"] for line in metrics(result.metrics_path)][6:] == [0.0] * 6


def test_resume_is_bit_for_bit(tmp_path):
    whole, whole_result = run(tmp_path / "whole")
    assert (whole_result.steps, whole_result.resumed_from) == (12, None)

    _, first = run(tmp_path / "split", stop_after=6)  # mid-epoch 1
    assert first.steps == 6
    assert first.final_checkpoint.name == "checkpoint-00000006"
    scramble_rngs()
    resumed, second = run(tmp_path / "split", model=make_model(seed=3))
    assert (second.steps, second.resumed_from) == (12, 6)

    for (name, expected), actual in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(expected, actual), name
    whole_lines, split_lines = metrics(whole_result.metrics_path), metrics(second.metrics_path)
    assert [line["step"] for line in split_lines] == list(range(1, 13))
    for key in ("loss", "lr", "parts", "grad_norm", "epoch"):
        assert [line[key] for line in split_lines] == [line[key] for line in whole_lines], key
    names = sorted(p.name for p in (tmp_path / "split").glob("checkpoint-*"))
    assert names == ["checkpoint-00000008", "checkpoint-00000012"]  # keep = 2


def test_metrics_after_the_checkpoint_are_dropped_on_resume(tmp_path):
    _, whole_result = run(tmp_path / "whole")
    calls = 0

    def dies_at_step_6(model, batch):
        nonlocal calls
        calls += 1
        if calls == 6:
            raise KeyboardInterrupt  # a kill after step 5 was logged, step 4 checkpointed
        return toy_loss(model, batch)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", loss_fn=dies_at_step_6)
    path = tmp_path / "killed" / "metrics.jsonl"
    with path.open("a") as handle:
        handle.write('{"step": 6, "lo')  # a line torn by the kill
    assert latest_checkpoint(tmp_path / "killed").name == "checkpoint-00000004"

    scramble_rngs()
    _, resumed = run(tmp_path / "killed")
    assert resumed.resumed_from == 4
    lines = metrics(path)
    assert [line["step"] for line in lines] == list(range(1, 13))
    assert [line["loss"] for line in lines] == [
        line["loss"] for line in metrics(whole_result.metrics_path)
    ]


def test_nan_loss_stops_before_the_update_and_keeps_the_checkpoint(tmp_path):
    calls = 0

    def nan_at_step_6(model, batch):
        nonlocal calls
        calls += 1
        terms = toy_loss(model, batch)
        if calls == 6:
            return LossTerms(terms.total * math.nan, {**terms.parts, "mse": math.nan})
        return terms

    model = make_model()
    with pytest.raises(
        NonFiniteLossError, match=r"loss is nan at step 6 \(epoch 1, batch 2"
    ) as info:
        run(tmp_path, model=model, loss_fn=nan_at_step_6)
    assert "'mse': nan" in str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint.name == "checkpoint-00000004"
    load_weights(checkpoint, make_model())
    assert [line["step"] for line in metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4, 5]


def test_a_finished_run_returns_at_once_with_its_weights(tmp_path):
    trained, result = run(tmp_path)
    again_model, again = run(tmp_path, model=make_model(seed=5))
    assert (again.steps, again.resumed_from) == (12, 12)
    assert again.final_checkpoint == result.final_checkpoint
    for expected, actual in zip(trained.parameters(), again_model.parameters()):
        assert torch.equal(expected, actual)
    assert len(metrics(result.metrics_path)) == 12


def test_resuming_with_another_schedule_is_refused(tmp_path):
    run(tmp_path, stop_after=2)
    with pytest.raises(ValueError, match=r"lr=0.01, this run asks for 0.02"):
        run(tmp_path, optim={"lr": 2e-2})


def test_a_short_loader_is_an_error(tmp_path):
    optim = config()

    def short(epoch, skip_batches):
        return list(make_loader(optim.seed)(epoch, skip_batches))[:2]

    with pytest.raises(ValueError, match="gave 2 batches after skipping 0; expected 4"):
        train(make_model(), toy_loss, short, STEPS_PER_EPOCH, optim, tmp_path)


def test_amp_choices():
    cpu = torch.device("cpu")
    assert resolve_amp("off", cpu) is None
    assert resolve_amp("auto", cpu) is None
    assert resolve_amp("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="amp=fp16 needs a CUDA device"):
        resolve_amp("fp16", cpu)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_on_cuda_checkpoints_and_resumes(tmp_path, amp):
    _, first = run(tmp_path, stop_after=6, optim={"device": "cuda", "amp": amp})
    assert (first.final_checkpoint / "scaler.pt").is_file() == (amp == "fp16")
    state = json.loads((first.final_checkpoint / "trainer_state.json").read_text())
    assert state["amp"] == {"bf16": "bfloat16", "fp16": "float16"}[amp]
    model, second = run(tmp_path, optim={"device": "cuda", "amp": amp})
    assert (second.steps, second.resumed_from) == (12, 6)
    assert next(model.parameters()).device.type == "cuda"
    assert all(math.isfinite(line["loss"]) for line in metrics(second.metrics_path))


def toy_validation(model: nn.Module, epoch: int) -> dict:
    """An epoch hook like finetune's: an eval-mode pass that draws from no global generator."""
    model.eval()
    with torch.no_grad():
        error = nn.functional.mse_loss(model(INPUTS), TARGETS).item()
    return {"mse": error, "seen_epoch": epoch}


def test_the_epoch_hook_records_every_epoch_and_leaves_training_unchanged(tmp_path):
    plain, _ = run(tmp_path / "plain")
    hooked, _ = run(tmp_path / "hooked", on_epoch=toy_validation)
    for (name, expected), actual in zip(plain.state_dict().items(), hooked.state_dict().values()):
        assert torch.equal(expected, actual), name  # validation changes no generator
    lines = metrics(tmp_path / "hooked" / "epochs.jsonl")
    assert [(line["epoch"], line["step"], line["seen_epoch"]) for line in lines] == [
        (0, 4, 0),
        (1, 8, 1),
        (2, 12, 2),
    ]
    assert all(line["mse"] > 0 for line in lines)
    assert hooked.training  # back in train mode after the hook
    # a checkpoint at every epoch end, whatever checkpoint_every says
    _, sparse = run(tmp_path / "sparse", on_epoch=toy_validation, optim={"checkpoint_every": 0})
    assert len(metrics(tmp_path / "sparse" / "epochs.jsonl")) == 3
    assert sparse.final_checkpoint.name == "checkpoint-00000012"


def test_an_epoch_whose_record_a_kill_cut_off_is_validated_on_resume(tmp_path):
    """Killed between epoch 1's checkpoint and its line: the resumed run validates epoch 1
    first; lines after the resumed checkpoint are dropped."""
    _, first = run(tmp_path, on_epoch=toy_validation, stop_after=8)
    lines = (tmp_path / "epochs.jsonl").read_text().splitlines()
    (tmp_path / "epochs.jsonl").write_text(lines[0] + "\n")  # epoch 1's line never written
    calls = []

    def counting(model: nn.Module, epoch: int) -> dict:
        calls.append(epoch)
        return toy_validation(model, epoch)

    _, second = run(tmp_path, on_epoch=counting)
    assert (first.steps, second.resumed_from, second.steps) == (8, 8, 12)
    assert calls == [1, 2]
    records = metrics(tmp_path / "epochs.jsonl")
    assert [(line["epoch"], line["step"]) for line in records] == [(0, 4), (1, 8), (2, 12)]

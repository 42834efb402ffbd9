"""pipeline/training/checkpoints.py: round trip, strict weights, atomic writes, pruning."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from pipeline.training import checkpoints
from pipeline.training.checkpoints import (
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)


class TiedModel(nn.Module):
    """An embedding and an output layer sharing one weight (as BERT's decoder does)."""

    def __init__(self, vocab: int = 11, hidden: int = 7, extra: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.mix = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, vocab)
        self.out.weight = self.embed.weight
        if extra:
            self.head = nn.Linear(hidden, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, vocab)
        return self.out(torch.tanh(self.mix(self.embed(ids))))


def trained(seed: int = 0, steps: int = 3) -> tuple[TiedModel, torch.optim.Adam, LambdaLR]:
    torch.manual_seed(seed)
    model = TiedModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.98))
    scheduler = LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    for _ in range(steps):
        ids = torch.randint(0, 11, (5,))
        loss = nn.functional.cross_entropy(model(ids), ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def save(folder, step, model=None, keep=2):
    model, optimizer, scheduler = trained() if model is None else (model, *trained()[1:])
    return save_checkpoint(folder, step, model, optimizer, scheduler, {"epoch": 0}, keep=keep)


def draws() -> tuple[torch.Tensor, float, float]:
    return torch.rand(3), float(np.random.rand()), random.random()


def test_round_trip_restores_weights_optimizer_scheduler_and_rng(tmp_path):
    model, optimizer, scheduler = trained()
    path = save_checkpoint(tmp_path, 3, model, optimizer, scheduler, {"epoch": 1, "note": "x"})
    assert path == tmp_path / "checkpoint-00000003"
    assert latest_checkpoint(tmp_path) == path
    expected = draws()

    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    fresh_model, fresh_optimizer, fresh_scheduler = trained(seed=5, steps=1)
    state = load_checkpoint(path, fresh_model, fresh_optimizer, fresh_scheduler)

    assert state == {"epoch": 1, "note": "x", "step": 3}
    for (name, tensor), fresh in zip(model.state_dict().items(), fresh_model.state_dict().values()):
        assert torch.equal(tensor, fresh), name
    assert fresh_model.out.weight is fresh_model.embed.weight  # still tied
    saved_state, loaded_state = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert saved_state["param_groups"] == loaded_state["param_groups"]
    for index, slots in saved_state["state"].items():
        for slot, value in slots.items():
            assert torch.equal(value, loaded_state["state"][index][slot]), (index, slot)
    assert fresh_scheduler.last_epoch == scheduler.last_epoch == 3
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()
    restored = draws()
    assert torch.equal(restored[0], expected[0])
    assert restored[1:] == expected[1:]


def test_every_pickle_loads_weights_only(tmp_path):
    path = save(tmp_path, 1)
    for name in ("optimizer.pt", "scheduler.pt", "rng.pt"):
        torch.load(path / name, weights_only=True)
    assert {p.name for p in path.iterdir()} == {
        "model.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "rng.pt",
        "trainer_state.json",
    }


def test_load_weights_is_strict_and_names_the_file(tmp_path):
    path = save(tmp_path, 1)
    with pytest.raises(RuntimeError, match=r"missing keys \['head.bias', 'head.weight'\]") as info:
        load_weights(path, TiedModel(extra=True))
    assert "model.safetensors" in str(info.value)
    assert "unexpected keys []" in str(info.value)

    bigger = save(tmp_path / "bigger", 1, model=TiedModel(extra=True))
    with pytest.raises(RuntimeError, match=r"unexpected keys \['head.bias', 'head.weight'\]"):
        load_weights(bigger / "model.safetensors", TiedModel())

    with pytest.raises(RuntimeError, match=r"model\.safetensors: cannot load into TiedModel"):
        load_weights(path, TiedModel(hidden=9))
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_weights(tmp_path / "nowhere", TiedModel())


def test_failed_write_leaves_latest_on_the_previous_checkpoint(tmp_path, monkeypatch):
    first = save(tmp_path, 4)

    def broken_rng_state():
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoints, "rng_state", broken_rng_state)
    with pytest.raises(OSError, match="No space left"):
        save(tmp_path, 8)
    assert latest_checkpoint(tmp_path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-00000004", "latest"]


def test_killed_writer_leftovers_are_ignored_then_removed(tmp_path):
    first = save(tmp_path, 4)
    # a writer killed mid-way: a hidden half-written folder; one killed after the rename but
    # before `latest`: a complete folder that `latest` does not name
    leftover = tmp_path / ".checkpoint-00000008.tmp-123-abcdef01"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"partial")
    orphan = save(tmp_path / "elsewhere", 12)
    orphan.rename(tmp_path / orphan.name)
    (tmp_path / "latest").write_text(first.name + "\n")

    assert latest_checkpoint(tmp_path) == first
    model = TiedModel()
    load_checkpoint(first, model)

    second = save(tmp_path, 12)  # replaces the orphan
    assert latest_checkpoint(tmp_path) == second
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        "checkpoint-00000004",
        "checkpoint-00000012",
        "elsewhere",
    ]


def test_keeps_the_newest_checkpoints(tmp_path):
    for step in (1, 2, 3, 10, 20):
        save(tmp_path, step)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == [
        "checkpoint-00000010",
        "checkpoint-00000020",
    ]
    save(tmp_path / "three", 1, keep=3)
    for step in (2, 3, 4):
        save(tmp_path / "three", step, keep=3)
    assert len(list((tmp_path / "three").glob("checkpoint-*"))) == 3
    with pytest.raises(ValueError, match="keep must be >= 1"):
        save(tmp_path, 30, keep=0)


def test_latest_checkpoint_when_none_or_broken(tmp_path):
    assert latest_checkpoint(tmp_path / "absent") is None
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "latest").write_text("checkpoint-00000007\n")
    with pytest.raises(FileNotFoundError, match="checkpoint-00000007"):
        latest_checkpoint(tmp_path)

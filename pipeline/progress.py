"""Progress of long stage work, for whoever listens (the Prefect dashboard; nobody by default).

Stage code reports in the stage's own units: `report("training steps", done, total)` where it
knows both numbers; where concurrent workers share the work (decode's shards in threads),
`expect("decode: videos", total)` once and `advance("decode: videos", n)` from each worker.
An orchestrator wraps a run in `listening(callback)` to receive the reports; stage code never
imports Prefect. Without a listener every call is a no-op.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

Listener = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class _Channel:
    listener: Listener
    lock: threading.Lock = field(default_factory=threading.Lock)
    tallies: dict[str, list[int]] = field(default_factory=dict)  # what -> [done, total]


_CHANNEL: ContextVar[_Channel | None] = ContextVar("fineco_progress_channel", default=None)


def report(what: str, done: int, total: int) -> None:
    """`done` of `total` units of `what` finished (a no-op when nobody listens)."""
    channel = _CHANNEL.get()
    if channel is None:
        return
    with channel.lock:  # listeners are called in the order the counts changed
        channel.tallies[what] = [done, total]
        channel.listener(what, done, total)


def expect(what: str, total: int, done: int = 0) -> None:
    """`total` units of `what` are to be done, `done` of them already (say, by a killed run)."""
    report(what, done, total)


def advance(what: str, units: int = 1) -> None:
    """`units` more units of `what` finished; safe from any thread that inherited the context.
    Never shows the work complete (a retried worker may count its units twice): that takes
    `at_least` or `report` with the gathered count."""
    channel = _CHANNEL.get()
    if channel is None:
        return
    with channel.lock:
        tally = channel.tallies.setdefault(what, [0, 0])
        tally[0] += units
        done, total = tally
        channel.listener(what, min(done, total - 1) if total > 0 else done, max(total, done))


def at_least(what: str, done: int, total: int) -> None:
    """At least `done` of `total` units of `what` are finished (a count taken where the work is
    gathered; finer `advance` calls from the workers may already be ahead of it)."""
    channel = _CHANNEL.get()
    if channel is None:
        return
    with channel.lock:
        tally = channel.tallies.setdefault(what, [0, total])
        tally[0], tally[1] = max(tally[0], done), total
        shown = total if done >= total else min(tally[0], total - 1)
        channel.listener(what, shown, total)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Deliver every report made inside this block (this thread, and threads started with a copy
    of its context) to `listener`."""
    token = _CHANNEL.set(_Channel(listener))
    try:
        yield
    finally:
        _CHANNEL.reset(token)

"""Progress of long stage work, for whoever listens (the Prefect dashboard; nobody by default).

Stage code calls `report("decode youcook2: shards", done, total)`; an orchestrator wraps a run
in `listening(callback)` to receive those reports. Stage code never imports Prefect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

Listener = Callable[[str, int, int], None]  # (what, done, total)

_LISTENER: ContextVar[Listener | None] = ContextVar("fineco_progress_listener", default=None)


def report(what: str, done: int, total: int) -> None:
    """`done` of `total` units of `what` finished (a no-op when nobody listens)."""
    listener = _LISTENER.get()
    if listener is not None:
        listener(what, done, total)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Deliver every `report` made inside this block (same thread or context) to `listener`."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)

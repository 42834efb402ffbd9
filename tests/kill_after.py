"""Run the `fineco` command line in this process and SIGKILL it right after the N-th return of
one function, so a resume test kills at a known point instead of after a timed wait.

    python tests/kill_after.py MODULE:ATTRIBUTE N fineco-arguments...

e.g. `storage.pool:ShardPool.commit 1 run --config tiny --stages decode` dies the moment its
first decoded shard is complete.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
from collections.abc import Callable
from typing import Any


def wrap_returns(target: str, after: Callable[[int], object]) -> None:
    """Replace MODULE:ATTRIBUTE (ATTRIBUTE may be Class.method) by a wrapper that calls
    `after(n)` after its n-th return."""
    module_name, _, attribute = target.partition(":")
    *owners, name = attribute.split(".")
    owner: Any = importlib.import_module(module_name)
    for part in owners:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    returned = 0

    @functools.wraps(original)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal returned
        result = original(*args, **kwargs)
        returned += 1
        after(returned)
        return result

    setattr(owner, name, wrapped)


def kill_after(target: str, count: int) -> None:
    """Wrap MODULE:ATTRIBUTE to SIGKILL this process after `count` returns."""

    def after(returned: int) -> None:
        if returned == count:
            os.kill(os.getpid(), signal.SIGKILL)

    wrap_returns(target, after)


if __name__ == "__main__":
    kill_after(sys.argv[1], int(sys.argv[2]))
    from flows.cli import main

    sys.exit(main(sys.argv[3:]))

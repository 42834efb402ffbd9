"""Which Prefect flow or task run the calling thread is in (the dashboard modules' shared need)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from prefect.context import FlowRunContext, TaskRunContext, get_run_context
from prefect.exceptions import MissingContextError


@dataclass(frozen=True)
class RunIds:
    flow_run_id: UUID
    task_run_id: UUID | None  # None when in a flow run outside any task


def run_ids() -> RunIds | None:
    """Ids of the flow/task run this thread is in, or None outside a run."""
    try:
        context = get_run_context()
    except MissingContextError:
        return None
    if isinstance(context, TaskRunContext):
        return RunIds(context.task_run.flow_run_id, context.task_run.id)
    if isinstance(context, FlowRunContext) and context.flow_run is not None:
        return RunIds(context.flow_run.id, None)
    return None

"""Waiting on an execution (or one of its actions) by polling
`GetExecution`: simple, and it survives a coordinator failover."""

import time
from typing import Callable, Optional

from ferry.v1 import executions_pb2 as ex

from .errors import FerryError, call

FINAL_STATUSES = frozenset({
    ex.EXECUTION_STATUS_SUCCEEDED,
    ex.EXECUTION_STATUS_FAILED,
    ex.EXECUTION_STATUS_STOPPED,
    ex.EXECUTION_STATUS_SUPERSEDED,
})

# Retried while waiting: the cluster may be electing a leader.
TRANSIENT = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}


def _poll(client, pipeline: str, execution_id: str, done: Callable, timeout: float,
          interval: float) -> ex.ExecutionView:
    deadline = time.monotonic() + timeout
    last: Optional[ex.ExecutionView] = None
    while True:
        try:
            last = call(client.executions.GetExecution,
                        ex.GetExecutionRequest(pipeline=pipeline, execution_id=execution_id))
            if done(last):
                return last
        except FerryError as e:
            if e.code.name not in TRANSIENT:
                raise
        if time.monotonic() >= deadline:
            status = ex.ExecutionStatus.Name(last.status) if last else "unknown"
            raise TimeoutError(f"execution {execution_id} of {pipeline} still {status} after {timeout}s")
        time.sleep(interval)


def wait_for_execution(client, pipeline: str, execution_id: str, timeout: float = 600.0,
                       interval: float = 1.0) -> ex.ExecutionView:
    """The execution once it reached a final status."""
    return _poll(client, pipeline, execution_id, lambda v: v.status in FINAL_STATUSES,
                 timeout, interval)


def wait_for_action(client, pipeline: str, execution_id: str, stage: str, action: str,
                    status: int, timeout: float = 600.0, interval: float = 1.0) -> ex.ExecutionView:
    """The execution once action `stage`/`action` has `status` (an
    `ActionStatus` value, e.g. `ACTION_STATUS_WAITING_FOR_APPROVAL`)."""

    def reached(v: ex.ExecutionView) -> bool:
        for s in v.stages:
            if s.name == stage:
                return any(a.name == action and a.status == status for a in s.actions)
        return False

    return _poll(client, pipeline, execution_id, reached, timeout, interval)

"""Request ids for writes that must not happen twice (StartExecution,
Decide, StopExecution, RetryStage, ApplyPipeline): send the same id again
after a lost answer, and the cluster answers the first result."""

import uuid


def new_request_id() -> str:
    """A fresh id (a random UUID), to reuse for every retry of one request."""
    return str(uuid.uuid4())

"""Ferry's Python client: the generated `ferry.v1` stubs, and a small layer
for what every client needs: a mutually authenticated channel that checks
the server is a coordinator of the expected cluster (`connect`), error
reasons (`FerryError`), request ids (`new_request_id`), pagination
(`pages`) and waiting on an execution (`wait_for_execution`).

    from ferry_client import connect, new_request_id
    from ferry.v1 import executions_pb2 as ex

    client = connect("127.0.0.1:7443", ca="ca.pem", cert="me.pem", key="me-key.pem")
    started = client.executions.StartExecution(
        ex.StartExecutionRequest(pipeline="hello", request_id=new_request_id()))
"""

from .connection import Client, connect
from .errors import FerryError, Violation, call
from .pages import pages
from .requests import new_request_id
from .waiting import FINAL_STATUSES, wait_for_execution, wait_for_action

__all__ = [
    "Client",
    "connect",
    "FerryError",
    "Violation",
    "call",
    "pages",
    "new_request_id",
    "FINAL_STATUSES",
    "wait_for_execution",
    "wait_for_action",
]

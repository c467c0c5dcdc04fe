"""Errors as the API sends them: a gRPC code, a message for people, and
`google.rpc.Status` details. `FerryError.reason` is the stable word a
client branches on (`FOUR_EYES`, `MISSING_ROLE`, `LINT_FAILED`,
`REQUEST_ID_REUSED`, ...; docs/api.md lists them); `violations` are a lint
failure's problems, each with its file, line and column."""

from dataclasses import dataclass, field
from typing import Callable, List, Optional, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

DOMAIN = "ferry.v1"

T = TypeVar("T")


@dataclass
class Violation:
    """One problem of a refused file (`BadRequest.FieldViolation`)."""

    file: str
    line: int
    column: int
    message: str

    @staticmethod
    def parse(field_path: str, description: str) -> "Violation":
        file, line, column = field_path, 0, 0
        parts = field_path.rsplit(":", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            file, line, column = parts[0], int(parts[1]), int(parts[2])
        return Violation(file, line, column, description)


@dataclass
class FerryError(Exception):
    code: grpc.StatusCode
    message: str
    reason: str = "UNSPECIFIED"
    metadata: dict = field(default_factory=dict)
    violations: List[Violation] = field(default_factory=list)
    preconditions: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"

    @staticmethod
    def from_rpc_error(e: grpc.RpcError) -> "FerryError":
        code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
        message = e.details() if hasattr(e, "details") else str(e)
        err = FerryError(code=code, message=message or "")
        status = rpc_status.from_call(e) if hasattr(e, "trailing_metadata") else None
        if status is None:
            return err
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain == DOMAIN:
                    err.reason = info.reason
                    err.metadata = dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                err.violations = [Violation.parse(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                pre = error_details_pb2.PreconditionFailure()
                detail.Unpack(pre)
                err.preconditions = [v.description for v in pre.violations]
        return err


def call(method: Callable[..., T], request, timeout: Optional[float] = 30.0, **kwargs) -> T:
    """`method(request)`, with a gRPC error turned into a `FerryError`."""
    try:
        return method(request, timeout=timeout, **kwargs)
    except grpc.RpcError as e:
        raise FerryError.from_rpc_error(e) from e

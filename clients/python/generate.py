"""Generates the `ferry.v1` stubs (messages and gRPC clients) from the
repository's protos with grpcio-tools, into ./ferry/v1. Run it before
`pip install .`; the generated code is not kept in git."""

import pathlib
import sys

from grpc_tools import protoc
import grpc_tools

HERE = pathlib.Path(__file__).resolve().parent
PROTOS = HERE.parent.parent / "proto" / "proto"


def main() -> int:
    files = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "ferry" / "v1").glob("*.proto"))
    if not files:
        print(f"no protos under {PROTOS}", file=sys.stderr)
        return 1
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    out = HERE
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *files,
        ]
    )
    if code != 0:
        return code
    for package in (out / "ferry", out / "ferry" / "v1"):
        (package / "__init__.py").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())

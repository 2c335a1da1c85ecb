"""The committed protobuf code is what `make proto` generates from shoal.proto today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO = Path("controller/api/proto/shoal.proto")


@pytest.mark.parametrize("suffix", ["_pb2.py", "_pb2.pyi"])
def test_generated_code_matches_the_proto(tmp_path: Path, suffix: str) -> None:
    # The same command as the Makefile's proto target, into a scratch dir.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            str(PROTO),
        ],
        cwd=ROOT,
        check=True,
    )
    name = PROTO.with_name(PROTO.stem + suffix)
    fresh, committed = (tmp_path / name).read_bytes(), (ROOT / name).read_bytes()
    assert fresh == committed, f"{name} is stale: run `make proto` and commit the result"

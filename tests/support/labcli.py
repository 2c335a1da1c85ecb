"""`shoal lab` driven as a user would, for the lab's end-to-end tests: a unique prefix and state/run
dirs under the test's tmp dir, and `lab_cli()`, which removes whatever lab is left when it exits."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deploy.lab import lab as lab_impl
from deploy.lab.state import load_state

SHOAL = str(Path(sys.executable).parent / "shoal")


class LabCli:
    def __init__(self, base: Path) -> None:
        self.prefix = f"lt{uuid.uuid4().hex[:5]}"
        self.state_dir = base / "state"
        self.run_dir = base / "run"
        self.env = os.environ | {"SHOAL_CONTEXT": str(base / "context.json"), "SHOAL_LAB_PREFIX": self.prefix}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        extra = ["--run-dir", str(self.run_dir)] if args[0] == "up" else []
        argv = [SHOAL, "lab", *args, "--state-dir", str(self.state_dir), *extra]
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"shoal lab {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def status(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(self("status", "-o", "json").stdout)
        return info

    def ready(self, node: str) -> bool:
        state = load_state(self.state_dir)
        assert state is not None
        return lab_impl.node_readiness(state).get(node, False)


@contextlib.contextmanager
def lab_cli(base: Path) -> Iterator[LabCli]:
    cli = LabCli(base)
    try:
        yield cli
    finally:
        if load_state(cli.state_dir) is not None:  # the test failed before its own `lab down`
            lab_impl.down(cli.state_dir)

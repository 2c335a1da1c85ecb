"""Real parts for integration tests: a docker-registry seeded with busybox, and agents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agent import AgentProcess
from tests.support.registry import Registry, push_busybox


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    base = tmp_path_factory.mktemp("registry")
    with Registry(base) as reg:
        push_busybox(reg, base / "seed")
        yield reg


@pytest.fixture
def agent(tmp_path: Path, registry: Registry) -> Iterator[AgentProcess]:
    with AgentProcess(tmp_path, registry.host, ["--bind-allow", str(tmp_path / "binds")]) as a:
        (tmp_path / "binds").mkdir()
        yield a

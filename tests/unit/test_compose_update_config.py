"""Compose's deploy.update_config / rollback_config -> the spec's, with errors naming file and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import InvalidArgument
from controller.api.types import UpdateConfig
from deploy.compose.to_specs import load_stack


def load(tmp_path: Path, deploy: str) -> UpdateConfig | tuple[UpdateConfig, UpdateConfig]:
    path = tmp_path / "app.yml"
    path.write_text(f"services:\n  web:\n    image: busybox\n    deploy:\n{deploy}")
    [spec] = load_stack(path, "shop", {}).specs
    return spec.update_config, spec.rollback_config


def test_keys_map_to_the_spec_and_unset_keys_keep_dockers_defaults(tmp_path: Path) -> None:
    update, rollback = load(
        tmp_path,
        "      update_config:\n"
        "        parallelism: 2\n        delay: 10s\n        failure_action: rollback\n"
        "        monitor: 1m30s\n        max_failure_ratio: 0.3\n        order: start-first\n"
        "      rollback_config: {parallelism: 0, monitor: 2}\n",
    )
    assert update == UpdateConfig(
        parallelism=2,
        delay=10.0,
        failure_action="rollback",
        monitor=90.0,
        max_failure_ratio=0.3,
        order="start-first",
    )
    assert rollback == UpdateConfig(parallelism=0, monitor=2.0)
    assert load(tmp_path, "      replicas: 2\n") == (UpdateConfig(), UpdateConfig())


@pytest.mark.parametrize(
    ("deploy", "message"),
    [
        (
            "update_config: {parallelism: -1}",
            "services.web.deploy.update_config.parallelism: -1: input should be",
        ),
        (
            "update_config: {delay: soon}",
            "services.web.deploy.update_config.delay: 'soon': expected a duration",
        ),
        (
            "update_config: {failure_action: retry}",
            "services.web.deploy.update_config.failure_action: 'retry'",
        ),
        (
            "update_config: {max_failure_ratio: 2}",
            "services.web.deploy.update_config.max_failure_ratio: 2: input",
        ),
        ("update_config: {order: sideways}", "services.web.deploy.update_config.order: 'sideways'"),
        ("update_config: {speed: 3}", "services.web.deploy.update_config.speed: unknown key"),
        (
            "rollback_config: {failure_action: rollback}",
            "services.web.deploy.rollback_config.failure_action: 'rollback': a rollback can only pause",
        ),
    ],
)
def test_errors_name_the_file_path_and_rule(tmp_path: Path, deploy: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        load(tmp_path, f"      {deploy}\n")
    assert str(err.value).startswith(f"{tmp_path / 'app.yml'}: {message}")

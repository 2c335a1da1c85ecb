"""Compose files -> stack specs: what is accepted, what is ignored with one warning, and bad input
that must fail with one line naming the file, the field path and the rule."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from agent.errors import InvalidArgument
from controller.api.types import HealthCheck
from deploy.compose import NAMESPACE_LABEL
from deploy.compose.interpolate import Interpolation
from deploy.compose.load import MAX_BYTES
from deploy.compose.to_specs import Stack, load_stack


def write(tmp_path: Path, text: str, name: str = "compose.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Stack:
    return load_stack(write(tmp_path, text), "shop", env or {})


FULL = """
    version: "3.9"
    x-common: &common
      image: busybox
    services:
      web:
        <<: *common
        command: httpd -f -p ${PORT:-8080}
        entrypoint: ["/bin/sh", "-c"]
        environment: [A=1, FROM_SHELL, NOT_SET]
        env_file: web.env
        ports: ["8080:80", 9000, {target: 53, published: "5353", protocol: udp, mode: host}]
        labels: {team: shop}
        build: .
        depends_on: [db]
        healthcheck: {test: ["CMD", "true"]}
        deploy:
          replicas: 3
          labels: [tier=front]
          update_config: {parallelism: 1}
          restart_policy: {condition: on-failure, delay: 2s, max_attempts: 3, window: 1m}
          resources:
            limits: {cpus: "0.5", memory: 64M, pids: 100}
            reservations: {cpus: 0.25, memory: 32m}
          placement:
            constraints: ["node.labels.zone == a"]
            preferences: [{spread: node.labels.zone}]
            max_replicas_per_node: 2
      agent:
        image: busybox
        environment: {DEBUG: true, LEVEL: 3, EMPTY: null}
        deploy: {mode: global}
      migrate:
        image: busybox
        command: ["echo", "done"]
        deploy: {mode: replicated-job, replicas: 2}
"""


def test_a_full_file_becomes_specs_named_and_labelled_for_the_stack(tmp_path: Path) -> None:
    (tmp_path / "web.env").write_text("# comment\nFROM_FILE='yes'\nA=from-file\n")
    stack = load(tmp_path, FULL, {"FROM_SHELL": "sh", "LEVEL": "ignored"})
    agent, migrate, web = stack.specs
    assert [s.name for s in stack.specs] == ["shop_agent", "shop_migrate", "shop_web"]
    assert all(s.labels[NAMESPACE_LABEL] == "shop" for s in stack.specs)
    assert web.command == ["httpd", "-f", "-p", "8080"] and web.entrypoint == ["/bin/sh", "-c"]
    assert web.env == ["FROM_FILE=yes", "A=1", "FROM_SHELL=sh"], "environment wins over env_file"
    assert [(p.published, p.target, p.protocol) for p in web.ports] == [
        (8080, 80, "tcp"),
        (9000, 9000, "tcp"),
        (5353, 53, "udp"),
    ]
    assert web.labels == {"team": "shop", "tier": "front", NAMESPACE_LABEL: "shop"}
    assert web.replicas == 3 and web.mode == "replicated"
    policy = web.restart_policy
    assert (policy.condition, policy.delay, policy.max_attempts, policy.window) == ("on-failure", 2, 3, 60)
    limits, reservations = web.resources.limits, web.resources.reservations
    assert (limits.nano_cpus, limits.memory_bytes, limits.pids) == (500_000_000, 64 << 20, 100)
    assert (reservations.nano_cpus, reservations.memory_bytes) == (250_000_000, 32 << 20)
    assert web.placement.constraints == ["node.labels.zone == a"]
    assert web.placement.preferences == ["spread=node.labels.zone"]
    assert web.placement.max_replicas_per_node == 2
    assert agent.mode == "global" and agent.env == ["DEBUG=true", "LEVEL=3"]
    assert migrate.mode == "replicated-job" and migrate.total_completions == 2
    assert migrate.restart_policy.condition == "on-failure", "a job's tasks must be able to end"
    [warning] = [w for w in stack.warnings() if w.startswith("Ignoring")]
    for key in ("x-common", "services.web.build", "services.web.depends_on"):
        assert key in warning
    assert "healthcheck" not in warning and web.healthcheck == HealthCheck(test=["CMD", "true"])
    assert "update_config" not in warning and web.update_config.parallelism == 1
    assert "version" not in warning
    [ingress] = [w for w in stack.warnings() if w.startswith("Publishing")]
    assert "services.web.ports[0], services.web.ports[1] in host mode" in ingress, "ports[2] says host"
    assert stack.unset == [], "NOT_SET without a value is left out, as Compose does"


def test_interpolation_forms() -> None:
    i = Interpolation({"SET": "v", "EMPTY": ""}, "f.yml")
    assert i.string("$SET ${SET} $$SET", "x") == "v v $SET"
    assert i.string("${EMPTY:-d} ${EMPTY-d} ${MISSING-d}", "x") == "d  d"
    assert i.string("${SET:+alt} ${EMPTY:+alt} ${EMPTY+alt}", "x") == "alt  alt"
    assert i.string("${SET:?boom}", "x") == "v"
    assert i.string("a${MISSING}b", "x") == "ab" and i.unset == ["MISSING"]
    with pytest.raises(InvalidArgument, match=r"f.yml: services.web.image: required variable TAG .*set TAG"):
        i.string("busybox:${TAG:?set TAG}", "services.web.image")
    assert i.value({"k": ["$SET", 1]}, "") == {"k": ["v", 1]}


def test_nested_defaults_are_interpolated_only_when_used() -> None:
    i = Interpolation({"SET": "v", "EMPTY": ""}, "f.yml")
    assert i.string("${EMPTY:-${SET}}/${MISSING:-${ALSO_MISSING:-d}}", "x") == "v/d"
    assert i.string("${SET:-${NEVER:?unused}} ${SET:+[${SET}]} ${EMPTY:-$$}", "x") == "v [v] $"
    assert i.unset == []
    with pytest.raises(InvalidArgument, match=r"required variable EMPTY is missing: set v"):
        i.string("${EMPTY:?set ${SET}}", "x")
    for bad in ("${SET", "${SET:-${X}", "${SET!x}", "${}", "$-"):
        with pytest.raises(InvalidArgument, match=r"f.yml: x: invalid interpolation"):
            i.string(bad, "x")


BAD = [
    ("duplicate key", "services:\n  web:\n    image: a\n    image: b\n", r"line 4.*duplicate key"),
    ("not yaml", "services: [\n", r"compose.yml: line"),
    ("not a mapping", "- a\n- b\n", r"expected a mapping with a services"),
    ("no services", "services: {}\n", r"compose.yml: services: .*at least 1"),
    (
        "missing image",
        "services:\n  web: {command: x}\n",
        r"compose.yml: services.web.image: this field is required",
    ),
    (
        "bad replicas",
        "services:\n  web: {image: a, deploy: {replicas: -1}}\n",
        r"services.web.deploy.replicas: -1",
    ),
    (
        "bad mode",
        "services:\n  web: {image: a, deploy: {mode: daemon}}\n",
        r"services.web.deploy.mode: 'daemon'",
    ),
    (
        "bad memory",
        "services:\n  web: {image: a, deploy: {resources: {limits: {memory: lots}}}}\n",
        r"services.web.deploy.resources.limits.memory: 'lots': expected a size",
    ),
    ("bad port", "services:\n  web: {image: a, ports: ['80:http']}\n", r"services.web.ports\[0\]: '80:http'"),
    ("port range", "services:\n  web: {image: a, ports: ['70000']}\n", r"services.web.ports\[0\].*65535"),
    (
        "bad duration",
        "services:\n  web: {image: a, deploy: {restart_policy: {delay: soon}}}\n",
        r"services.web.deploy.restart_policy.delay: 'soon': expected a duration",
    ),
    (
        "unknown key in deploy",
        "services:\n  web: {image: a, deploy: {replica: 2}}\n",
        r"services.web.deploy.replica: unknown key",
    ),
    (
        "bad constraint",
        "services:\n  web: {image: a, deploy: {placement: {constraints: [zone=a]}}}\n",
        r"compose.yml: services.web: invalid placement.constraints\[0\]",
    ),
    (
        "bad restart condition",
        "services:\n  web: {image: a, deploy: {restart_policy: {condition: always}}}\n",
        r"services.web.deploy.restart_policy.condition: 'always'",
    ),
    (
        "required variable",
        "services:\n  web: {image: 'a:${TAG:?no tag}'}\n",
        r"services.web.image: required variable TAG",
    ),
    (
        "bad interpolation",
        "services:\n  web: {image: 'a:$1'}\n",
        r"services.web.image: invalid interpolation",
    ),
    (
        "bad env file",
        "services:\n  web: {image: a, env_file: nope.env}\n",
        r"services.web.env_file\[0\]: cannot read",
    ),
    ("bad service name", "services:\n  'we b': {image: a}\n", r"compose.yml: services.we b: invalid name"),
    ("bad label list", "services:\n  web: {image: a, labels: ['=x']}\n", r"services.web.labels\[0\]: '=x'"),
]


@pytest.mark.parametrize(("text", "pattern"), [(t, p) for _, t, p in BAD], ids=[n for n, _, _ in BAD])
def test_bad_input_is_one_line_naming_file_path_and_rule(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        load_stack(write(tmp_path, text), "shop", {})
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "compose.yml"))
    assert caught.value.exit_code == 3

    assert re.search(pattern, message), message


def test_size_and_alias_expansion_are_capped(tmp_path: Path) -> None:
    big = write(tmp_path, "services:\n  web: {image: a}\n# " + "x" * MAX_BYTES + "\n")
    with pytest.raises(InvalidArgument, match="larger than 1024 KiB"):
        load_stack(big, "shop", {})
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    laughs += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = write(
        tmp_path, "x-bomb:\n" + "".join(f"  {line}\n" for line in laughs) + "services: {web: {image: a}}\n"
    )
    with pytest.raises(InvalidArgument, match="expands to more than"):
        load_stack(bomb, "shop", {})


def test_a_bad_stack_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="invalid stack name"):
        load_stack(write(tmp_path, "services: {web: {image: a}}\n"), "-shop", {})


def test_volumes_user_workdir_and_stop_settings_are_mapped(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """
        services:
          db:
            image: busybox
            volumes:
              - data:/var/lib/data
              - ./conf:/etc/conf:ro
              - /srv/logs:/logs:rw
              - {type: volume, source: cache, target: /cache, read_only: true}
              - {type: bind, source: /srv/x, target: /x}
              - shared:/shared
            user: 1000
            working_dir: /var/lib/data
            stop_signal: SIGINT
            stop_grace_period: 1m30s
        volumes:
          data:
          cache: {driver: local}
          shared: {external: true}
        """,
    )
    [db] = stack.specs
    assert [(m.type, m.source, m.target, m.read_only) for m in db.mounts] == [
        ("volume", "shop_data", "/var/lib/data", False),
        ("bind", str(tmp_path / "conf"), "/etc/conf", True),
        ("bind", "/srv/logs", "/logs", False),
        ("volume", "shop_cache", "/cache", True),
        ("bind", "/srv/x", "/x", False),
        ("volume", "shared", "/shared", False),
    ]
    assert (db.user, db.working_dir, db.stop_signal, db.stop_grace_period) == (
        "1000",
        "/var/lib/data",
        "SIGINT",
        90,
    )
    assert not any(w.startswith("Ignoring") for w in stack.warnings())


VOLUME_BAD = [
    (
        "services:\n  web: {image: a, volumes: ['data:/d']}\n",
        r"services.web.volumes\[0\]: volume 'data' is not declared",
    ),
    (
        "services:\n  web: {image: a, volumes: ['/d']}\n",
        r"services.web.volumes\[0\]: '/d': anonymous volumes",
    ),
    (
        "services:\n  web: {image: a, volumes: ['v:/d:rx']}\nvolumes: {v: }\n",
        r"services.web.volumes\[0\]: 'v:/d:rx': unknown mode rx",
    ),
    (
        "services:\n  web: {image: a, volumes: ['a:b:c:d']}\n",
        r"services.web.volumes\[0\]: 'a:b:c:d': expected",
    ),
    (
        "services:\n  web: {image: a, volumes: [{type: tmpfs, target: /t}]}\n",
        r"services.web.volumes\[0\].type: 'tmpfs'",
    ),
    (
        "services:\n  web: {image: a, volumes: ['v:data']}\nvolumes: {v: }\n",
        r"services.web: invalid mounts\[0\].target",
    ),
    ("services:\n  web: {image: a, stop_grace_period: soon}\n", r"services.web.stop_grace_period: 'soon'"),
    ("services:\n  web: {image: a, stop_signal: SIGNOPE}\n", r"services.web: invalid stop_signal 'SIGNOPE'"),
    ("services:\n  web: {image: a, working_dir: app}\n", r"services.web: invalid working_dir 'app'"),
    ("services:\n  web: {image: a}\nvolumes: {v: {driver: nfs}}\n", r"volumes.v.driver: 'nfs'"),
]


@pytest.mark.parametrize(("text", "pattern"), VOLUME_BAD)
def test_bad_volumes_and_process_settings_name_the_path(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        load_stack(write(tmp_path, text), "shop", {})
    message = str(caught.value)
    assert "\n" not in message and re.search(pattern, message), message

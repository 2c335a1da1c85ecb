"""Prometheus for Shoal: the scrape config of a cluster, and the lab's own Prometheus.

One code path renders both the example for a real cluster (deploy/prometheus/prometheus.yml, from
`example_config()`) and the lab's config (`lab_targets(state)`, scraped every second). Jobs and
target labels are the metric catalog's (issue #6): `shoal-controller` targets carry `controller`,
`shoal-agent` and `shoal-netplugin` targets carry `node` (the node id, so they join the
controller's per-node series).

Regenerate the example: `python -m deploy.lab.prometheus > deploy/prometheus/prometheus.yml`.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.errors import Unavailable
from deploy.lab import launch, procs
from deploy.lab.state import LabState, PrometheusState, save_state
from deploy.values import parse_duration

PROMETHEUS_BIN = "/usr/bin/prometheus"
RULES_DIR = Path(__file__).resolve().parents[1] / "prometheus"
RULE_FILES = ("shoal.rules.yml",)
CONTROLLER_JOB, AGENT_JOB, NETPLUGIN_JOB = "shoal-controller", "shoal-agent", "shoal-netplugin"
JOBS = (CONTROLLER_JOB, AGENT_JOB, NETPLUGIN_JOB)
LAB_INTERVAL = "1s"
CLUSTER_INTERVAL = "15s"
DEFAULT_PATH = "/metrics"


@dataclass(frozen=True)
class Target:
    job: str
    address: str
    """host:port of the daemon's --metrics-address."""
    labels: Mapping[str, str] = field(default_factory=dict)
    path: str = DEFAULT_PATH


def target(job: str, url: str, **labels: str) -> Target:
    """A target from a daemon's metrics URL (`http://127.0.0.1:9101/metrics`)."""
    parts = urlsplit(url)
    return Target(job, parts.netloc, labels, parts.path or DEFAULT_PATH)


def lab_targets(state: LabState) -> list[Target]:
    """Every daemon of the lab that serves metrics (all of them, in a lab built with this code)."""
    found = [
        target(CONTROLLER_JOB, c.metrics_url, controller=c.id) for c in state.controllers if c.metrics_url
    ]
    found += [target(AGENT_JOB, n.metrics_url, node=n.name) for n in state.nodes if n.metrics_url]
    found += [
        target(NETPLUGIN_JOB, n.netplugin_metrics_url, node=n.name)
        for n in state.nodes
        if n.netplugin_metrics_url
    ]
    return found


def _timeout(interval: str) -> str:
    # A scrape may not outlast its interval; Prometheus' own default is 10s.
    return interval if parse_duration("scrape_interval", interval) < 10 else "10s"


def scrape_config(
    targets: Iterable[Target],
    interval: str = CLUSTER_INTERVAL,
    rule_files: Iterable[str] = RULE_FILES,
) -> dict[str, Any]:
    """prometheus.yml as data: one job per daemon kind (in JOBS order), one static entry per target
    so each carries its own labels."""
    by_job: dict[str, list[Target]] = {job: [] for job in JOBS}
    for t in targets:
        by_job.setdefault(t.job, []).append(t)
    jobs = []
    for job, members in by_job.items():
        if not members:
            continue
        static = []
        for t in members:
            labels = dict(t.labels)
            if t.path != DEFAULT_PATH:
                labels["__metrics_path__"] = t.path
            static.append({"targets": [t.address], "labels": labels})
        jobs.append({"job_name": job, "static_configs": static})
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": _timeout(interval),
            "evaluation_interval": interval,
        },
        "rule_files": list(rule_files),
        "scrape_configs": jobs,
    }


def render(config: Mapping[str, Any], header: str = "") -> str:
    """YAML text, keys in the order given; `header` lines become leading comments."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(_plain(config), out)
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comments + out.getvalue()


def _plain(value: Any) -> Any:
    """Mappings to dicts and tuples to lists, which ruamel writes as plain YAML."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


EXAMPLE_HEADER = """\
Prometheus config for a Shoal cluster (an example: replace the addresses with yours).

Start every daemon with a metrics listener and list it here:
  shoal controller --metrics-address 0.0.0.0:9401 ...   (each controller; label: controller)
  shoal agent --metrics-address 0.0.0.0:9402 ...        (each node; label: node = its node id)
  shoal netplugin --metrics-address 0.0.0.0:9403 ...    (each node; label: node = its node id)
The `node` label must be the node id that `shoal node ls` shows, so a node's agent and network
plugin series line up with the controller's per-node series (and the Grafana dashboard's $node).
Only the leading controller exports per-service and per-node series: scrape every controller.
Alert rules: shoal.rules.yml next to this file (`promtool test rules shoal.rules.test.yml`).
Dashboard: deploy/grafana/shoal-dashboard.json.

Generated by `python -m deploy.lab.prometheus` (deploy/lab/prometheus.py), which also writes the
config of `shoal lab up --with-prometheus`."""

EXAMPLE_TARGETS = (
    *(Target(CONTROLLER_JOB, f"ctl{i}.example.internal:9401", {"controller": f"ctl{i}"}) for i in (1, 2, 3)),
    *(Target(AGENT_JOB, f"node{i}.example.internal:9402", {"node": f"node{i}"}) for i in (1, 2, 3)),
    *(Target(NETPLUGIN_JOB, f"node{i}.example.internal:9403", {"node": f"node{i}"}) for i in (1, 2, 3)),
)


def example_config() -> str:
    return render(scrape_config(EXAMPLE_TARGETS), EXAMPLE_HEADER)


# ---- the lab's Prometheus ---------------------------------------------------------------------


def argv(config: Path, data_dir: Path, listen: str) -> list[str]:
    return [
        PROMETHEUS_BIN,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address={listen}",
        "--log.level=warn",
    ]


def write_lab_config(state: LabState, workdir: Path) -> Path:
    """The lab's prometheus.yml with copies of the rule files next to it (the lab keeps working
    whatever happens to the checkout it was started from)."""
    # Every lab daemon serves metrics: a lab from before they did had no relay either, so `lab up`
    # rebuilds it (not healthy) instead of adding a Prometheus to it.
    targets = lab_targets(state)
    workdir.mkdir(parents=True, exist_ok=True)
    for name in RULE_FILES:
        source = RULES_DIR / name
        if not source.exists():
            raise Unavailable(f"alert rules {source} not found (run shoal from its source checkout)")
        shutil.copyfile(source, workdir / name)
    config = workdir / "prometheus.yml"
    text = render(scrape_config(targets, LAB_INTERVAL), f"Generated by shoal lab for lab {state.prefix!r}.")
    config.write_text(text)
    return config


def start(state: LabState) -> None:
    """Start the lab's Prometheus (recorded in the state before waiting for /-/ready, so a failed
    start is still removed by `lab down`)."""
    workdir = Path(state.state_dir) / "prometheus"
    config = write_lab_config(state, workdir)
    listen = f"127.0.0.1:{launch.free_ports(1)[0]}"
    state.prometheus = PrometheusState(url=f"http://{listen}", config=str(config))
    state.prometheus.proc = procs.spawn(argv(config, workdir / "data", listen), workdir / "prometheus.log")
    save_state(state)
    launch.wait_prometheus(state.prometheus.proc, state.prometheus.url)


def stop(state: LabState) -> None:
    procs.stop(state.prometheus.proc)


if __name__ == "__main__":
    print(example_config(), end="")

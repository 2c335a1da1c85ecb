"""`shoal agent`: wires the image store, the node and the gRPC server, then waits for a signal.

With an etcd endpoint the agent also joins the cluster: it registers its node (with a TTL lease)
and runs the task worker that turns the node's assignments into containers.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from typing import TYPE_CHECKING

from agent.api import serve
from agent.config import AgentConfig
from agent.images.store import ImageStore
from agent.node import Node

if TYPE_CHECKING:
    from agent.metrics import AgentMetrics
    from agent.metrics_server import MetricsServer

log = logging.getLogger(__name__)


def run(config: AgentConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config.run_dir.mkdir(parents=True, exist_ok=True)
    network = None
    if config.network_env is not None:
        from agent.network import NodeNetwork  # pyroute2 costs ~0.3 s: only agents with a network

        network = NodeNetwork(config.network_env, config.network_dir, config.network_netns)
    metrics: AgentMetrics | None = None
    metrics_server: MetricsServer | None = None
    if config.metrics_address:
        from agent.metrics import AgentMetrics  # prometheus_client: only agents that export them
        from agent.metrics_server import serve_metrics

        metrics = AgentMetrics()
        metrics_server = serve_metrics(config.metrics_address, metrics.registry)
    images = ImageStore(config.images_dir, config.default_registry, metrics.observe_pull if metrics else None)
    node = Node(config, images, network, metrics)
    if metrics is not None:
        metrics.attach(node)
    node.start()
    server = serve(node, config.socket_path)
    log.info("agent ready on unix://%s (state in %s)", config.socket_path, config.state_dir)
    cluster = _join_cluster(config, node, metrics) if config.etcd else None

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    if cluster is not None:
        cluster.close()
    if metrics_server is not None:
        metrics_server.close()
    # Containers keep running: their monitors are independent of the agent (live restore).
    server.stop(grace=2).wait()
    node.close()
    log.info("agent stopped; containers left running")


class _Cluster:
    """Registration and task worker of one agent, closed together (leases are not revoked)."""

    def __init__(self, config: AgentConfig, node: Node, metrics: AgentMetrics | None) -> None:
        # Imported here: etcd3 costs ~0.2 s and a node-local agent does not need it.
        from agent.tasks.node_runtime import NodeRuntime
        from agent.tasks.registration import NodeRegistration
        from agent.tasks.status import SingleStatusWriter
        from agent.tasks.worker import TaskWorker
        from controller.api.types import NodeInfo
        from controller.store.base import Store
        from controller.store.etcd import EtcdStore

        assert config.etcd is not None
        self.store: Store = EtcdStore(config.etcd.split(","))
        if metrics is not None:
            from controller.store.instrumented import InstrumentedStore

            self.store = InstrumentedStore(self.store, metrics.registry)
        info = NodeInfo(
            id=config.node_id,
            hostname=socket.gethostname(),
            address=config.advertise_address,
            nano_cpus=int(config.advertise_cpus * 1e9),
            memory_bytes=config.advertise_memory,
            labels=dict(config.node_labels),
            agent_api=f"unix://{config.socket_path}",
        )
        self.registration = NodeRegistration(self.store, info, config.node_ttl, config.lease_file)
        writer = SingleStatusWriter(self.store)
        self.worker = TaskWorker(config.node_id, self.store, NodeRuntime(node), writer)

    def start(self) -> None:
        self.registration.start()
        self.worker.start()

    def close(self) -> None:
        self.worker.close()
        self.registration.close()
        self.store.close()


def _join_cluster(config: AgentConfig, node: Node, metrics: AgentMetrics | None) -> _Cluster:
    cluster = _Cluster(config, node, metrics)
    cluster.start()
    log.info("node %s joining the cluster at %s (ttl %gs)", config.node_id, config.etcd, config.node_ttl)
    return cluster

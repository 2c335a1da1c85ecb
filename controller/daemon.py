"""`shoal controller`: the API server (every controller serves), the election, and the
orchestrator while this controller leads. Runs until SIGTERM/SIGINT, then resigns."""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING

from controller.api.server import ApiServer, serve
from controller.config import ControllerConfig
from controller.election import Election
from controller.orchestrator import Orchestrator
from controller.store.base import Compare, Store
from controller.store.etcd import EtcdStore

if TYPE_CHECKING:
    from agent.metrics_server import MetricsServer
    from controller.metrics import ControllerMetrics

log = logging.getLogger(__name__)

SUPERVISE_INTERVAL = 1.0
"""How often the main thread checks that a leader's orchestrator is still running."""


class Controller:
    def __init__(
        self, config: ControllerConfig, store: Store | None = None, metrics: ControllerMetrics | None = None
    ) -> None:
        """metrics: given, it is fed without a listener (in-process tests); else one is made when
        config.metrics_address asks for a listener."""
        self.config = config
        self.id = config.controller_id
        self._owns_store = store is None
        store = store or EtcdStore(list(config.etcd_endpoints))
        if metrics is None and config.metrics_address:
            from controller.metrics import ControllerMetrics  # prometheus_client: only when exporting

            metrics = ControllerMetrics()
        self.metrics = metrics
        if metrics is not None:
            from controller.store.instrumented import InstrumentedStore

            store = InstrumentedStore(store, metrics.registry)
        self._store = store
        self._metrics_server: MetricsServer | None = None
        self._server: ApiServer | None = None
        self.election = Election(self._store, self.id, ttl=config.leader_ttl)
        self._lock = threading.Lock()
        self._fence: Compare | None = None
        self.orchestrator: Orchestrator | None = None

    @property
    def address(self) -> str:
        assert self._server is not None, "not started"
        return self._server.address

    @property
    def metrics_url(self) -> str:
        assert self._metrics_server is not None, "no metrics listener"
        return self._metrics_server.url

    def start(self) -> None:
        if self.config.metrics_address and self.metrics is not None:
            # A taken port is one clear error (Unavailable), before anything else starts.
            from agent.metrics_server import serve_metrics

            self._metrics_server = serve_metrics(self.config.metrics_address, self.metrics.registry)
        try:
            self._server = serve(self._store, self.config.listen)
        except BaseException:
            if self._metrics_server is not None:
                self._metrics_server.close()
                self._metrics_server = None
            raise
        log.info("controller %s ready on %s", self.id, self._server.address)
        self.election.start(self._on_elected, self._on_deposed)

    def _on_elected(self, fence: Compare) -> None:
        log.info("controller %s is the leader", self.id)
        if self.metrics is not None:
            self.metrics.became_leader()
        with self._lock:
            self._fence = fence
            self._start_orchestrator(fence)

    def _start_orchestrator(self, fence: Compare) -> None:
        self.orchestrator = Orchestrator(
            self._store, fence, self.config.reconcile_settings(), observer=self.metrics
        )
        if self.metrics is not None:
            self.metrics.follow(self.orchestrator)
        self.orchestrator.start()

    def _on_deposed(self) -> None:
        with self._lock:
            self._fence = None
            orchestrator, self.orchestrator = self.orchestrator, None
        if self.metrics is not None:
            self.metrics.stepped_down()
        if orchestrator is not None:
            orchestrator.stop()
        log.info("controller %s stepped down", self.id)

    def supervise(self) -> None:
        """Restart an orchestrator that stopped on a bug while we still lead: a restart re-lists and
        converges, and the fence keeps it safe. One that saw it was deposed waits for the election."""
        with self._lock:
            o, fence = self.orchestrator, self._fence
            if fence is not None and o is not None and o.stopped and not o.deposed:
                log.warning("controller %s: orchestrator stopped unexpectedly; restarting it", self.id)
                self._start_orchestrator(fence)

    def stop(self) -> None:
        """Stop orchestrating, give up leadership at once, stop serving."""
        self.election.resign()
        if self._server is not None:
            self._server.stop(grace=2.0)
        if self._owns_store:
            self._store.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
        log.info("controller %s stopped", self.id)


def run(config: ControllerConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    controller = Controller(config)
    controller.start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(SUPERVISE_INTERVAL):
        controller.supervise()
    controller.stop()

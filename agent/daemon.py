"""`shoal agent`: wires the image store, the node and the gRPC server, then waits for a signal."""

from __future__ import annotations

import logging
import signal
import threading

from agent.api import serve
from agent.config import AgentConfig
from agent.images.store import ImageStore
from agent.node import Node

log = logging.getLogger(__name__)


def run(config: AgentConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config.run_dir.mkdir(parents=True, exist_ok=True)
    node = Node(config, ImageStore(config.images_dir, config.default_registry))
    node.start()
    server = serve(node, config.socket_path)
    log.info("agent ready on unix://%s (state in %s)", config.socket_path, config.state_dir)

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    # Containers keep running: their monitors are independent of the agent (live restore).
    server.stop(grace=2).wait()
    node.close()
    log.info("agent stopped; containers left running")

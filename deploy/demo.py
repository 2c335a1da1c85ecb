"""`make demo`: a 3-host lab (`shoal lab up`) running a demo stack through the controller's API.

web: busybox httpd, 3 replicas spread over the hosts, each page naming its container; client:
fetches every web replica across hosts through the overlay, every 2 s. Safe to run again: the
lab and the services are reused. `python -m deploy.demo down` removes the lab (`shoal lab down`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from agent.client import AgentClient
from agent.errors import NotFound
from controller.api.types import ServiceSpec, Task
from controller.client import ControlClient
from deploy.lab.lab import DEFAULT_STATE_DIR, STATE_DIR_ENV, require

SHOAL = str(Path(sys.executable).parent / "shoal")
SERVE = "echo hello from $(hostname) > /tmp/index.html; exec httpd -f -p 80 -h /tmp"
FETCH = (
    'while true; do for ip in $WEB; do wget -qO- "http://$ip/" || echo "no answer from $ip"; done;'
    " sleep 2; done"
)


def say(text: str) -> None:
    print(f"\n\033[1m{text}\033[0m", flush=True)


def shoal(*args: str) -> None:
    print(f"$ shoal {shlex.join(args)}", flush=True)
    result = subprocess.run([SHOAL, *args])
    if result.returncode != 0:
        raise SystemExit(f"demo: `shoal {' '.join(args)}` failed with exit code {result.returncode}")


def ensure(client: ControlClient, spec: ServiceSpec) -> None:
    try:
        client.inspect_service(spec.name)
    except NotFound:
        client.create_service(spec)


def running(client: ControlClient, service: str, count: int, timeout: float = 60) -> list[Task]:
    deadline = time.monotonic() + timeout
    while True:
        tasks = [t for t in client.list_tasks(service) if t.desired_state == "running"]
        if len(tasks) == count and all(t.state == "running" for t in tasks):
            return tasks
        if time.monotonic() > deadline:
            states = ", ".join(f"{t.node_id or '-'}: {t.state} {t.message}".strip() for t in tasks)
            raise SystemExit(f"demo: {service} did not converge in {timeout:g}s ({states})")
        time.sleep(0.2)


def up() -> None:
    say("Building a 3-host lab: namespaces on an underlay bridge, etcd, registry, controller, agents")
    shoal("lab", "up", "--nodes", "3")
    state = require(Path(os.environ.get(STATE_DIR_ENV, DEFAULT_STATE_DIR)))
    sockets = {n.name: Path(n.socket) for n in state.nodes}
    with ControlClient(state.controllers[0].listen) as client:
        say("Deploying web (busybox httpd, 3 replicas, spread over the hosts)")
        ensure(client, ServiceSpec(name="web", image="busybox", replicas=3, command=["sh", "-c", SERVE]))
        web = running(client, "web", 3)
        ips = []
        for task in web:
            with AgentClient(sockets[task.node_id]) as agent:
                ips.append(agent.container_inspect(task.container_id).ip_address)
            print(f"  web.{task.slot} on {task.node_id}: {ips[-1]}")
        say("Deploying client (fetches every web replica across hosts, every 2 s)")
        env = [f"WEB={' '.join(ips)}"]
        ensure(client, ServiceSpec(name="client", image="busybox", env=env, command=["sh", "-c", FETCH]))
        (task,) = running(client, "client", 1)
        time.sleep(3)  # let it make a round of fetches to show
        say(f"The client's log (it runs on {task.node_id})")
        with AgentClient(sockets[task.node_id]) as agent:
            for entry in agent.container_logs(task.container_id, tail=6, since=None, follow=False):
                sys.stdout.write("  " + entry.line)
    say("What runs now")
    shoal("lab", "status")
    print(
        f"""
Try next (the context in ~/.shoal/context.json points at this lab's controller):
  .venv/bin/shoal service ls
  .venv/bin/shoal service ps web
  .venv/bin/shoal service scale web=5       # waits until the new tasks run
  .venv/bin/shoal lab status -o json
  .venv/bin/shoal lab stop-node node2       # kill -9 its agent: containers keep running
  .venv/bin/shoal lab start-node node2
  .venv/bin/shoal lab partition node3       # cut its underlay link; `heal node3` restores it
  .venv/bin/shoal lab kill-controller --leader
  .venv/bin/shoal --host unix://{sockets[task.node_id]} container logs -f {task.container_id[:12]}
  .venv/bin/shoal --host unix://{sockets["node1"]} container ps
Remove everything the demo made:  make demo-down
"""
    )


def down() -> None:
    shoal("lab", "down")


def main() -> None:
    down() if sys.argv[1:] == ["down"] else up()


if __name__ == "__main__":
    main()

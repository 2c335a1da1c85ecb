"""`make demo`: a 3-host lab (`shoal lab up`) running the Compose stack deploy/demo/compose.yml.

web: busybox httpd, 3 replicas spread over the hosts, each page naming its container; client:
fetches every web replica across hosts through the overlay, every 2 s. There is no service DNS, so
the client learns the web tasks' addresses from WEB: the stack is deployed, the running web tasks'
addresses are read, and the stack is deployed again with WEB set (that updates only the client).

Safe to run again: the lab is reused and an unchanged stack is left alone (a redeploy only happens
when the web tasks' addresses changed, e.g. after a partition moved one). `python -m deploy.demo
down` (`make demo-down`) removes the lab and so everything the demo made.
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
from controller.api.types import Task
from controller.client import ControlClient
from deploy.lab.lab import DEFAULT_STATE_DIR, STATE_DIR_ENV, require

SHOAL = str(Path(sys.executable).parent / "shoal")
COMPOSE = Path(__file__).parent / "demo" / "compose.yml"
STACK = "demo"
WEB, CLIENT = f"{STACK}_web", f"{STACK}_client"


def say(text: str) -> None:
    print(f"\n\033[1m{text}\033[0m", flush=True)


def shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def shoal(*args: str, env: dict[str, str] | None = None) -> None:
    prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items())
    print(f"$ {prefix}shoal {shlex.join(args)}", flush=True)
    result = subprocess.run([SHOAL, *args], env=os.environ | (env or {}))
    if result.returncode != 0:
        raise SystemExit(f"demo: `shoal {' '.join(args)}` failed with exit code {result.returncode}")


def deploy(web: str) -> None:
    shoal("stack", "deploy", "-c", shown(COMPOSE), STACK, env={"WEB": web})


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


def web_addresses(client: ControlClient) -> str:
    """The running web tasks' addresses, as the client's WEB wants them ("" while there are none)."""
    try:
        tasks = client.list_tasks(WEB)
    except NotFound:  # the first run: the stack is not there yet
        return ""
    tasks = [t for t in tasks if t.desired_state == "running" and t.state == "running"]
    return " ".join(sorted(t.address for t in tasks if t.address))


def client_log(agent: AgentClient, task: Task, timeout: float = 20) -> list[str]:
    """The client's last lines, once it has fetched from every replica (or when the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [e.line for e in agent.container_logs(task.container_id, tail=6, since=None, follow=False)]
        if sum("hello from" in line for line in lines) >= 3 or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


def up() -> None:
    say("Building a 3-host lab: namespaces on an underlay bridge, etcd, registry, controller, agents")
    shoal("lab", "up", "--nodes", "3")
    state = require(Path(os.environ.get(STATE_DIR_ENV, DEFAULT_STATE_DIR)))
    sockets = {n.name: Path(n.socket) for n in state.nodes}
    with ControlClient(state.controllers[0].listen) as client:
        before = web_addresses(client)
        say(f"Deploying the stack in {shown(COMPOSE)}: web (busybox httpd x3, spread) and client")
        deploy(before)
        for task in sorted(running(client, WEB, 3), key=lambda t: t.slot or 0):
            print(f"  {WEB}.{task.slot} on {task.node_id}: {task.address}")
        addresses = web_addresses(client)
        if addresses != before:
            say("No service DNS: deploying again with WEB = the web tasks' addresses (only client changes)")
            deploy(addresses)
        (task,) = running(client, CLIENT, 1)
        say(f"The client's log (it runs on {task.node_id}; it fetches from every web replica)")
        with AgentClient(sockets[task.node_id]) as agent:
            for line in client_log(agent, task):
                sys.stdout.write("  " + line)
    say("What runs now")
    shoal("stack", "ps", STACK)
    shoal("lab", "status")
    print(
        f"""
Try next (the context in ~/.shoal/context.json points at this lab's controller):
  .venv/bin/shoal stack services {STACK}
  .venv/bin/shoal service ps {WEB}
  .venv/bin/shoal service scale {WEB}=5      # waits until the new tasks run (the client still
                                             # fetches the 3 addresses it was deployed with)
  .venv/bin/shoal lab partition node3        # cut node3's underlay link: data AND control plane;
  .venv/bin/shoal node ls                    #   node3 turns Down, its web task moves (~10 s)
  .venv/bin/shoal lab heal node3             # node3 is Ready again; its old container is stopped
  .venv/bin/shoal lab stop-node node2        # kill -9 its agent: containers keep running
  .venv/bin/shoal lab start-node node2
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

"""`make demo`: a one-node Shoal with a few containers, driven through the real `shoal` CLI.

Starts (or reuses) a local registry seeded with busybox and an agent on the default paths
(/var/lib/shoal, /run/shoal), so afterwards plain `shoal container ps` works. Until the
multi-host lab exists this is the single-node demo. `python -m deploy.demo down` removes it.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.client import AgentClient
from agent.config import AgentConfig
from agent.errors import ShoalError
from deploy.registry import Registry, push_busybox

DEMO_DIR = Path("/var/lib/shoal-demo")
PIDS = Path("/run/shoal-demo")
SHOAL = str(Path(sys.executable).parent / "shoal")
CONTAINERS = [
    ["--name", "web", "--restart", "always", "busybox", "httpd", "-f", "-p", "8080", "-h", "/var/www"],
    [
        "--name",
        "ticker",
        "--restart",
        "unless-stopped",
        "--memory",
        "32m",
        "busybox",
        "sh",
        "-c",
        "while true; do echo tick $(date +%T); sleep 2; done",
    ],
    ["--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo trying; exit 3"],
]


def say(text: str) -> None:
    print(f"\n\033[1m{text}\033[0m", flush=True)


def shoal(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"$ shoal {shlex.join(args)}", flush=True)
    result = subprocess.run([SHOAL, *args], text=True, capture_output=True)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if check and result.returncode != 0:
        raise SystemExit(f"demo: `shoal {' '.join(args)}` failed with exit code {result.returncode}")
    return result


def _alive(pid_file: Path, program: str) -> int:
    """The pid recorded in `pid_file` if that process still runs `program`, else 0."""
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return 0
    return pid if program.encode() in cmdline else 0


def _agent_ready(config: AgentConfig) -> bool:
    try:
        AgentClient(config.socket_path).container_list(all=True)
        return True
    except ShoalError:
        return False


def up() -> None:
    PIDS.mkdir(parents=True, exist_ok=True)
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    config = AgentConfig()
    registry_host_file = DEMO_DIR / "registry.host"
    if not (_alive(PIDS / "registry.pid", "docker-registry") and registry_host_file.exists()):
        say("Starting a local OCI registry (Debian's docker-registry) on 127.0.0.1 and pushing busybox")
        registry = Registry(DEMO_DIR / "registry").start()
        assert registry._proc is not None
        (PIDS / "registry.pid").write_text(str(registry._proc.pid))
        registry_host_file.write_text(registry.host)
        push_busybox(registry, DEMO_DIR / "seed")
    registry_host = registry_host_file.read_text().strip()

    if not _agent_ready(config):
        say(f"Starting the node agent (state in {config.state_dir}, API on unix://{config.socket_path})")
        with (DEMO_DIR / "agent.log").open("ab") as log:
            agent = subprocess.Popen(
                [SHOAL, "agent", "--default-registry", registry_host],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the agent outlives `make demo`
            )
        (PIDS / "agent.pid").write_text(str(agent.pid))
        deadline = time.monotonic() + 20
        while not _agent_ready(config):
            if agent.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"demo: the agent did not start; see {DEMO_DIR / 'agent.log'}")
            time.sleep(0.1)

    say("Running containers from the busybox image (pulled from the local registry on first use)")
    existing = {c.name for c in AgentClient(config.socket_path).container_list(all=True)}
    for args in CONTAINERS:
        if args[1] not in existing:
            shoal("container", "run", "-d", *args)
    time.sleep(2.5)

    say("What runs now")
    shoal("container", "ps", "-a")
    say("Serve a page from the web container and fetch it from inside it")
    shoal("container", "exec", "web", "sh", "-c", "echo hello from shoal > /var/www/index.html")
    shoal("container", "exec", "web", "wget", "-qO-", "http://127.0.0.1:8080/")
    say("The flaky container was restarted twice by its on-failure:2 policy, then left exited")
    shoal("container", "logs", "-t", "flaky")
    say("Images on this node")
    shoal("image", "ls")

    print(
        """
Try next (the agent keeps running; containers survive an agent restart):
  .venv/bin/shoal container logs -f ticker
  .venv/bin/shoal container stats
  .venv/bin/shoal container inspect web
  kill -9 $(cat /run/shoal-demo/agent.pid)       # containers keep running; then restart the agent:
  .venv/bin/shoal agent --default-registry $(cat /var/lib/shoal-demo/registry.host) &
  .venv/bin/shoal container run --memory 16m busybox sh -c 'x=a; while :; do x=$x$x; done'; echo $?
Remove everything the demo made:  make demo-down
"""
    )


def down() -> None:
    client = AgentClient(AgentConfig().socket_path)
    try:
        for c in client.container_list(all=True):
            client.container_remove(c.id, force=True)
    except ShoalError as e:
        print(f"demo: {e}", file=sys.stderr)
    for name, program in (("agent", "shoal"), ("registry", "docker-registry")):
        pid = _alive(PIDS / f"{name}.pid", program)
        if pid:
            os.kill(pid, signal.SIGTERM)
        (PIDS / f"{name}.pid").unlink(missing_ok=True)
    (DEMO_DIR / "registry.host").unlink(missing_ok=True)
    print("demo removed")


def main() -> None:
    down() if sys.argv[1:] == ["down"] else up()


if __name__ == "__main__":
    main()

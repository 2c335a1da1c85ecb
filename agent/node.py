"""The node: containers and images on one machine, the implementation of `AgentService`.

Every container's record is a JSON file in its own directory, rewritten atomically on each
state change, so a restarted agent rebuilds its view from disk and adopts the monitors
(shims) that kept running while it was away.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import selectors
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from signal import SIGKILL, pidfd_send_signal
from typing import IO, TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from agent import health
from agent.config import AgentConfig
from agent.errors import Conflict, InvalidArgument, NotFound, ShoalError, Unavailable, invalid
from agent.images.layers import upper_changes
from agent.images.store import Image, ImageStore
from agent.models import (
    Change,
    ContainerCreate,
    ContainerInfo,
    ContainerState,
    ContainerStats,
    ExecChunk,
    HealthLogEntry,
    HealthState,
    ImageInfo,
    LogEntry,
    ProcessInfo,
    parse_publish,
    parse_signal,
    validate_create,
)
from agent.restart import decide
from agent.runtime import cgroups
from agent.runtime.logs import read_logs
from agent.runtime.monitor import (
    ExitRecord,
    ShimConfig,
    ShimZygote,
    is_same_process,
    process_start_ticks,
    read_exit,
    start_shim,
)
from agent.runtime.netdev import NetCounters, read_net_dev
from agent.runtime.rootfs import is_mounted, mount_overlay, unmount
from agent.runtime.runc import Runc
from agent.runtime.spec import DEFAULT_PATH_ENV, OciInputs, build_oci_spec, resolve_user
from agent.supervisor import Supervisor, Timer
from agent.volumes import check_mount_policy, oci_mounts

if TYPE_CHECKING:
    from agent.metrics import AgentMetrics
    from agent.network import NodeNetwork  # imports pyroute2 (0.3 s): only agents with a network pay it

log = logging.getLogger(__name__)

_ADJECTIVES = (
    "brave calm eager fond gentle happy jolly keen lucid merry nimble proud quiet swift witty".split()
)
_FISH = "bass carp cod eel gar koi ling perch pike ray shad smelt sole tetra trout".split()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else 0.0


class Record(BaseModel):
    """A container as persisted in `<containers_dir>/<id>/container.json`."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    created: str
    image: str
    image_id: str
    config: ContainerCreate
    args: list[str]
    env: list[str]
    cwd: str
    uid: int
    gid: int
    additional_gids: list[int]
    stop_signal: str
    cgroups_path: str
    state: ContainerState = ContainerState()
    shim_pid: int = 0
    shim_start_ticks: int = 0
    """With shim_pid, identifies the monitor even if its pid is reused later."""
    last_delay: float = 0.0
    netns_path: str = ""
    """Bridge network: the namespace the node network set up (it outlives restarts, not rm)."""
    ip_address: str = ""
    stop_reason: str = ""
    """Why the agent is stopping it without a manual stop (unhealthy): the exit's error."""


class Probe:
    """One health probe in flight: `runc exec` with its output in an anonymous file."""

    def __init__(self, generation: int, proc: subprocess.Popen[bytes], output: IO[bytes], start: str) -> None:
        self.generation = generation
        self.proc = proc
        self.output = output
        self.start = start
        self.timer: Timer | None = None
        self.timed_out = False


class Container:
    def __init__(self, record: Record, directory: Path) -> None:
        self.record = record
        self.dir = directory
        self.cond = threading.Condition(threading.RLock())
        self.restart_timer: Timer | None = None
        self.log_followers: set[threading.Event] = set()
        # Health probing of the current run (not persisted: a restarted agent starts over).
        self.health: HealthState | None = None
        self.health_generation = 0
        """Bumped when a run starts or stops, so results of an older run's probes are dropped."""
        self.health_timer: Timer | None = None
        self.probe: Probe | None = None
        self.kill_timer: Timer | None = None
        """An unhealthy stop under way: SIGKILL when the grace period ends (cancelled by the exit)."""

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def state(self) -> ContainerState:
        return self.record.state

    def set_state(self, **changes: object) -> None:
        self.record.state = self.record.state.model_copy(update=changes)

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def log_path(self) -> Path:
        return self.dir / "logs" / "container.log"

    @property
    def exit_file(self) -> Path:
        return self.dir / "exit.json"

    def save(self) -> None:
        tmp = self.dir / "container.json.tmp"
        tmp.write_text(self.record.model_dump_json())
        os.replace(tmp, self.dir / "container.json")

    def live(self) -> bool:
        return self.state.status in ("running", "restarting")


class Node:
    def __init__(
        self,
        config: AgentConfig,
        images: ImageStore,
        network: NodeNetwork | None = None,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.config = config
        self.images = images
        self.network = network
        """The bridge network (netplugin's), if this node has one."""
        self.metrics = metrics
        """Where restart delays are observed (None: not exported)."""
        self.runc = Runc(config.runc, config.runc_root)
        self.supervisor = Supervisor()
        self.shims = ShimZygote(config.run_dir / "shim-zygote.log")  # spawned on first use
        self._lock = threading.RLock()
        self._containers: dict[str, Container] = {}
        self._names: dict[str, str] = {}
        self._listeners: list[Callable[[str], None]] = []
        for d in (config.containers_dir, config.volumes_dir, config.runc_root):
            d.mkdir(parents=True, exist_ok=True)

    # ---- lifecycle of the node itself ------------------------------------------------

    def start(self) -> None:
        """Load every container record and adopt the monitors that are still running."""
        self.supervisor.start()
        for directory in sorted(self.config.containers_dir.iterdir()):
            try:
                record = Record.model_validate_json((directory / "container.json").read_text())
            except (OSError, ValueError) as e:
                log.warning("skipping %s: unreadable container record: %s", directory.name, e)
                continue
            c = Container(record, directory)
            self._containers[c.id] = c
            self._names[record.name] = c.id
            self._adopt(c)

    def close(self) -> None:
        """Stop supervising; containers keep running (live restore)."""
        self.supervisor.stop()
        with self._lock:
            containers = list(self._containers.values())
        for c in containers:
            with c.cond:
                probe = c.probe
                self._stop_probes(c)
            if probe is not None:
                # The stopped supervisor will not run _probe_done: reap `runc exec` and close here.
                try:
                    probe.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    log.warning("container %s: health probe did not exit", c.id[:12])
                probe.output.close()
        self.shims.close()

    def add_listener(self, callback: Callable[[str], None]) -> None:
        """`callback(container_id)` after a container starts, exits or restarts (the task worker
        learns of exits without polling). Runs on the caller's or the supervisor's thread, outside
        the container's lock, so it may call back into the node; it should return quickly."""
        with self._lock:
            self._listeners.append(callback)

    def _notify(self, cid: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            try:
                callback(cid)
            except Exception:
                log.exception("container %s: state listener failed", cid[:12])

    def _adopt(self, c: Container) -> None:
        status = c.state.status
        if status == "running" and self._is_our_shim(c):
            log.info("container %s: adopted running monitor pid %d", c.id[:12], c.record.shim_pid)
            self.supervisor.watch_pid(c.record.shim_pid, lambda: self._on_exit(c.id))
            with c.cond:
                self._start_probes(c)
        elif status == "running":
            log.info("container %s: exited while the agent was down", c.id[:12])
            self.supervisor.call_later(0, lambda: self._on_exit(c.id))
        elif status == "restarting":
            c.restart_timer = self.supervisor.call_later(c.record.last_delay, lambda: self._restart(c.id))

    def _is_our_shim(self, c: Container) -> bool:
        return is_same_process(c.record.shim_pid, c.record.shim_start_ticks)

    # ---- lookups ---------------------------------------------------------------------

    def _get(self, ref: str) -> Container:
        with self._lock:
            if ref in self._names:
                return self._containers[self._names[ref]]
            if ref in self._containers:
                return self._containers[ref]
            matches = [c for cid, c in self._containers.items() if len(ref) >= 4 and cid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"container id prefix {ref!r} is ambiguous: use more characters")
        raise NotFound(f"No such container: {ref}")

    def _info(self, c: Container) -> ContainerInfo:
        r = c.record
        return ContainerInfo(
            id=r.id,
            name=r.name,
            created=r.created,
            image=r.image,
            image_id=r.image_id,
            config=r.config,
            args=r.args,
            env=r.env,
            state=r.state,
            mounts=r.config.mounts,
            rootfs=str(c.rootfs),
            log_path=str(c.log_path),
            ip_address=r.ip_address,
            health=c.health,
        )

    # ---- create and start ------------------------------------------------------------

    def _check_policy(self, req: ContainerCreate) -> None:
        validate_create(req)
        if req.privileged and not self.config.allow_privileged:
            raise invalid("--privileged", True, "privileged containers are not allowed by this agent")
        if req.network == "host" and not self.config.allow_host_namespaces:
            raise invalid("--network", "host", "host networking is not allowed by this agent")
        for cap in req.cap_add:
            name = cap.upper().removeprefix("CAP_")
            if name not in self.config.allowed_cap_add:
                raise invalid("--cap-add", cap, "this capability is not allowed by this agent")
        check_mount_policy(req.mounts, self.config)

    def _resolve_image(self, ref: str) -> Image:
        try:
            return self.images.get(ref)
        except NotFound:
            self.images.pull(ref)  # as `docker run`: pull what is missing
            return self.images.get(ref)

    def _resolve_network(self, req: ContainerCreate) -> ContainerCreate:
        network = req.network
        if network == "default":
            network = "bridge" if self.network is not None else "none"
        if network == "bridge" and self.network is None:
            raise invalid(
                "--network",
                "bridge",
                "this node has no bridge network (run netplugin, start the agent with --network-env)",
            )
        if req.publish and network != "bridge":
            raise invalid(
                "--publish",
                req.publish[0],
                f"ports can only be published on the bridge network, not {network}",
            )
        return req.model_copy(update={"network": network})

    def container_run(self, req: ContainerCreate, start: bool) -> ContainerInfo:
        self._check_policy(req)
        req = self._resolve_network(req)
        image = self._resolve_image(req.image)
        args = _process_args(req, image)
        cid = secrets.token_hex(32)
        with self._lock:
            name = req.name or self._generate_name()
            if name in self._names:
                raise Conflict(
                    f'container name "{name}" is already in use by container {self._names[name][:12]}'
                )
            self._names[name] = cid  # reserved; released below if creation fails
        directory = self.config.containers_dir / cid
        try:
            c = self._create(cid, name, req, image, args, directory)
        except BaseException:
            with self._lock:
                self._names.pop(name, None)
            if req.network == "bridge" and self.network is not None:
                self.network.disconnect(cid)
            unmount(directory / "rootfs")
            shutil.rmtree(directory, ignore_errors=True)
            raise
        with self._lock:
            self._containers[cid] = c
        if start:
            try:
                with c.cond:
                    try:
                        self._start(c, mounted=True)
                    except ShoalError:
                        c.save()
                        raise
            finally:
                self._notify(cid)
        return self._info(c)

    def _generate_name(self) -> str:
        while True:
            name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_FISH)}_{secrets.token_hex(2)}"
            if name not in self._names:
                return name

    def _create(
        self, cid: str, name: str, req: ContainerCreate, image: Image, args: list[str], directory: Path
    ) -> Container:
        for sub in ("upper", "work", "rootfs", "logs"):
            (directory / sub).mkdir(parents=True)
        mount_overlay(
            self.images.layer_dirs(image), directory / "upper", directory / "work", directory / "rootfs"
        )
        uid, gid, gids = resolve_user(
            directory / "rootfs", req.user if req.user is not None else image.config.user
        )
        record = Record(
            id=cid,
            name=name,
            created=_now(),
            image=req.image,
            image_id=image.id,
            config=req,
            args=args,
            env=_merge_env(list(image.config.env), req.env),
            cwd=req.working_dir or image.config.working_dir or "/",
            uid=uid,
            gid=gid,
            additional_gids=list(gids),
            stop_signal=req.stop_signal or image.config.stop_signal or "SIGTERM",
            cgroups_path=f"/{self.config.cgroup_parent}/{cid}",
        )
        if req.network == "bridge" and self.network is not None:
            connection = self.network.connect(cid, parse_publish(req.publish))
            record.netns_path, record.ip_address = connection.netns_path, str(connection.ip.ip)
        c = Container(record, directory)
        c.save()
        return c

    def _start(self, c: Container, mounted: bool = False) -> None:
        """Start a new run of `c` under a fresh monitor. Caller holds `c.cond`.

        `mounted`: the rootfs was just mounted (skips reading the mount table).
        """
        r = c.record
        if not mounted and not is_mounted(c.rootfs):
            image = self.images.get(r.image_id)
            mount_overlay(self.images.layer_dirs(image), c.dir / "upper", c.dir / "work", c.rootfs)
        spec = build_oci_spec(
            OciInputs(
                args=r.args,
                env=r.env,
                cwd=r.cwd,
                uid=r.uid,
                gid=r.gid,
                additional_gids=r.additional_gids,
                hostname=r.config.hostname or r.id[:12],
                rootfs=c.rootfs,
                mounts=oci_mounts(r.config.mounts, self.config, c.rootfs),
                resources=r.config.resources,
                network="host" if r.config.network == "host" else "none",
                netns_path=r.netns_path or None,
                privileged=r.config.privileged,
                cap_add=r.config.cap_add,
                cgroups_path=r.cgroups_path,
            )
        )
        (c.dir / "config.json").write_text(json.dumps(spec))
        c.exit_file.unlink(missing_ok=True)
        try:
            started = start_shim(
                ShimConfig(
                    id=r.id,
                    bundle=c.dir,
                    runc=self.config.runc,
                    runc_root=self.config.runc_root,
                    log_path=c.log_path,
                    log_max_size=self.config.log_max_size,
                    log_max_files=self.config.log_max_files,
                    exit_file=c.exit_file,
                    memory_cgroup=str(cgroups.memory_cgroup_dir(r.cgroups_path)),
                    pid_file=c.dir / "container.pid",
                ),
                c.dir,
                self.shims,
            )
        except ShoalError as e:
            self.runc.delete(r.id, force=True)
            c.set_state(status="exited", exit_code=127, error=str(e), pid=0, finished_at=_now())
            c.cond.notify_all()
            raise
        r.shim_pid = started.shim_pid
        r.shim_start_ticks = process_start_ticks(started.shim_pid) or 0
        c.set_state(
            status="running", pid=started.container_pid, started_at=_now(), error="", oom_killed=False
        )
        c.save()
        c.cond.notify_all()
        self.supervisor.watch_pid(started.shim_pid, lambda: self._on_exit(c.id))
        self._start_probes(c)

    # ---- exits and restarts (supervisor thread) --------------------------------------

    def _by_id(self, cid: str) -> Container | None:
        with self._lock:
            return self._containers.get(cid)

    def records(self) -> list[Record]:
        """Every container's record, for metrics at scrape time: read them, never change them."""
        with self._lock:
            return [c.record for c in self._containers.values()]

    def _on_exit(self, cid: str) -> None:
        c = self._by_id(cid)
        if c is None:
            return
        with c.cond:
            if c.state.status != "running":
                return
            self._stop_probes(c)
            if c.kill_timer is not None:
                c.kill_timer.cancel()
                c.kill_timer = None
            exit_rec = read_exit(c.exit_file)
            if exit_rec is None:
                # The monitor died without recording an exit: make sure nothing is left running.
                self.runc.kill(c.id, "KILL", all=True)
                self.runc.delete(c.id, force=True)
                exit_rec = ExitRecord(255, False, "", _now(), "the container monitor died unexpectedly")
            reason, c.record.stop_reason = c.record.stop_reason, ""
            c.set_state(
                status="exited",
                pid=0,
                exit_code=exit_rec.exit_code,
                oom_killed=exit_rec.oom_killed,
                error=reason or exit_rec.error,
                finished_at=exit_rec.finished_at,
            )
            s = c.state
            decision = decide(
                c.record.config.restart,
                # Stopped for being unhealthy is a failure, even if the process exited 0 on the signal.
                (s.exit_code or 1) if reason else s.exit_code,
                s.manually_stopped,
                s.restart_count,
                max(0.0, _parse_time(s.finished_at) - _parse_time(s.started_at)),
                c.record.last_delay,
                self.config.backoff,
            )
            log.info("container %s exited with %d: %s", c.id[:12], s.exit_code, decision.reason)
            if decision.restart:
                if self.metrics is not None:
                    self.metrics.observe_restart_backoff(decision.delay)
                c.record.last_delay = decision.delay
                c.set_state(status="restarting")
                c.restart_timer = self.supervisor.call_later(decision.delay, lambda: self._restart(cid))
            else:
                self._end_followers(c)
            c.save()
            c.cond.notify_all()
        self._notify(cid)

    def _restart(self, cid: str) -> None:
        c = self._by_id(cid)
        if c is None:
            return
        with c.cond:
            if c.state.status != "restarting":
                return
            c.restart_timer = None
            c.set_state(restart_count=c.state.restart_count + 1)
            try:
                self._start(c)
            except ShoalError as e:
                log.warning("container %s: restart failed: %s", cid[:12], e)
                self._end_followers(c)
                c.save()
        self._notify(cid)

    def _end_followers(self, c: Container) -> None:
        for ev in c.log_followers:
            ev.set()

    # ---- health probes (supervisor thread) -------------------------------------------

    def _start_probes(self, c: Container) -> None:
        """A new run (or an adopted one): health starts over. Caller holds `c.cond`."""
        self._stop_probes(c)
        check = c.record.config.healthcheck
        if health.probe_argv(check) is None or check is None:
            c.health = None
            return
        c.health = health.initial()
        self._schedule_probe(c, check.interval)

    def _stop_probes(self, c: Container) -> None:
        """No more probes for this run; the last health stays visible. Caller holds `c.cond`."""
        c.health_generation += 1
        if c.health_timer is not None:
            c.health_timer.cancel()
            c.health_timer = None
        probe, c.probe = c.probe, None
        if probe is not None:
            self._kill_probe(c, probe)

    def _schedule_probe(self, c: Container, delay: float) -> None:
        generation, cid = c.health_generation, c.id
        c.health_timer = self.supervisor.call_later(delay, lambda: self._probe(cid, generation))

    def _probe(self, cid: str, generation: int) -> None:
        c = self._by_id(cid)
        if c is None:
            return
        with c.cond:
            check = c.record.config.healthcheck
            argv = health.probe_argv(check)
            if generation != c.health_generation or c.state.status != "running" or check is None or not argv:
                return
            c.health_timer = None
            r = c.record
            pid_file = c.dir / "probe.pid"
            start = _now()
            output: IO[bytes] | None = None
            try:
                output = tempfile.TemporaryFile()
                pid_file.unlink(missing_ok=True)
                user = f"{r.uid}:{r.gid}"
                proc = self.runc.exec_popen(
                    r.id, argv, r.env, r.cwd, user, stdout=output, stderr=subprocess.STDOUT, pid_file=pid_file
                )
            except (ShoalError, OSError) as e:
                # A failed probe (out of fds, pids...), not a failed supervisor callback: the next
                # one is scheduled with the result.
                if output is not None:
                    output.close()
                failed = HealthLogEntry(start=start, end=_now(), exit_code=health.TIMED_OUT, output=str(e))
                changed = self._probe_result(c, failed)
            else:
                probe = c.probe = Probe(generation, proc, output, start)
                probe.timer = self.supervisor.call_later(
                    check.timeout, lambda: self._probe_timeout(cid, probe)
                )
                self.supervisor.watch_pid(proc.pid, lambda: self._probe_done(cid, probe))
                return
        if changed:
            self._notify(cid)

    def _probe_timeout(self, cid: str, probe: Probe) -> None:
        c = self._by_id(cid)
        if c is None:
            return
        with c.cond:
            if c.probe is probe:
                probe.timed_out = True
                self._kill_probe(c, probe)  # its exit (watched) records the failure

    def _kill_probe(self, c: Container, probe: Probe) -> None:
        """SIGKILL the probe's process in the container, then `runc exec` itself.

        `runc exec` reaps the probe's process before it exits: once it has exited (the probe
        finished, or the container's exit ended it), that pid may belong to anything else."""
        if probe.timer is not None:
            probe.timer.cancel()
        if probe.proc.poll() is not None:
            return
        try:
            pid = int((c.dir / "probe.pid").read_text().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid > 0:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                fd = -1
            if fd >= 0:
                try:
                    # `runc exec` still runs once the pidfd is open: the pidfd names the probe.
                    if probe.proc.poll() is None:
                        pidfd_send_signal(fd, SIGKILL)
                except ProcessLookupError:
                    pass
                finally:
                    os.close(fd)
        if probe.proc.poll() is None:
            probe.proc.kill()

    def _probe_done(self, cid: str, probe: Probe) -> None:
        code = probe.proc.wait()  # it exited (watched): reaps it
        if probe.timer is not None:
            probe.timer.cancel()
        probe.output.seek(0)
        text = health.clip_output(probe.output.read(health.MAX_OUTPUT))
        probe.output.close()
        c = self._by_id(cid)
        if c is None:
            return
        with c.cond:
            if c.probe is not probe or probe.generation != c.health_generation:
                return  # the run it probed is over
            c.probe = None
            check = c.record.config.healthcheck
            assert check is not None
            if probe.timed_out:
                code, text = health.TIMED_OUT, health.timeout_output(check.timeout)
            entry = HealthLogEntry(start=probe.start, end=_now(), exit_code=code, output=text)
            changed = self._probe_result(c, entry)
        if changed:
            self._notify(cid)

    def _probe_result(self, c: Container, entry: HealthLogEntry) -> bool:
        """Record one result and schedule the next probe; True when the status changed."""
        check = c.record.config.healthcheck
        if c.health is None or check is None:
            return False
        if self.metrics is not None:
            self.metrics.observe_health(entry.exit_code == 0)
        before = c.health.status
        since_start = _parse_time(entry.start) - _parse_time(c.state.started_at)
        c.health = health.record(c.health, entry, check, since_start)
        if c.health.status != before:
            log.info("container %s: health %s -> %s", c.id[:12], before, c.health.status)
        self._schedule_probe(c, check.interval)
        return c.health.status != before

    # ---- user operations -------------------------------------------------------------

    def container_start(self, ref: str) -> ContainerInfo:
        c = self._get(ref)
        with c.cond:
            if c.state.status == "running":
                return self._info(c)
            if c.restart_timer:
                c.restart_timer.cancel()
            c.record.last_delay = 0.0
            c.set_state(manually_stopped=False, restart_count=0)
            self._start(c)
        self._notify(c.id)
        return self._info(c)

    def _grace(self, c: Container, timeout: float | None) -> float:
        """Seconds from the stop signal to SIGKILL: the caller's, else the container's, else the agent's."""
        grace = timeout if timeout is not None else c.record.config.stop_timeout
        return self.config.stop_timeout if grace is None else grace

    def container_stop(self, ref: str, timeout: float | None) -> ContainerInfo:
        c = self._get(ref)
        grace = self._grace(c, timeout)
        self._halt(c, c.record.stop_signal, grace)
        self._notify(c.id)  # a pending restart may have been cancelled: no monitor exit reports that
        return self._info(c)

    def container_kill(self, ref: str, signal: str) -> ContainerInfo:
        """Send one signal, as `docker kill`: no grace period, no escalation."""
        c = self._get(ref)
        signum = parse_signal("--signal", signal)
        with c.cond:
            if c.state.status == "restarting":
                self._halt(c, "SIGKILL", 0)  # nothing runs: just cancel the pending restart
            elif c.state.status != "running":
                raise Conflict(f"container {c.record.name} is not running")
            else:
                if signum in (SIGKILL, parse_signal("stop signal", c.record.stop_signal)):
                    # moby's rule: SIGKILL or the stop signal is a manual stop (no restart).
                    c.set_state(manually_stopped=True)
                    c.save()
                self._signal(c, signum)
        return self._info(c)

    def _halt(self, c: Container, sig: str, grace: float) -> None:
        """Stop `c` for good: signal, wait `grace`, SIGKILL; cancels a pending restart."""
        with c.cond:
            c.set_state(manually_stopped=True)
            if c.restart_timer:
                c.restart_timer.cancel()
                c.restart_timer = None
            if c.state.status == "restarting":
                c.set_state(status="exited")
                self._end_followers(c)
            c.save()
            if c.state.status != "running":
                return
            self._terminate(c, sig, grace)

    def _terminate(self, c: Container, sig: str, grace: float) -> None:
        """Signal a running `c`, wait `grace`, SIGKILL, wait for the exit. Caller holds `c.cond`."""
        self._signal(c, parse_signal("stop signal", sig))
        if not c.cond.wait_for(lambda: c.state.status != "running", timeout=grace):
            self._signal(c, SIGKILL, all=True)
            if not c.cond.wait_for(lambda: c.state.status != "running", timeout=10):
                raise Conflict(f"container {c.record.name} did not stop after SIGKILL")

    def container_stop_unhealthy(self, ref: str, timeout: float | None) -> ContainerInfo:
        """Start stopping a running container that is unhealthy (stop signal now, SIGKILL after the
        grace period) as a failure: not a manual stop, so its restart policy applies; its exit's
        error says why. Returns at once (the exit is reported to the listeners). A no-op when it is
        not running, no longer unhealthy (the caller's view may be old) or already being stopped."""
        c = self._get(ref)
        grace = self._grace(c, timeout)
        with c.cond:
            if c.state.status != "running" or c.health is None or c.health.status != "unhealthy":
                return self._info(c)
            if c.kill_timer is not None:
                return self._info(c)
            c.record.stop_reason = health.unhealthy_message(c.health)
            c.save()
            log.info("container %s: stopping it: %s", c.id[:12], c.record.stop_reason)
            run, cid = c.health_generation, c.id
            c.kill_timer = self.supervisor.call_later(grace, lambda: self._kill_after_grace(cid, run))
            self._signal(c, parse_signal("stop signal", c.record.stop_signal))
        return self._info(c)

    def _kill_after_grace(self, cid: str, run: int) -> None:
        """The grace period of an unhealthy stop is over: SIGKILL the run if it still goes on."""
        c = self._by_id(cid)
        if c is None:
            return
        with c.cond:
            if run != c.health_generation or c.state.status != "running":
                return  # that run is over (its exit cancels the timer; this is the race with it)
            c.kill_timer = None
            log.info("container %s: still running after the grace period: SIGKILL", cid[:12])
            self._signal(c, SIGKILL, all=True)

    def _signal(self, c: Container, signum: int, all: bool = False) -> None:
        try:
            self.runc.kill(c.id, signum, all=all)
        except Unavailable:
            # runc fails on a container that is being torn down; its monitor reports the exit.
            state = self.runc.state(c.id)
            if state is not None and state.get("status") == "running":
                raise

    def container_remove(self, ref: str, force: bool) -> str:
        c = self._get(ref)
        with c.cond:
            if c.live() and not force:
                raise Conflict(
                    f"cannot remove container {c.record.name}: it is {c.state.status}; "
                    "stop it first or use --force"
                )
            if c.live():
                self._halt(c, "SIGKILL", 0)
            self._stop_probes(c)
            self.runc.delete(c.id, force=True)
            if c.record.netns_path and self.network is not None:
                self.network.disconnect(c.id)
            unmount(c.rootfs)
            shutil.rmtree(c.dir, ignore_errors=True)
            self._end_followers(c)
        with self._lock:
            self._containers.pop(c.id, None)
            self._names.pop(c.record.name, None)
        return c.id

    def container_list(self, all: bool) -> list[ContainerInfo]:
        with self._lock:
            containers = list(self._containers.values())
        infos = [self._info(c) for c in containers if all or c.live()]
        return sorted(infos, key=lambda i: i.created, reverse=True)

    def container_inspect(self, ref: str) -> ContainerInfo:
        return self._info(self._get(ref))

    def container_logs(
        self, ref: str, tail: int | None, since: float | None, follow: bool
    ) -> Iterator[LogEntry]:
        c = self._get(ref)
        stop = threading.Event()
        with c.cond:
            if c.live():
                c.log_followers.add(stop)
            else:
                stop.set()  # like `docker logs -f`: a stopped container's log ends at once
        try:
            yield from read_logs(c.log_path, tail, since, follow, stop)
        finally:
            with c.cond:
                c.log_followers.discard(stop)

    def _running(self, ref: str) -> Container:
        c = self._get(ref)
        if c.state.status != "running":
            raise Conflict(f"container {c.record.name} is not running")
        return c

    def container_exec(
        self, ref: str, args: list[str], env: list[str], workdir: str | None, user: str | None
    ) -> Iterator[ExecChunk]:
        c = self._running(ref)
        if not args:
            raise invalid("command", args, "exec needs a command")
        r = c.record
        uid, gid, _ = resolve_user(c.rootfs, user) if user else (r.uid, r.gid, [])
        proc = self.runc.exec_popen(r.id, args, _merge_env(r.env, env), workdir or r.cwd, f"{uid}:{gid}")
        assert proc.stdout is not None and proc.stderr is not None
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
                sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
                while sel.get_map():
                    for key, _ in sel.select():
                        data = os.read(key.fd, 65536)
                        if not data:
                            sel.unregister(key.fileobj)
                            continue
                        yield ExecChunk(stream=key.data, data=data.decode(errors="replace"))
            yield ExecChunk(stream="exit", exit_code=proc.wait())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def container_stats(self, ref: str) -> ContainerStats:
        c = self._running(ref)
        s = cgroups.read_stats(c.record.cgroups_path)
        net = NetCounters() if c.record.config.network == "host" else read_net_dev(c.state.pid)
        return ContainerStats(
            id=c.id,
            name=c.record.name,
            cpu_seconds=s.cpu_seconds,
            memory_working_set_bytes=s.memory_working_set_bytes,
            memory_limit_bytes=s.memory_limit_bytes,
            pids=s.pids,
            network_rx_bytes=net.rx_bytes,
            network_tx_bytes=net.tx_bytes,
        )

    def container_top(self, ref: str) -> list[ProcessInfo]:
        c = self._running(ref)
        out = []
        for pid in self.runc.ps(c.id):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                uid_line = next(
                    line
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("Uid:")
                )
            except (OSError, StopIteration):
                continue  # exited while we looked
            out.append(ProcessInfo(pid=pid, user=uid_line.split()[1], command=cmd))
        return out

    def container_diff(self, ref: str) -> list[Change]:
        c = self._get(ref)
        return upper_changes(c.dir / "upper", self.images.layer_dirs(self.images.get(c.record.image_id)))

    def container_commit(self, ref: str, repo_tag: str | None) -> ImageInfo:
        c = self._get(ref)
        return self.images.commit(c.dir / "upper", self.images.get(c.record.image_id), repo_tag)

    # ---- images ----------------------------------------------------------------------

    def image_pull(self, ref: str) -> ImageInfo:
        return self.images.pull(ref)

    def image_push(self, ref: str) -> ImageInfo:
        return self.images.push(ref)

    def image_import(self, source: str, ref: str | None) -> ImageInfo:
        return self.images.import_rootfs(Path(source), ref, None)

    def image_save(self, refs: list[str], path: str) -> None:
        self.images.save(refs, Path(path))

    def image_load(self, path: str) -> list[ImageInfo]:
        return self.images.load(Path(path))

    def image_tag(self, source: str, target: str) -> ImageInfo:
        return self.images.tag(source, target)

    def image_list(self) -> list[ImageInfo]:
        return self.images.list()

    def image_remove(self, ref: str, force: bool) -> list[str]:
        def in_use(image_id: str) -> bool:
            with self._lock:
                return any(c.record.image_id == image_id for c in self._containers.values())

        return self.images.remove(ref, force, in_use)


def _process_args(req: ContainerCreate, image: Image) -> list[str]:
    """Docker's rule: an entrypoint override drops the image's Cmd unless a command is given too."""
    entrypoint = req.entrypoint if req.entrypoint is not None else list(image.config.entrypoint or [])
    if req.command is not None:
        cmd = req.command
    elif req.entrypoint is not None:
        cmd = []
    else:
        cmd = list(image.config.cmd or [])
    args = entrypoint + cmd
    if not args:
        raise invalid("command", "", "no command specified and the image has no Entrypoint or Cmd")
    return args


def _merge_env(base: list[str], override: list[str]) -> list[str]:
    env = dict(item.partition("=")[::2] for item in base)
    env.setdefault("PATH", DEFAULT_PATH_ENV)
    for item in override:
        key, _, value = item.partition("=")
        env[key] = value
    return [f"{k}={v}" for k, v in env.items()]

"""Per-container monitor (like containerd-shim or conmon). STANDALONE: stdlib only.

Forked (in its own session) from a `python -I -S shim.py --zygote FD` process that the agent
keeps warm, it outlives the agent:
it runs `runc run -d`, becomes the container init's parent (child subreaper), copies the
container's stdout/stderr into a Docker json-file log with rotation, and on exit records
the exit code and OOM kill in an exit file that the agent reads (even after a restart).
Readiness is one JSON line on the ready fd: {"pid": N, "shim": PID} or {"error": "..."}.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
CHUNK = 65536
PARTIAL = 16 * 1024  # Docker splits lines longer than this
RUNC_TIMEOUT = 60.0
DRAIN_SECONDS = 2.0  # a process outside the container could hold the pipes open


def now_iso() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def one_line(text: str) -> str:
    return " ".join(text.split()) or "failed with no message"


class LogFile:
    """Docker json-file writer: container.log, rotated to .1 ... .(max_files-1)."""

    def __init__(self, path: str, max_size: int, max_files: int) -> None:
        self.path, self.max_size, self.max_files = path, max_size, max(1, max_files)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size
        self.partial = {"stdout": b"", "stderr": b""}

    def rotate(self) -> None:
        os.close(self.fd)
        if self.max_files > 1:
            for i in range(self.max_files - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_TRUNC
        self.fd = os.open(self.path, flags, 0o640)
        self.size = 0

    def write_line(self, stream: str, raw: bytes) -> None:
        entry = {"log": raw.decode("utf-8", "replace"), "stream": stream, "time": now_iso()}
        data = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        os.write(self.fd, data)
        self.size += len(data)
        if self.max_size > 0 and self.size >= self.max_size:
            self.rotate()

    def feed(self, stream: str, data: bytes) -> None:
        """Write whole lines; keep the tail until its newline (or until it grows too long)."""
        buf = self.partial[stream] + data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            self.write_line(stream, buf[start : nl + 1])
            start = nl + 1
        rest = buf[start:]
        while len(rest) >= PARTIAL:
            self.write_line(stream, rest[:PARTIAL])
            rest = rest[PARTIAL:]
        self.partial[stream] = rest

    def flush(self, stream: str) -> None:
        if self.partial[stream]:
            self.write_line(stream, self.partial[stream])
            self.partial[stream] = b""


def run_bounded(cmd: list[str], out: int, err: int, timeout: float) -> int:
    """Run to completion; -1 if killed at `timeout`. Waits on a pidfd: subprocess's own
    timeout polls with growing sleeps, which added ~30 ms to every container start."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    pidfd = os.pidfd_open(proc.pid)
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            proc.kill()
            proc.wait()
            return -1
    finally:
        os.close(pidfd)
    return proc.wait()


def report(fd: int | None, msg: dict[str, object]) -> None:
    """Tell the agent once; it may be gone already, which is fine."""
    if fd is None:
        return
    try:
        os.write(fd, (json.dumps(msg) + "\n").encode())
        os.close(fd)
    except OSError:
        pass


def write_exit(path: str, record: dict[str, object]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def oom_killed(memory_cgroup: str) -> bool:
    try:
        with open(os.path.join(memory_cgroup, "memory.oom_control")) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) > 0
    except (OSError, ValueError):
        pass
    return False


def exit_code(status: int | None) -> int:
    if status is None:
        return 255  # not our child after all (no subreaper?): the status is lost
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)  # as Docker: 137 for SIGKILL
    return os.WEXITSTATUS(status)


def wait_for(pid: int) -> int | None:
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        while os.path.exists(f"/proc/{pid}"):
            time.sleep(0.1)
        return None


def start_error_code(msg: str) -> int:
    """Docker's codes for a process that could not start."""
    low = msg.lower()
    if "no such file" in low or "not found" in low:
        return 127
    if "permission denied" in low:
        return 126
    return 128


def runc_message(log_path: str, fallback: str) -> str:
    msg = ""
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("level") in ("error", "fatal"):
                    msg = str(entry.get("msg", ""))
    except OSError:
        pass
    return one_line(msg or fallback)


def zygote(sock_fd: int) -> int:
    """Keep one monitor forked ahead of time, waiting for the next container.

    A fresh interpreter plus imports costs ~25 ms of CPU per container; here a monitor is a
    fork, made before it is needed. The waiting child receives the next request itself (a
    config path with the readiness pipe attached, SCM_RIGHTS), tells the zygote it was taken,
    and the zygote forks the next one. EOF on the socket means the agent went away: the
    waiting child and the zygote exit; monitors already running keep running.
    """
    sock = socket.socket(fileno=sock_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps exited monitors for us
    taken_r, taken_w = os.pipe()
    while True:
        pid = os.fork()
        if pid == 0:
            os.close(taken_r)
            os._exit(waiting_monitor(sock, taken_w))
        pidfd = os.pidfd_open(pid)
        ready, _, _ = select.select([taken_r, pidfd], [], [])
        os.close(pidfd)
        if taken_r not in ready or os.read(taken_r, 1) != b"1":
            return 0  # the agent went away (or the waiting child died): stop forking


def waiting_monitor(sock: socket.socket, taken_w: int) -> int:
    """A pre-forked child: set up what does not depend on the container, then take one request."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    msg, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    os.write(taken_w, b"1" if msg else b"0")
    os.close(taken_w)
    sock.close()
    if not msg:
        return 0
    cfg_path = msg.decode()
    # Our own errors belong to this container from now on.
    log_fd = os.open(
        os.path.join(os.path.dirname(cfg_path), "shim.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640
    )
    os.dup2(log_fd, 2)
    os.close(log_fd)
    return monitor(cfg_path, fds[0] if fds else None)


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] != "--zygote":
        sys.stderr.write("usage: shim.py --zygote SOCKET_FD (started by the agent)\n")
        return 2
    return zygote(int(sys.argv[2]))


def monitor(cfg_path: str, ready: int | None) -> int:
    with open(cfg_path) as f:
        cfg = json.load(f)
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader (the agent used start_new_session)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only the container's exit ends the shim

    # SIGCHLD wakes the selector through a self-pipe; the handler itself does nothing.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)

    log = LogFile(cfg["log_path"], int(cfg["log_max_size"]), int(cfg["log_max_files"]))
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    runc_log = os.path.join(cfg["bundle"], "runc-log.json")
    base = [cfg["runc"], "--root", cfg["runc_root"], "--log", runc_log, "--log-format", "json"]
    cid = cfg["id"]
    started_at = now_iso()
    try:
        rc = run_bounded(
            [*base, "run", "-d", "--pid-file", cfg["pid_file"], "--bundle", cfg["bundle"], cid],
            out_w, err_w, RUNC_TIMEOUT,
        )  # fmt: skip
        fallback = f"runc run exited with {rc}" if rc >= 0 else f"runc run timed out after {RUNC_TIMEOUT}s"
    except OSError as e:
        rc, fallback = -1, f"runc run: {e}"
    os.close(out_w)
    os.close(err_w)
    pid = 0
    if rc == 0:
        try:
            with open(cfg["pid_file"]) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            fallback = "runc run did not write the container's pid"
    if not pid:
        msg = runc_message(runc_log, fallback)
        subprocess.run([*base, "delete", "--force", cid], capture_output=True, check=False)
        record = {"exit_code": start_error_code(msg), "oom_killed": False, "error": msg}
        write_exit(cfg["exit_file"], {**record, "started_at": "", "finished_at": now_iso()})
        report(ready, {"error": msg})
        return 1
    report(ready, {"pid": pid, "shim": os.getpid()})

    sel = selectors.DefaultSelector()
    streams = {out_r: "stdout", err_r: "stderr"}
    for fd in streams:
        sel.register(fd, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    status: int | None = None
    deadline: float | None = None
    while streams and (deadline is None or time.monotonic() < deadline):
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        for key, _ in sel.select(timeout):
            fd = key.fd
            if fd == wake_r:
                while True:
                    try:
                        if not os.read(wake_r, 512):
                            break
                    except BlockingIOError:
                        break
                continue
            data = os.read(fd, CHUNK)
            if data:
                log.feed(streams[fd], data)
            else:
                log.flush(streams.pop(fd))
                sel.unregister(fd)
                os.close(fd)
        while status is None:  # reap everything; only the init's status matters
            try:
                child, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if child == 0:
                break
            if child == pid:
                status = st
                deadline = time.monotonic() + DRAIN_SECONDS
        if status is None and not streams:
            status = wait_for(pid)  # pipes closed first: the init is (probably) exiting
    for stream in list(streams.values()):
        log.flush(stream)
    finished_at = now_iso()
    oom = bool(cfg.get("memory_cgroup")) and oom_killed(cfg["memory_cgroup"])
    subprocess.run([*base, "delete", "--force", cid], capture_output=True, check=False)
    error = "" if status is not None else "the container's exit status was lost"
    record = {"exit_code": exit_code(status), "oom_killed": oom, "error": error}
    write_exit(cfg["exit_file"], {**record, "started_at": started_at, "finished_at": finished_at})
    return 0


if __name__ == "__main__":
    sys.exit(main())

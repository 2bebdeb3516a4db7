#!/usr/bin/env python3
"""Runs one real server (or the stand-in), signals it during a slow request and prints a timeline.

This is the measuring tool behind /work/notes/e2e.md, not a test: it shows what each server prints at
start-up and shutdown, when, and with which exit status, so the Rust integration tests can synchronise on
the same lines. Standard library only. Every wait is bounded; every process it starts is ended.

    probe.py gunicorn [--signal TERM] [--slow 2]          # needs the venv's gunicorn on PATH or --venv
    probe.py uvicorn  [--signal TERM] [--slow 2]
    probe.py nginx    [--signal TERM|QUIT] [--size-mib 8 --rate 2m]
    probe.py standin  [--signal TERM] [--extra '--all-through-fifo --drain 2']
    --prefix 'unshare --pid --fork --mount-proc --kill-child tini --' --signal-child   runs it under an init
"""

import argparse
import http.client
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_VENV = os.path.join(REPO, "target", "e2e-venv")


def free_port():
    """Binds port 0 on loopback and returns the port the kernel picked (closed again: a tiny race remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


def wait_for_port(port, timeout):
    """Bounded connect retry: True once 127.0.0.1:port accepts a connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.02)  # polling interval of a bounded readiness loop, not synchronisation
    return False


class Timeline:
    """Collects lines from the server's stdout/stderr and events from the probe, stamped from t0."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.lines = []  # (elapsed, source, text)
        self.cond = threading.Condition()

    def add(self, source, text):
        with self.cond:
            self.lines.append((time.monotonic() - self.t0, source, text))
            self.cond.notify_all()

    def follow(self, stream, source):
        def pump():
            for raw in iter(stream.readline, b""):
                self.add(source, raw.decode(errors="replace").rstrip("\n"))
            self.add(source, "<EOF>")

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        return thread

    def wait_line(self, needle, timeout, count=1):
        """Waits until `count` lines contain `needle`; returns False on timeout or once both streams ended."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while sum(needle in text for _, _, text in self.lines) < count:
                if sum(text == "<EOF>" for _, _, text in self.lines) == 2:
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return True

    def dump(self):
        for elapsed, source, text in self.lines:
            print(f"{elapsed:7.3f} {source:6} {text}")


def request_in_background(timeline, port, path, label="client"):
    """GETs path in a thread, logging the outcome (status and byte count, or the error) to the timeline."""

    def run():
        start = time.monotonic()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("GET", path)
            response = connection.getresponse()
            timeline.add(label, f"response headers {response.status}")
            total = 0
            while True:
                chunk = response.read(65536)
                if not chunk:
                    break
                if total == 0:
                    timeline.add(label, "first body bytes received")
                total += len(chunk)
            expected = response.getheader("Content-Length")
            # http.client's read(amt) returns b"" on a cut connection instead of raising: compare the lengths.
            cut = " TRUNCATED" if expected is not None and total < int(expected) else ""
            timeline.add(label, f"done {response.status} {total} bytes (Content-Length {expected}){cut} "
                                f"in {time.monotonic() - start:.2f}s")
        except Exception as error:  # the point is to see how the request dies
            timeline.add(label, f"error {type(error).__name__}: {error} after {time.monotonic() - start:.2f}s")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def process_tree(root_pid):
    """Pids of root_pid's descendants, by scanning every /proc/PID/stat's PPid."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat_file:
                    fields = stat_file.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/comm") as comm_file:
                    comm = comm_file.read().strip()
                parents[int(entry)] = (int(fields[1]), fields[0], comm, fields[19])
            except (OSError, IndexError):
                pass
    found, frontier = [], [root_pid]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, state, comm, start_time) in parents.items():
            if ppid == parent:
                found.append((pid, state, comm, start_time))
                frontier.append(pid)
    return found


def still_running(snapshot):
    """The processes of a process_tree() snapshot that still exist (same pid and start time: not reused)."""
    alive = []
    for pid, _, comm, start_time in snapshot:
        try:
            with open(f"/proc/{pid}/stat") as stat_file:
                fields = stat_file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[19] == start_time:
            alive.append((pid, fields[0], comm, int(fields[1])))
    return alive


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server", choices=["gunicorn", "uvicorn", "nginx", "standin"])
    parser.add_argument("--signal", default="TERM", help="signal name sent to the top process (default TERM)")
    parser.add_argument("--slow", type=float, default=2.0, help="seconds the slow request takes")
    parser.add_argument("--size-mib", type=int, default=8, help="nginx: size of the download")
    parser.add_argument("--rate", default="2m", help="nginx: limit_rate")
    parser.add_argument("--venv", default=DEFAULT_VENV)
    parser.add_argument("--prefix", default="", help="command put in front of the server (e.g. an init)")
    parser.add_argument("--signal-child", action="store_true",
                        help="signal the top process's child (the init under `unshare --fork`, which blocks "
                             "SIGINT/SIGTERM itself and does not forward them)")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on every wait")
    parser.add_argument("--extra", default="", help="extra arguments for the server, one string")
    args = parser.parse_args()

    signal_number = getattr(signal, "SIG" + args.signal.upper().removeprefix("SIG"))
    port = free_port()
    workdir = tempfile.mkdtemp(prefix=f"probe-{args.server}-")
    env = dict(os.environ, PATH=os.path.join(args.venv, "bin") + os.pathsep + os.environ["PATH"],
               PYTHONUNBUFFERED="1")
    slow_path = f"/slow?s={args.slow}"
    in_flight_line = "app: slow request started"

    if args.server == "gunicorn":
        command = ["gunicorn", "--chdir", HERE, "--bind", f"127.0.0.1:{port}", "--workers", "2",
                   "--graceful-timeout", "5", "--no-control-socket", "wsgi_app:app"]
        ready_line = "Booting worker"
    elif args.server == "uvicorn":
        command = ["uvicorn", "--app-dir", HERE, "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
                   "asgi_app:app"]
        ready_line = "Application startup complete"
    elif args.server == "nginx":
        os.makedirs(os.path.join(workdir, "www"))
        with open(os.path.join(workdir, "www", "big.bin"), "wb") as big:
            big.truncate(args.size_mib * 1024 * 1024)  # sparse file: fast to make, served as zeros
        with open(os.path.join(HERE, "nginx.conf.template")) as template:
            config = template.read()
        config = config.replace("@DIR@", workdir).replace("@PORT@", str(port)).replace("@RATE@", args.rate)
        with open(os.path.join(workdir, "nginx.conf"), "w") as config_file:
            config_file.write(config)
        command = ["nginx", "-e", "stderr", "-p", workdir, "-c", os.path.join(workdir, "nginx.conf"),
                   "-g", "daemon off;"]
        ready_line = "start worker processes"
        slow_path = "/big.bin"
        in_flight_line = "first body bytes received"
    else:
        command = [sys.executable, os.path.join(HERE, "standin_server.py")]
        ready_line = "standin: all"
        slow_path = None
    command = shlex.split(args.prefix) + command + shlex.split(args.extra)

    timeline = Timeline()
    print(f"$ {shlex.join(command)}   (port {port}, dir {workdir})")
    # A new session so that the probe can clean up the whole group at the end; stdin closed.
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, cwd=workdir, start_new_session=True)
    pumps = [timeline.follow(server.stdout, "out"), timeline.follow(server.stderr, "err")]
    snapshot = []
    try:
        # gunicorn and uvicorn print their line once per worker (2 workers): wait for both.
        ready_count = 2 if args.server in ("gunicorn", "uvicorn") else 1
        if not timeline.wait_line(ready_line, args.timeout, count=ready_count):
            timeline.add("probe", f"TIMEOUT waiting for {ready_line!r}")
        if args.server != "standin":
            timeline.add("probe", f"port accepts: {wait_for_port(port, args.timeout)}")
        snapshot = process_tree(server.pid)
        timeline.add("probe", "tree: " + " ".join(f"{pid}:{comm}:{state}" for pid, state, comm, _ in snapshot))
        client = None
        if slow_path:
            client = request_in_background(timeline, port, slow_path)
            if not timeline.wait_line(in_flight_line, args.timeout):
                timeline.add("probe", f"TIMEOUT waiting for {in_flight_line!r}")
        target = server.pid
        if args.signal_child:
            target = next(pid for pid, _, _, _ in snapshot if pid in
                          [int(child) for child in open(f"/proc/{server.pid}/task/{server.pid}/children").read().split()])
        timeline.add("probe", f"sending SIG{args.signal.upper()} to pid {target}")
        os.kill(target, signal_number)
        try:
            status = server.wait(args.timeout)
            timeline.add("probe", f"exit status {status}"
                         + (f" (killed by {signal.Signals(-status).name})" if status < 0 else ""))
        except subprocess.TimeoutExpired:
            timeline.add("probe", f"TIMEOUT: still running after {args.timeout}s; tree {process_tree(server.pid)}")
        if client:
            client.join(args.timeout)
        for pump in pumps:
            pump.join(1)  # a leftover process may still hold the pipes open
        leftovers = still_running(snapshot)
        timeline.add("probe", "leftovers after exit (pid:comm:state:ppid): "
                     + (" ".join(f"{pid}:{comm}:{state}:{ppid}" for pid, state, comm, ppid in leftovers) or "none"))
    finally:
        for pid, _, _, _ in still_running(snapshot):
            try:
                os.kill(pid, signal.SIGKILL)  # e.g. setsid controllers the server left behind
            except ProcessLookupError:
                pass
        try:
            os.killpg(server.pid, signal.SIGKILL)  # leftovers in the server's own session, if any
        except ProcessLookupError:
            pass
        if server.poll() is None:
            server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    timeline.dump()


if __name__ == "__main__":
    main()

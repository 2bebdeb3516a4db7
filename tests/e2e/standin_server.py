#!/usr/bin/env python3
"""A stand-in for the multi-process Python API server grace was made for, scaled down in time.

Standard library only. The process shape (see /work/shared/REFERENCE.md, last section):

    supervisor (this process: the one the init runs)
    ├── tee            copies the supervisor's log lines from a FIFO to stdout (and --log-file)
    ├── manager        multiprocessing manager holding the request queue; must outlive the workers
    ├── worker w1..wN  on SIGTERM: wait --worker-delay, then drain for --drain using the manager's queue, exit
    ├── executor e1..  ignore SIGTERM while idle; the supervisor SIGTERMs, waits --executor-timeout, SIGKILLs
    ├── controller c1.. started with start_new_session=True (setsid); never waited for by the supervisor,
    │                  so they are reparented to the init when it exits. They print on SIGTERM and die of it;
    │                  the last --stubborn-controllers of them ignore SIGTERM and need a SIGKILL.
    └── (orphans)      double-forked children that exit at once: zombies until the init reaps them

On SIGTERM (or SIGINT) the supervisor forwards SIGTERM to its workers, waits for them with no timeout, stops
the executors (SIGTERM, timeout, SIGKILL), stops the manager, writes "supervisor pid P shutdown complete"
through the FIFO and exits 0 without waiting for the controllers or tee.

Output (every line names the process and its pid; one write() per line, so lines never interleave):
  - the supervisor's own lines go through the FIFO and tee to stdout; a line that cannot be written (tee, or
    whatever reads stdout, is gone) goes to stderr instead, prefixed "standin: LOST (reader gone): ", so a test
    can see what was lost (lines still in the FIFO's buffer when tee dies are lost without a trace);
  - every other process writes to stdout directly (or through the FIFO with --all-through-fifo);
  - each process names itself (comm, as ps and grace's log show it): supervisor, manager, worker-w1,
    executor-e1, controller-c1, orphan-o1 (tee keeps its own);
  - once everything is up: "standin: all N processes ready (supervisor P tee P manager P workers P,P
    executors P,P,P controllers P,P,P)"; orphans print "orphan oK pid P exiting" before that line.

Every duration is a flag, with an environment default (STANDIN_WORKER_DELAY, STANDIN_DRAIN,
STANDIN_EXECUTOR_TIMEOUT, ...). A clean stop takes about worker-delay + drain + executor-timeout.
"""

import argparse
import multiprocessing
import multiprocessing.connection
import multiprocessing.managers
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# Signals the supervisor reacts to: the first two stop it, the others are only logged (for forwarding tests).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
LOGGED_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)

# The fd each process writes its lines to, and the supervisor-only fds a forked child must close.
LOG_FD = 1
SUPERVISOR_ONLY_FDS = []


def env_default(name, default, kind=float):
    value = os.environ.get("STANDIN_" + name)
    return kind(value) if value is not None else default


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=env_default("WORKERS", 2, int))
    parser.add_argument("--executors", type=int, default=env_default("EXECUTORS", 3, int))
    parser.add_argument("--controllers", type=int, default=env_default("CONTROLLERS", 3, int))
    parser.add_argument("--stubborn-controllers", type=int, default=env_default("STUBBORN_CONTROLLERS", 1, int),
                        help="how many of the controllers (the last ones) ignore SIGTERM")
    parser.add_argument("--orphans", type=int, default=env_default("ORPHANS", 3, int))
    parser.add_argument("--worker-delay", type=float, default=env_default("WORKER_DELAY", 0.5),
                        help="seconds a worker waits after SIGTERM before draining (the real one: ~5)")
    parser.add_argument("--drain", type=float, default=env_default("DRAIN", 1.0),
                        help="seconds a worker spends draining, using the manager's queue")
    parser.add_argument("--drain-steps", type=int, default=env_default("DRAIN_STEPS", 10, int),
                        help="queue round trips during the drain (each failure prints one error line)")
    parser.add_argument("--executor-timeout", type=float, default=env_default("EXECUTOR_TIMEOUT", 2.0),
                        help="seconds between SIGTERM and SIGKILL for the executors (the real one: 10)")
    parser.add_argument("--startup-timeout", type=float, default=env_default("STARTUP_TIMEOUT", 30.0),
                        help="bound on waiting for every process to say it is ready")
    parser.add_argument("--run-dir", default=os.environ.get("STANDIN_RUN_DIR"),
                        help="where the FIFO is made (default: a fresh temp dir, removed at exit)")
    parser.add_argument("--log-file", default=os.environ.get("STANDIN_LOG_FILE"),
                        help="tee also appends the supervisor's lines to this file")
    parser.add_argument("--all-through-fifo", action="store_true",
                        default=bool(os.environ.get("STANDIN_ALL_THROUGH_FIFO")),
                        help="every process logs through the FIFO and tee, not only the supervisor")
    # Internal: how the supervisor starts a controller (a fresh interpreter, like the real ones).
    parser.add_argument("--role", choices=["supervisor", "controller"], default="supervisor",
                        help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stubborn", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def say(text, fd=None):
    """One write() per line: atomic on a pipe (< PIPE_BUF), so lines of different processes never interleave.

    A line that can no longer be written (the reader - tee, or whatever reads stdout - is gone) goes to stderr
    marked "standin: LOST", the way Python's logging reports "--- Logging error ---" and carries on."""
    line = (text + "\n").encode()
    try:
        os.write(LOG_FD if fd is None else fd, line)
    except BrokenPipeError:
        try:
            os.write(2, b"standin: LOST (reader gone): " + line)
        except OSError:
            pass


def set_name(name):
    """Sets the kernel's name for this process (comm, 15 bytes: what ps, top and grace's log show), so each
    role is told apart by name, as setproctitle does for real servers; forked children share python3's."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        pass


def signal_name(number):
    return signal.Signals(number).name


class SignalWaiter:
    """Turns signals into readable bytes (signal.set_wakeup_fd): wait on them together with other fds, no race."""

    def __init__(self, signals):
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for number in signals:
            # The Python-level handler does nothing: the C-level one writes the number to the wakeup fd.
            signal.signal(number, lambda *_: None)
        signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)

    def pending(self):
        try:
            return list(os.read(self.read_fd, 512))
        except BlockingIOError:
            return []

    def wait(self, timeout=None):
        """Waits for a signal; returns the signal numbers received (empty on timeout)."""
        select.select([self.read_fd], [], [], timeout)
        return self.pending()

    def close(self):
        signal.set_wakeup_fd(-1)
        os.close(self.read_fd)
        os.close(self.write_fd)


def reset_in_forked_child():
    """A forked child starts with the supervisor's handlers, wakeup fd and FIFO: drop them."""
    signal.set_wakeup_fd(-1)
    for number in STOP_SIGNALS + LOGGED_SIGNALS:
        signal.signal(number, signal.SIG_DFL)
    for fd in SUPERVISOR_ONLY_FDS:
        try:
            os.close(fd)
        except OSError:
            pass


def die_of(number):
    """Dies of the signal itself, so the wait status says 'killed by SIGTERM' like a process without handler."""
    signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [number])
    os._exit(128 + number)  # not reached


def notify_ready(ready_fd):
    os.write(ready_fd, b".")
    os.close(ready_fd)


# --- manager -----------------------------------------------------------------------------------------------

def manager_init(ready_fd):
    """Runs in the manager process before it serves."""
    reset_in_forked_child()
    set_name("manager")
    pid = os.getpid()

    def on_sigterm(number, _frame):
        say(f"manager pid {pid} got {signal_name(number)}: dying (workers still draining lose the queue)")
        die_of(number)

    signal.signal(signal.SIGTERM, on_sigterm)
    say(f"manager pid {pid} ready")
    notify_ready(ready_fd)


# --- web workers -------------------------------------------------------------------------------------------

def worker_main(name, queue, ready_fd, worker_delay, drain, drain_steps):
    reset_in_forked_child()
    set_name(f"worker-{name}")
    pid = os.getpid()
    waiter = SignalWaiter([signal.SIGTERM, signal.SIGINT])
    # One round trip while serving opens this process's connection to the manager, as a busy worker's is:
    # a manager that dies later then shows up as BrokenPipeError/EOFError on that connection.
    queue.put((name, "warm-up"))
    queue.get(timeout=5)
    say(f"worker {name} pid {pid} ready")
    notify_ready(ready_fd)
    while True:
        received = waiter.wait()
        if signal.SIGTERM in received or signal.SIGINT in received:
            break
    first = signal_name(signal.SIGTERM if signal.SIGTERM in received else signal.SIGINT)
    say(f"worker {name} pid {pid} got {first}: waiting {worker_delay}s before draining")
    deadline = time.monotonic() + worker_delay
    while (remaining := deadline - time.monotonic()) > 0:
        for number in waiter.wait(remaining):
            say(f"worker {name} pid {pid} got {signal_name(number)} again: already stopping")
    say(f"worker {name} pid {pid} draining for {drain}s")
    failures = 0
    for step in range(drain_steps):
        try:
            queue.put((name, step))
            queue.get(timeout=5)
        except Exception as error:  # what a dead manager looks like: BrokenPipeError, EOFError, ConnectionError…
            failures += 1
            say(f"worker {name} pid {pid} ERROR drain step {step + 1}/{drain_steps}: "
                f"{type(error).__name__}: {error}")
        for number in waiter.wait(drain / max(drain_steps, 1)):  # the simulated work of one step
            say(f"worker {name} pid {pid} got {signal_name(number)} again: already stopping")
    if failures:
        say(f"worker {name} pid {pid} drained with {failures} errors, exiting 1")
        os._exit(1)
    say(f"worker {name} pid {pid} drained, exiting 0")
    os._exit(0)


# --- executors ---------------------------------------------------------------------------------------------

def executor_main(name, ready_fd):
    reset_in_forked_child()
    set_name(f"executor-{name}")
    pid = os.getpid()
    waiter = SignalWaiter([signal.SIGTERM, signal.SIGINT])
    say(f"executor {name} pid {pid} ready")
    notify_ready(ready_fd)
    while True:  # idle forever: only SIGKILL ends it
        for number in waiter.wait():
            say(f"executor {name} pid {pid} got {signal_name(number)}: idle, ignoring it")


# --- controllers -------------------------------------------------------------------------------------------

def controller_main(args):
    pid = os.getpid()
    name = args.name
    set_name(f"controller-{name}")
    waiter = SignalWaiter([signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
    say(f"controller {name} pid {pid} ready (session {os.getsid(0)}, "
        f"{'ignores' if args.stubborn else 'dies of'} SIGTERM)")
    notify_ready(args.ready_fd)
    while True:
        for number in waiter.wait():
            if args.stubborn:
                say(f"controller {name} pid {pid} got {signal_name(number)}: ignoring it")
            else:
                say(f"controller {name} pid {pid} got {signal_name(number)}: dying of it")
                waiter.close()
                die_of(number)


# --- orphans -----------------------------------------------------------------------------------------------

def start_orphan(name):
    """Double fork: the grandchild outlives its parent, is reparented to the init, exits, and is a zombie
    until the init reaps it. Returns once the grandchild has exited (its end of a pipe reached EOF)."""
    gone_read, gone_write = os.pipe()  # EOF for the supervisor once the grandchild has exited
    middle = os.fork()
    if middle == 0:
        os.close(gone_read)
        parent_read, parent_write = os.pipe()  # EOF for the grandchild once the middle process has exited
        if os.fork() == 0:
            reset_in_forked_child()
            set_name(f"orphan-{name}")
            os.close(parent_write)
            os.read(parent_read, 1)
            say(f"orphan {name} pid {os.getpid()} exiting (its parent is gone)")
            os._exit(0)
        os._exit(0)
    os.close(gone_write)
    os.waitpid(middle, 0)
    os.read(gone_read, 1)  # blocks until the grandchild exits (bounded: it exits as soon as `middle` is gone)
    os.close(gone_read)


# --- supervisor --------------------------------------------------------------------------------------------

class Supervisor:
    def __init__(self, args):
        self.args = args
        self.pid = os.getpid()
        self.created_run_dir = args.run_dir is None
        self.run_dir = args.run_dir or tempfile.mkdtemp(prefix="standin-")
        self.fifo_fd = None
        self.tee = None
        self.waiter = None

    def log(self, text):
        """The supervisor's lines go through the FIFO; a line tee can no longer take goes to stderr, marked."""
        if self.fifo_fd is None:
            say(text, 2)
        else:
            say(text, self.fifo_fd)

    def start_tee(self):
        fifo = os.path.join(self.run_dir, "log.fifo")
        os.mkfifo(fifo, 0o600)
        # Both ends before tee starts: a non-blocking read end first (so opening the write end cannot block),
        # then the write end. A FIFO read with no writer returns EOF, so tee must never run before a writer.
        read_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.fifo_fd = os.open(fifo, os.O_WRONLY | os.O_CLOEXEC)
        os.set_blocking(read_fd, True)
        command = ["tee"] + (["-a", self.args.log_file] if self.args.log_file else [])
        self.tee = subprocess.Popen(command, stdin=read_fd, stdout=1, stderr=2)
        os.close(read_fd)
        os.unlink(fifo)  # both ends are open: the name is no longer needed
        SUPERVISOR_ONLY_FDS.append(self.fifo_fd)
        self.log(f"supervisor pid {self.pid} tee pid {self.tee.pid} reading the log FIFO")

    def wait_ready(self, ready_read, count):
        deadline = time.monotonic() + self.args.startup_timeout
        seen = 0
        while seen < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"only {seen} of {count} processes ready after {self.args.startup_timeout}s")
            readable, _, _ = select.select([ready_read], [], [], remaining)
            if readable:
                chunk = os.read(ready_read, 64)
                if not chunk:
                    raise RuntimeError(f"ready pipe closed after {seen} of {count} processes")
                seen += len(chunk)

    def run(self):
        global LOG_FD
        args = self.args
        set_name("supervisor")
        # Handlers (not a blocked mask) so that exec'd children start with default dispositions and no mask.
        self.waiter = SignalWaiter(STOP_SIGNALS + LOGGED_SIGNALS)
        SUPERVISOR_ONLY_FDS.extend([self.waiter.read_fd, self.waiter.write_fd])
        self.start_tee()
        if args.all_through_fifo:
            LOG_FD = self.fifo_fd
            SUPERVISOR_ONLY_FDS.remove(self.fifo_fd)
        self.log(f"supervisor pid {self.pid} starting")
        context = multiprocessing.get_context("fork")  # explicit: the default changes in Python 3.14
        ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
        SUPERVISOR_ONLY_FDS.append(ready_read)

        # Every forked child gets a dup of the write end (inheritable fds survive fork, not exec).
        def ready_fd():
            return os.dup(ready_write)

        manager = multiprocessing.managers.SyncManager(ctx=context)
        fd = ready_fd()
        manager.start(manager_init, (fd,))
        os.close(fd)
        queue = manager.Queue()

        workers = []
        for index in range(1, args.workers + 1):
            fd = ready_fd()
            process = context.Process(target=worker_main, name=f"w{index}",
                                      args=(f"w{index}", queue, fd, args.worker_delay, args.drain,
                                            args.drain_steps))
            process.start()
            os.close(fd)
            workers.append(process)
        executors = []
        for index in range(1, args.executors + 1):
            fd = ready_fd()
            process = context.Process(target=executor_main, name=f"e{index}", args=(f"e{index}", fd))
            process.start()
            os.close(fd)
            executors.append(process)
        controllers = []
        for index in range(1, args.controllers + 1):
            stubborn = index > args.controllers - args.stubborn_controllers
            fd = ready_fd()
            os.set_inheritable(fd, True)
            command = [sys.executable, os.path.abspath(__file__), "--role", "controller", "--name", f"c{index}",
                       "--ready-fd", str(fd)] + (["--stubborn"] if stubborn else [])
            stdout = self.fifo_fd if args.all_through_fifo else 1
            controllers.append(subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stdout,
                                                pass_fds=(fd,), start_new_session=True))
            os.close(fd)
        os.close(ready_write)
        count = 1 + args.workers + args.executors + args.controllers  # manager, workers, executors, controllers
        self.wait_ready(ready_read, count)
        os.close(ready_read)
        SUPERVISOR_ONLY_FDS.remove(ready_read)
        for index in range(1, args.orphans + 1):
            start_orphan(f"o{index}")

        def pids(processes):
            return ",".join(str(process.pid) for process in processes) or "-"

        total = 2 + count  # + supervisor and tee
        self.log(f"standin: all {total} processes ready (supervisor {self.pid} tee {self.tee.pid} "
                 f"manager {manager._process.pid} workers {pids(workers)} executors {pids(executors)} "
                 f"controllers {pids(controllers)})")

        first = self.wait_for_stop_signal()
        self.log(f"supervisor pid {self.pid} got {signal_name(first)}: forwarding SIGTERM to "
                 f"{len(workers)} workers")
        started = time.monotonic()
        for worker in workers:
            self.signal_process("worker", worker, signal.SIGTERM)
        self.wait_processes(workers, None)  # no timeout, like the real supervisor
        for worker in workers:
            self.log(f"supervisor pid {self.pid} worker {worker.name} pid {worker.pid} exited: "
                     f"{describe_exit(worker.exitcode)}")
        self.log(f"supervisor pid {self.pid} stopping {len(executors)} executors: SIGTERM, "
                 f"SIGKILL after {args.executor_timeout}s")
        for executor in executors:
            self.signal_process("executor", executor, signal.SIGTERM)
        self.wait_processes(executors, time.monotonic() + args.executor_timeout)
        for executor in executors:
            if executor.exitcode is None:
                self.log(f"supervisor pid {self.pid} executor {executor.name} pid {executor.pid} still running "
                         f"after {args.executor_timeout}s: SIGKILL")
                self.signal_process("executor", executor, signal.SIGKILL, quiet=True)
        self.wait_processes(executors, None)
        for executor in executors:
            self.log(f"supervisor pid {self.pid} executor {executor.name} pid {executor.pid} exited: "
                     f"{describe_exit(executor.exitcode)}")
        manager_pid = manager._process.pid
        manager.shutdown()
        self.log(f"supervisor pid {self.pid} manager pid {manager_pid} stopped: "
                 f"{describe_exit(manager._process.exitcode)}")
        self.log(f"supervisor pid {self.pid} shutdown complete after {time.monotonic() - started:.1f}s, "
                 f"exiting 0 (controllers left running: {pids(controllers)})")
        os.close(self.fifo_fd)
        self.fifo_fd = None
        if self.created_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return 0

    def wait_for_stop_signal(self):
        while True:
            for number in self.waiter.wait():
                if number in STOP_SIGNALS:
                    return number
                self.log(f"supervisor pid {self.pid} got {signal_name(number)}: logged, no action")

    def signal_process(self, role, process, number, quiet=False):
        try:
            os.kill(process.pid, number)
        except ProcessLookupError:
            return
        if not quiet:
            self.log(f"supervisor pid {self.pid} sent {signal_name(number)} to {role} {process.name} "
                     f"pid {process.pid}")

    def wait_processes(self, processes, deadline):
        """Waits until all have exited or the deadline passes, logging signals that arrive meanwhile."""
        while True:
            running = [process for process in processes if process.exitcode is None]
            if not running:
                return
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if timeout == 0.0:
                return
            multiprocessing.connection.wait([process.sentinel for process in running] + [self.waiter.read_fd],
                                            timeout)
            for number in self.waiter.pending():
                self.log(f"supervisor pid {self.pid} got {signal_name(number)} again: already shutting down")


def describe_exit(exitcode):
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        return f"killed by {signal_name(-exitcode)}"
    return f"exit code {exitcode}"


def main():
    args = parse_args(sys.argv[1:])
    if args.role == "controller":
        controller_main(args)
        return 0
    return Supervisor(args).run()


if __name__ == "__main__":
    sys.exit(main())

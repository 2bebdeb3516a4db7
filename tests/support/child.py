#!/usr/bin/env python3
"""Test children for grace's integration tests: each mode prints what it does, one line at a time, so the
tests synchronise on output and never on sleeps.

Usage: child.py MODE [ARGS...]
  signals [EXIT_ON]      block every signal, print "ready", then "got N from PID" for each one received;
                         exit 0 after receiving signal number EXIT_ON (default: never)
  signals-reuse EXIT_ON  `signals`, and a second process that, once this one has been reaped, takes its pid
                         (forking with /proc/sys/kernel/ns_last_pid set below it) and reports what that pid
                         receives: "reuser took pid P", then "reuser got N from PID", until a SIGTERM
  ignore-term            ignore SIGTERM, print "ready", wait for ever
  handle-term [CODE]     on SIGTERM print "got TERM" and exit CODE (default 0); print "ready" first
  status                 print the SigBlk and SigIgn lines of /proc/self/status and the open fds
  orphans N              make N orphans (children of a process that exits at once), print "orphaned N",
                         then wait for SIGTERM and exit 0
  daemons SPEC...        start setsid daemons, one per SPEC: NAME:handle or NAME:ignore; each prints
                         "daemon NAME pid P ready"; a handling one prints "daemon NAME got TERM" and exits.
                         NAME:stay-ignore starts a plain child instead, in the process group, ignoring SIGTERM;
                         NAME:zombie-handle and NAME:zombie-ignore a setsid daemon that becomes a zombie-leader
                         Then print "daemons ready" and behave as MAIN (see --main)
      --main handle|ignore|exit:CODE   what the main process does (default handle)
  with-daemons SPEC... -- MODE ARGS...
                         start setsid daemons as `daemons` does (each prints "daemon NAME pid P ready"), then
                         exec child.py MODE ARGS... in this same process
  exec-with [--block N,...] [--ignore N,...] [--raise N,...] [--fd] -- PROGRAM ARGS...
                         reset SIGPIPE and SIGXFSZ to the default (as subprocess does), block signals N...,
                         ignore signals N..., with --raise block signals N... and send them to this process
                         (so that they are pending at exec, sent by the pid PROGRAM will have), with --fd
                         open an inheritable descriptor (print "fd N"), then exec PROGRAM (found in PATH) in
                         place of this process
  init-near-pid-wrap N -- PROGRAM ARGS...
                         as PID 1 of a fresh PID namespace: set the namespace's last pid N below pid_max, so
                         that its pids wrap after N more processes, then start PROGRAM as a child (so that it
                         is not PID 1), forward SIGTERM and SIGINT to it, reap every process, and exit with
                         PROGRAM's status (128+N for a signal)
  popen PROGRAM ARGS...  start PROGRAM as a child, print "popen pid P", and wait to be killed
  stderr-then TEXT MODE ARGS...
                         write TEXT to stderr, then exec child.py MODE ARGS... in this same process
  stderr-lines N MODE ARGS...
                         start a writer process that writes N lines "child line K" (K from 00000, padded to
                         100 bytes) to stderr, each in one blocking write, says "stderr full" the first time
                         stderr has no room, and "stderr lines written N" once done; then exec child.py MODE
                         ARGS... in this same process
  survivors              the tree of a hung shutdown: ignore SIGTERM, start the `survivor` children catcher,
                         blocker, stopper, and ignorer under `sh -c '...; true'` (a shell that did not exec),
                         print "survivor main pid P parent Q name N cmdline C", then report each stop of
                         the stopper ("stopper stopped"), and its continues ("stopper continued") when they
                         are seen: a stop that follows at once hides one
  survivor ROLE          one process of that tree; prints "survivor ROLE pid P parent Q name N cmdline C" (N:
                         its comm, C: its cmdline, arguments joined by spaces), then waits to be killed:
      catcher            handles SIGTERM: prints "survivor catcher got TERM", starts `survivor hook` once
      blocker            blocks SIGTERM
      stopper            handles SIGTERM (prints "survivor stopper got TERM"); stops itself with SIGSTOP
                         again each time it is continued
      ignorer            ignores SIGTERM; also prints "survivor shell pid …" for its parent, the shell
      hook               SIGTERM at its default action
  orphan-bursts N,...    print "ready pid P"; on the Kth SIGUSR1 make N orphans, the Kth count of the list (the
                         last one once the list runs out; they are children of a process that exits at once),
                         and print "orphaned N burst K"; on SIGTERM print "got TERM", exit 0
  fork-chains C H MARKER ignore SIGTERM, start C chains of H hops (each hop forks the next and exits at once,
                         so every hop is an orphan), print "chains ready", and wait; a chain's last hop prints
                         "chain complete" and waits. MARKER only tags the command line, for the test to find
  handle-term-after MS CODE
                         print "ready pid P"; on SIGTERM print "got TERM", take MS milliseconds more, print
                         "done", exit CODE
  zombie-leader handle|ignore
                         a live process that looks like a zombie: a second thread prints "thread alive pid P"
                         and the main thread calls pthread_exit, so /proc shows state Z; with handle the thread
                         takes SIGTERM (sigwaitinfo), prints "zombie-leader got TERM" and exits 0; with ignore
                         SIGTERM is ignored
  many N                 ignore SIGTERM, start N children that ignore it too, print "many N ready", wait
  chain N                a chain of N processes (shells, and a sleep at the end), each the child of the one
                         before, all ignoring SIGTERM; the last prints "chain N ready"; each waits
  fork-bomb              ignore SIGTERM, set SIGCHLD to ignored (children are reaped by the kernel, and give no
                         SIGCHLD to anyone), then fork in a loop, in every process; the first to be refused a
                         fork (EAGAIN: the pids limit) prints "bomb at the limit"
  leave-zombie-in PID    enter PID's PID namespace (setns), fork a child there that exits at once, print
                         "zombie left pid P" (P: its pid on the host) and never reap it
  setuid-root MODE ARGS...
                         (run as a setuid-root copy of python3) become root for good (setresuid 0), print
                         "root pid P", then behave as MODE
"""
import os
import signal
import sys


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def catchable():
    return signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}


def mode_signals(exit_on=None):
    signal.pthread_sigmask(signal.SIG_BLOCK, catchable())
    say(f"ready pid {os.getpid()}")
    while True:
        info = signal.sigwaitinfo(catchable())
        if info.si_signo == signal.SIGCHLD:
            continue
        say(f"got {info.si_signo} from {info.si_pid}")
        if info.si_signo == exit_on:
            return


def mode_signals_reuse(exit_on):
    """`signals`, and beside it a process that takes this one's pid the moment it is free again (see
    take_over_pid)."""
    target = os.getpid()
    if os.fork() == 0:
        take_over_pid(target)
        os._exit(0)
    mode_signals(exit_on)


def take_over_pid(target):
    """Wait until `target` has been reaped, then fork, with /proc/sys/kernel/ns_last_pid set just below it,
    until a child gets its pid; that child reports every signal it receives ("reuser got N from P") until a
    SIGTERM. A signal that was meant for `target` and reaches it was sent to a reused pid."""
    wanted = catchable()
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    # Out of the target's process group: while a member is left, the group's id (the target's pid) is taken,
    # and the kernel would never hand that pid out again.
    os.setpgid(0, 0)
    while True:
        try:
            os.kill(target, 0)  # succeeds for a zombie too: the pid is free only once it is reaped
        except ProcessLookupError:
            break
        except PermissionError:
            pass
        os.sched_yield()
    for _ in range(1000):
        with open("/proc/sys/kernel/ns_last_pid", "w") as last_pid:
            last_pid.write(str(target - 1))
        pid = os.fork()
        if pid == 0:
            if os.getpid() != target:
                os._exit(1)
            say(f"reuser took pid {target}")
            while True:
                info = signal.sigtimedwait(wanted, 5.0)
                if info is None or info.si_signo == signal.SIGTERM:
                    os._exit(0)
                if info.si_signo != signal.SIGCHLD:
                    say(f"reuser got {info.si_signo} from {info.si_pid}")
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) == 0:
            break
    signal.sigtimedwait({signal.SIGTERM}, 5.0)


def wait_forever():
    while True:
        signal.pause()


def mode_ignore_term():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    say(f"ready pid {os.getpid()}")
    wait_forever()


def on_term_exit(label, code):
    def handler(_signum, _frame):
        say(label)
        os._exit(code)

    signal.signal(signal.SIGTERM, handler)


def mode_handle_term(code=0):
    on_term_exit("got TERM", code)
    say(f"ready pid {os.getpid()}")
    wait_forever()


def mode_status():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("SigBlk", "SigIgn")):
                say(line.strip())
    say("fds " + " ".join(sorted(os.listdir("/proc/self/fd"), key=int)))


def mode_orphans(count):
    on_term_exit("got TERM", 0)
    intermediate = os.fork()
    if intermediate == 0:
        for _ in range(count):
            os.posix_spawn("/bin/true", ["true"], {})
        os._exit(0)  # its children are orphaned and go to grace
    os.waitpid(intermediate, 0)
    say(f"orphaned {count}")
    wait_forever()


def start_daemon(name, behaviour):
    """Double fork with setsid, so the daemon is reparented to grace and escapes the process group; with
    `stay-ignore`, a plain child that stays in the group and ignores SIGTERM. Returns once the daemon has set
    up its SIGTERM disposition and said so: "daemons ready" then means all of them are (a test that signals
    on it must not find a daemon still starting, killed by a default SIGTERM)."""
    ready_reader, ready_writer = os.pipe()
    if behaviour == "stay-ignore":
        if os.fork() == 0:
            os.close(ready_reader)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            say(f"daemon {name} pid {os.getpid()} ready")
            os.write(ready_writer, b"r")
            os.close(ready_writer)
            wait_forever()
        os.close(ready_writer)
        os.read(ready_reader, 1)
        os.close(ready_reader)
        return
    first = os.fork()
    if first:
        os.close(ready_writer)
        os.waitpid(first, 0)
        os.read(ready_reader, 1)  # the daemon's byte, or EOF if it died first
        os.close(ready_reader)
        return
    os.close(ready_reader)
    os.setsid()
    if os.fork():
        os._exit(0)
    if behaviour.startswith("zombie-"):
        # A live process that looks like a zombie (see zombie-leader); exec gives it a clean interpreter,
        # which says "thread alive" once it is set up.
        say(f"daemon {name} pid {os.getpid()} ready")
        os.write(ready_writer, b"r")
        os.close(ready_writer)
        leader = [sys.executable, "-u", os.path.abspath(__file__), "zombie-leader", behaviour[len("zombie-") :]]
        os.execv(sys.executable, leader)
    if behaviour == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        on_term_exit(f"daemon {name} got TERM", 0)
    say(f"daemon {name} pid {os.getpid()} ready")
    os.write(ready_writer, b"r")
    os.close(ready_writer)
    wait_forever()


def mode_daemons(args):
    main = "handle"
    specs = []
    while args:
        arg = args.pop(0)
        if arg == "--main":
            main = args.pop(0)
        else:
            specs.append(arg)
    for spec in specs:
        name, behaviour = spec.split(":")
        start_daemon(name, behaviour)
    if main.startswith("exit:"):
        say("daemons ready")
        sys.exit(int(main.split(":")[1]))
    if main == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        on_term_exit("main got TERM", 0)
    say("daemons ready")
    wait_forever()


def signal_numbers(text):
    return {int(number) for number in text.split(",") if number}


def mode_exec_with(args):
    block, ignore, raised, extra_fd = set(), set(), set(), False
    while args and args[0] != "--":
        option = args.pop(0)
        if option == "--block":
            block = signal_numbers(args.pop(0))
        elif option == "--raise":
            raised = signal_numbers(args.pop(0))
        elif option == "--ignore":
            ignore = signal_numbers(args.pop(0))
        elif option == "--fd":
            extra_fd = True
        else:
            sys.exit(f"child.py exec-with: unknown option {option}")
    program = args[1:]
    # Python ignores these at startup and os.exec* keeps an ignored disposition: undo that first.
    for number in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(number, signal.SIG_DFL)
    for number in ignore:
        signal.signal(number, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, block | raised)
    for number in raised:
        os.kill(os.getpid(), number)
    if extra_fd:
        fd = os.open("/dev/null", os.O_RDONLY)
        os.set_inheritable(fd, True)
        say(f"fd {fd}")
    os.execvp(program[0], program)


def mode_init_near_pid_wrap(args):
    before_wrap = int(args[0])
    program = args[2:]
    with open("/proc/sys/kernel/pid_max") as pid_max:
        last = int(pid_max.read()) - before_wrap
    with open("/proc/sys/kernel/ns_last_pid", "w") as last_pid:
        last_pid.write(str(last))
    started = []

    def forward(number, _frame):
        if started:
            os.kill(started[0], number)

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    pid = os.fork()
    if pid == 0:
        for number in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        os.execvp(program[0], program)
    started.append(pid)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    status = 0
    while True:
        try:
            reaped, wait_status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if reaped == pid:
            status = os.waitstatus_to_exitcode(wait_status)
    os._exit(status if status >= 0 else 128 - status)


def mode_popen(args):
    import subprocess

    process = subprocess.Popen(args)
    say(f"popen pid {process.pid}")
    wait_forever()


def mode_with_daemons(args):
    split = args.index("--")
    for spec in args[:split]:
        name, behaviour = spec.split(":")
        start_daemon(name, behaviour)
    # exec, not a call: the mode starts afresh (dispositions, mask) with the same pid, and the daemons are
    # already on their own.
    rest = args[split + 1 :]
    os.execv(sys.executable, [sys.executable, "-u", os.path.abspath(__file__)] + rest)


def mode_stderr_then(args):
    sys.stderr.write(args[0] + "\n")
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-u", os.path.abspath(__file__)] + args[1:])


def mode_stderr_lines(args):
    count = int(args[0])
    if os.fork() == 0:
        import select

        full_said = False
        for number in range(count):
            if not full_said and not select.select([], [2], [], 0)[1]:
                say("stderr full")
                full_said = True
            os.write(2, f"child line {number:05} ".ljust(99, "-").encode() + b"\n")
        say(f"stderr lines written {count}")
        os._exit(0)
    os.execv(sys.executable, [sys.executable, "-u", os.path.abspath(__file__)] + args[1:])


def describe(role, pid):
    """`survivor ROLE pid P parent Q name N cmdline C`, from /proc, as grace's diagnosis reads it."""
    with open(f"/proc/{pid}/stat") as stat:
        head, rest = stat.read().rsplit(")", 1)
    name, parent = head.split("(", 1)[1], rest.split()[1]
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        words = cmdline.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    return f"survivor {role} pid {pid} parent {parent} name {name} cmdline {words}"


def start_survivor(role):
    import subprocess

    return subprocess.Popen([sys.executable, "-u", os.path.abspath(__file__), "survivor", role])


def mode_survivors():
    import shlex
    import subprocess

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the children, and kept by the shell
    for role in ("catcher", "blocker"):
        start_survivor(role)
    stopper = start_survivor("stopper")
    ignorer = [sys.executable, "-u", os.path.abspath(__file__), "survivor", "ignorer"]
    # `; true` keeps the shell from exec-ing its last command: it stays, as the ignorer's parent.
    subprocess.Popen(["sh", "-c", " ".join(shlex.quote(word) for word in ignorer) + "; true"])
    say(describe("main", os.getpid()))
    while True:
        _, status = os.waitpid(stopper.pid, os.WUNTRACED | os.WCONTINUED)
        if os.WIFSTOPPED(status):
            say("stopper stopped")
        elif os.WIFCONTINUED(status):
            say("stopper continued")
        else:
            say("stopper exited")
            wait_forever()


def mode_survivor(role):
    if role == "catcher":
        hooks = []

        def on_term(_signum, _frame):
            say("survivor catcher got TERM")
            if not hooks:
                hooks.append(start_survivor("hook"))

        signal.signal(signal.SIGTERM, on_term)
    elif role == "blocker":
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    elif role == "stopper":
        signal.signal(signal.SIGTERM, lambda _signum, _frame: say("survivor stopper got TERM"))
    elif role == "ignorer":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say(describe("shell", os.getppid()))
    elif role == "hook":
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    else:
        sys.exit(f"child.py survivor: unknown role {role}")
    say(describe(role, os.getpid()))
    if role == "stopper":
        while True:
            os.kill(os.getpid(), signal.SIGSTOP)
    wait_forever()


def mode_terminal():
    """Say whether this process's group is the terminal's foreground group, then wait for Ctrl-C."""
    def on_interrupt(_signum, _frame):
        say("got INT")
        os._exit(0)

    signal.signal(signal.SIGINT, on_interrupt)
    foreground = os.tcgetpgrp(0) == os.getpgrp()
    say(f"ready foreground={'yes' if foreground else 'no'}")
    wait_forever()


def make_orphans(count):
    """An intermediate posix_spawns COUNT /bin/true and exits: they are orphaned, and go to grace."""
    intermediate = os.fork()
    if intermediate == 0:
        for _ in range(count):
            os.posix_spawn("/bin/true", ["true"], {})
        os._exit(0)
    os.waitpid(intermediate, 0)


def mode_orphan_bursts(counts):
    wanted = {signal.SIGUSR1, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    say(f"ready pid {os.getpid()}")
    burst = 0
    while True:
        info = signal.sigwaitinfo(wanted)
        if info.si_signo == signal.SIGTERM:
            say("got TERM")
            return
        count = counts[min(burst, len(counts) - 1)]
        burst += 1
        make_orphans(count)
        say(f"orphaned {count} burst {burst}")


def mode_fork_chains(chains, hops):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by every hop: only SIGKILL ends them
    for _ in range(chains):
        if os.fork() == 0:
            for _ in range(hops):
                if os.fork() != 0:
                    os._exit(0)  # the next hop is orphaned and goes to grace
            say("chain complete")
            wait_forever()
    say("chains ready")
    wait_forever()


def mode_handle_term_after(milliseconds, code):
    import time

    def on_term(_signum, _frame):
        say("got TERM")
        time.sleep(milliseconds / 1000)
        say("done")
        os._exit(code)

    signal.signal(signal.SIGTERM, on_term)
    say(f"ready pid {os.getpid()}")
    wait_forever()


def mode_zombie_leader(behaviour):
    import ctypes
    import threading

    if behaviour == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        # Blocked in every thread (the mask is inherited by the new one), taken by the thread that stays.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def thread():
        say(f"thread alive pid {os.getpid()}")
        if behaviour == "ignore":
            wait_forever()
        signal.sigwaitinfo({signal.SIGTERM})
        say("zombie-leader got TERM")
        os._exit(0)

    threading.Thread(target=thread).start()
    ctypes.CDLL(None).pthread_exit(None)  # ctypes releases the GIL: the other thread runs on


def mode_many(count):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by each child
    for _ in range(count):
        if os.fork() == 0:
            wait_forever()
    say(f"many {count} ready")
    wait_forever()


def mode_chain(length):
    # Each link a freshly exec'd shell: a chain of plain forks would make the kernel's reverse mappings of
    # the shared pages (anon_vma chains) grow with the depth, and building it quadratic (a minute for 1,000).
    script = (
        'trap "" TERM; '
        'if [ "$1" -gt 1 ]; then sh -c "$0" "$0" "$(($1 - 1))" "$2" & wait; '
        'else echo "chain $2 ready"; exec sleep 1000000; fi'
    )
    os.execvp("sh", ["sh", "-c", script, script, str(length), str(length)])


def mode_fork_bomb():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    told = False
    while True:
        try:
            os.fork()
        except OSError:
            if not told:
                told = True
                say("bomb at the limit")


def mode_leave_zombie_in(pid):
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    namespace = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY)
    if libc.setns(namespace, 0x20000000) != 0:  # CLONE_NEWPID: for the children from now on
        sys.exit(f"child.py leave-zombie-in: setns: {os.strerror(ctypes.get_errno())}")
    child = os.fork()
    if child == 0:
        os._exit(0)
    say(f"zombie left pid {child}")
    wait_forever()  # never reaped: SIGCHLD's default is to ignore it, and nothing waits


def mode_setuid_root(args):
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    say(f"root pid {os.getpid()}")
    os.execv(sys.executable, [sys.executable, "-u", os.path.abspath(__file__)] + args)


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "signals":
        mode_signals(int(args[0]) if args else None)
    elif mode == "signals-reuse":
        mode_signals_reuse(int(args[0]))
    elif mode == "terminal":
        mode_terminal()
    elif mode == "ignore-term":
        mode_ignore_term()
    elif mode == "handle-term":
        mode_handle_term(int(args[0]) if args else 0)
    elif mode == "status":
        mode_status()
    elif mode == "orphans":
        mode_orphans(int(args[0]))
    elif mode == "daemons":
        mode_daemons(args)
    elif mode == "exec-with":
        mode_exec_with(args)
    elif mode == "init-near-pid-wrap":
        mode_init_near_pid_wrap(args)
    elif mode == "popen":
        mode_popen(args)
    elif mode == "with-daemons":
        mode_with_daemons(args)
    elif mode == "stderr-lines":
        mode_stderr_lines(args)
    elif mode == "stderr-then":
        mode_stderr_then(args)
    elif mode == "survivors":
        mode_survivors()
    elif mode == "survivor":
        mode_survivor(args[0])
    elif mode == "orphan-bursts":
        mode_orphan_bursts([int(count) for count in args[0].split(",")])
    elif mode == "fork-chains":
        mode_fork_chains(int(args[0]), int(args[1]))
    elif mode == "handle-term-after":
        mode_handle_term_after(int(args[0]), int(args[1]))
    elif mode == "zombie-leader":
        mode_zombie_leader(args[0])
    elif mode == "many":
        mode_many(int(args[0]))
    elif mode == "chain":
        mode_chain(int(args[0]))
    elif mode == "fork-bomb":
        mode_fork_bomb()
    elif mode == "leave-zombie-in":
        mode_leave_zombie_in(int(args[0]))
    elif mode == "setuid-root":
        mode_setuid_root(args)
    else:
        sys.exit(f"child.py: unknown mode {mode}")


if __name__ == "__main__":
    main()

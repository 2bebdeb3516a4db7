#!/usr/bin/env python3
"""Test children for grace's integration tests: each mode prints what it does, one line at a time, so the
tests synchronise on output and never on sleeps.

Usage: child.py MODE [ARGS...]
  signals [EXIT_ON]      block every signal, print "ready", then "got N from PID" for each one received;
                         exit 0 after receiving signal number EXIT_ON (default: never)
  ignore-term            ignore SIGTERM, print "ready", wait for ever
  handle-term [CODE]     on SIGTERM print "got TERM" and exit CODE (default 0); print "ready" first
  status                 print the SigBlk and SigIgn lines of /proc/self/status and the open fds
  orphans N              make N orphans (children of a process that exits at once), print "orphaned N",
                         then wait for SIGTERM and exit 0
  daemons SPEC...        start setsid daemons, one per SPEC: NAME:handle or NAME:ignore; each prints
                         "daemon NAME pid P ready"; a handling one prints "daemon NAME got TERM" and exits.
                         Then print "daemons ready" and behave as MAIN (see --main)
      --main handle|ignore|exit:CODE   what the main process does (default handle)
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
    """Double fork with setsid, so the daemon is reparented to grace and escapes the process group."""
    first = os.fork()
    if first:
        os.waitpid(first, 0)
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    if behaviour == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        on_term_exit(f"daemon {name} got TERM", 0)
    say(f"daemon {name} pid {os.getpid()} ready")
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


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "signals":
        mode_signals(int(args[0]) if args else None)
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
    else:
        sys.exit(f"child.py: unknown mode {mode}")


if __name__ == "__main__":
    main()

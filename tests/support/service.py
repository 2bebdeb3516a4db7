#!/usr/bin/env python3
"""A stand-in service for the tests of several services: it records what it does and receives, one line at a
time with a monotonic timestamp (comparable between processes), so that the tests synchronise on output and
compare orders and times across services.

Usage: service.py NAME [OPTIONS]
Every line reads "svc NAME EVENT t=SECONDS pid=P [details]", SECONDS from CLOCK_MONOTONIC.
  --ready-after MS        wait MS milliseconds after starting, then become ready as the options below say
                          (default 0); "svc NAME ready" is printed when it does
  --listen PORT           once ready, accept TCP connections on 127.0.0.1:PORT (each is answered "ok\\n")
  --ready-file PATH       once ready, create PATH
  --notify                once ready, send READY=1 to $NOTIFY_SOCKET
  --stop-signal NAME      the signal that stops it (default TERM); others are recorded ("got SIG")
  --drain MS              on the stop signal, take MS milliseconds before exiting (default 0)
  --exit CODE             the status it exits with after a stop (default 0)
  --ignore-stop           record the stop signal but do not act on it
  --client PORT           from the start until it exits, connect to 127.0.0.1:PORT every 50 ms and print each
                          failure ("svc NAME client failed"), and "svc NAME client ok N" every 10 successes
  --daemon handle|ignore  start a setsid, double-forked daemon (its parent exits), printing
                          "svc NAME daemon pid P"; with handle it prints "svc NAME daemon got TERM" and exits on
                          SIGTERM; with ignore it ignores SIGTERM
  --exit-after MS CODE    exit with CODE MS milliseconds after starting, on its own
  --env NAME              print "svc NAME env NAME=VALUE" for that variable at start
Output (each in one write, straight to the descriptor, after "started"; in the order given):
  --write STREAM TEXT     write TEXT, with Python's escapes (\\n, \\x00, \\xff…) decoded to bytes, to STREAM
                          (stdout or stderr)
  --long-line STREAM N    write a line of N bytes ("L" and the digits 0-9 over and over) and its newline
  --burst STREAM COUNT    write COUNT lines "B NAME STREAM SEQ LEN FILL", FILL being LEN times one letter,
                          of lengths from 1 to 6,000 bytes, one write each; then "svc NAME burst done"
  --max-line N            no line of --burst longer than N bytes (the lengths above, cut)
  --flood STREAM          from a thread, write numbered lines of 1 KiB to STREAM until blocked for good
  --exit-now CODE         once the writes are done, exit with CODE at once, without "ready"
"""
import os
import signal
import socket
import sys
import threading
import time

NAME = sys.argv[1] if len(sys.argv) > 1 else "service"


def say(event, detail=""):
    line = f"svc {NAME} {event} t={time.monotonic():.6f} pid={os.getpid()}"
    if detail:
        line += " " + detail
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def options(argv):
    parsed = {"ready_after": 0, "stop_signal": "TERM", "drain": 0, "exit": 0, "env": [], "writes": []}
    index = 0
    while index < len(argv):
        option = argv[index]
        def value():
            return argv[index + 1]
        if option == "--ready-after":
            parsed["ready_after"] = int(value()); index += 1
        elif option == "--listen":
            parsed["listen"] = int(value()); index += 1
        elif option == "--ready-file":
            parsed["ready_file"] = value(); index += 1
        elif option == "--notify":
            parsed["notify"] = True
        elif option == "--stop-signal":
            parsed["stop_signal"] = value(); index += 1
        elif option == "--drain":
            parsed["drain"] = int(value()); index += 1
        elif option == "--exit":
            parsed["exit"] = int(value()); index += 1
        elif option == "--ignore-stop":
            parsed["ignore_stop"] = True
        elif option == "--client":
            parsed["client"] = int(value()); index += 1
        elif option == "--daemon":
            parsed["daemon"] = value(); index += 1
        elif option == "--exit-after":
            parsed["exit_after"] = (int(argv[index + 1]), int(argv[index + 2])); index += 2
        elif option == "--env":
            parsed["env"].append(value()); index += 1
        elif option in ("--write", "--long-line", "--burst"):
            parsed["writes"].append((option, argv[index + 1], argv[index + 2])); index += 2
        elif option == "--max-line":
            parsed["max_line"] = int(value()); index += 1
        elif option == "--flood":
            parsed["flood"] = value(); index += 1
        elif option == "--exit-now":
            parsed["exit_now"] = int(value()); index += 1
        else:
            raise SystemExit(f"service.py: unknown option {option}")
        index += 1
    return parsed


def descriptor(stream):
    return {"stdout": 1, "stderr": 2}[stream]


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def burst_lengths(count):
    """Lengths from 1 to 6,000 bytes, most short, some longer than one PIPE_BUF write."""
    state = 12345
    for _ in range(count):
        state = (state * 1103515245 + 12345) % (1 << 31)
        roll = state % 100
        if roll < 70:
            yield 1 + state % 120
        elif roll < 95:
            yield 1 + state % 3000
        else:
            yield 1 + state % 6000


def do_write(kind, stream, argument, max_line):
    fd = descriptor(stream)
    if kind == "--write":
        import codecs
        write_all(fd, codecs.escape_decode(argument.encode())[0])
    elif kind == "--long-line":
        size = int(argument)
        pattern = b"L" + b"0123456789" * (size // 10 + 1)
        write_all(fd, pattern[:size] + b"\n")
    elif kind == "--burst":
        for seq, length in enumerate(burst_lengths(int(argument))):
            length = min(length, max_line)
            fill = bytes([ord("a") + seq % 26]) * length
            write_all(fd, f"B {NAME} {stream} {seq} {length} ".encode() + fill + b"\n")
        say("burst done")


def flood(stream):
    fd = descriptor(stream)
    seq = 0
    while True:
        line = f"F {NAME} {seq} ".encode()
        write_all(fd, line + b"f" * (1023 - len(line)) + b"\n")
        seq += 1


def start_daemon(behaviour):
    if os.fork() != 0:
        return  # the daemon's first parent is reaped by this process's own exit handling below
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if behaviour == "handle":
        def on_term(signum, frame):
            say("daemon got TERM")
            os._exit(0)
        signal.signal(signal.SIGTERM, on_term)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    say("daemon", f"daemon_pid={os.getpid()}")
    while True:
        signal.pause()


def client(port):
    successes = 0
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                connection.recv(16)
            successes += 1
            if successes % 10 == 0:
                say("client ok", str(successes))
        except OSError as error:
            say("client failed", str(error))
        time.sleep(0.05)


def serve(listener):
    while True:
        connection, _ = listener.accept()
        try:
            connection.sendall(b"ok\n")
        finally:
            connection.close()


def main():
    opts = options(sys.argv[2:])
    stop = getattr(signal, "SIG" + opts["stop_signal"].upper().removeprefix("SIG"))
    # Every signal is blocked, in every thread (they inherit the mask), and taken with sigwaitinfo by the main
    # thread: a handler would run only when the main thread next runs Python code, which a signal delivered
    # to another thread does not make it do.
    catchable = set(range(1, signal.NSIG)) - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}
    catchable &= set(signal.valid_signals())
    signal.pthread_sigmask(signal.SIG_BLOCK, catchable)
    say("started", f"ppid={os.getppid()}")
    for variable in opts["env"]:
        say("env", f"{variable}={os.environ.get(variable, '')}")
    for kind, stream, argument in opts["writes"]:
        do_write(kind, stream, argument, opts.get("max_line", 1 << 30))
    if "exit_now" in opts:
        os._exit(opts["exit_now"])
    if "flood" in opts:
        threading.Thread(target=flood, args=(opts["flood"],), daemon=True).start()
    if "daemon" in opts:
        start_daemon(opts["daemon"])
        os.wait()  # the daemon's first parent
    if "client" in opts:
        threading.Thread(target=client, args=(opts["client"],), daemon=True).start()
    if "exit_after" in opts:
        milliseconds, code = opts["exit_after"]
        def leave():
            time.sleep(milliseconds / 1000)
            say("exiting", f"status={code}")
            os._exit(code)
        threading.Thread(target=leave, daemon=True).start()
    time.sleep(opts["ready_after"] / 1000)
    if "listen" in opts:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", opts["listen"]))
        listener.listen(64)
        threading.Thread(target=serve, args=(listener,), daemon=True).start()
    if "ready_file" in opts:
        open(opts["ready_file"], "w").close()
    if "notify" in opts:
        address = os.environ["NOTIFY_SOCKET"]
        if address.startswith("@"):
            address = "\0" + address[1:]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.sendto(b"READY=1\n", address)
    say("ready")
    while True:
        signum = signal.sigwaitinfo(catchable).si_signo
        name = signal.Signals(signum).name.removeprefix("SIG")
        say("got", name)
        if signum == stop and "ignore_stop" not in opts:
            if opts["drain"]:
                say("draining", f"ms={opts['drain']}")
                time.sleep(opts["drain"] / 1000)
            say("exiting", f"status={opts['exit']}")
            sys.stdout.flush()
            os._exit(opts["exit"])


if __name__ == "__main__":
    main()

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
    parsed = {"ready_after": 0, "stop_signal": "TERM", "drain": 0, "exit": 0, "env": []}
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
        else:
            raise SystemExit(f"service.py: unknown option {option}")
        index += 1
    return parsed


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

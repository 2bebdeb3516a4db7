"""The example's WSGI app, served by gunicorn behind nginx. Every request calls the cache (memcached, the
helper grace starts before the app and stops after it), as an app calls its database proxy:

- `/`            one call: counts the hit, answers with the greeting the migration stored.
- `/slow?s=N`    N seconds of work (default 3), a cache call every 100 ms; answers 200 with how many calls
                 were answered, or 503 as soon as one fails (the cache is gone).

It logs the start and the end of each slow request to stderr, so that a stop can be watched from the log.
APP_DB is the migration's database; CACHE is the helper's HOST:PORT (default 127.0.0.1:11211).
"""
import os
import socket
import sqlite3
import sys
import time
from urllib.parse import parse_qs

SCHEMA_VERSION = 1
DATABASE = os.environ.get("APP_DB", "/var/lib/app/app.db")
CACHE_HOST, _, CACHE_PORT = os.environ.get("CACHE", "127.0.0.1:11211").rpartition(":")
STEP = 0.1


def log(message):
    print(f"app: {message} (pid {os.getpid()})", file=sys.stderr, flush=True)


def load_greeting():
    """The migration must have run: a worker that cannot read its schema does not boot."""
    with sqlite3.connect(f"file:{DATABASE}?mode=ro", uri=True) as database:
        version = database.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise RuntimeError(f"{DATABASE} is at schema version {version}, not {SCHEMA_VERSION}: migrate first")
        return database.execute("SELECT text FROM greeting").fetchone()[0]


GREETING = load_greeting()


class Cache:
    """One connection to memcached per request; `count` is one call (memcached's text protocol)."""

    def __init__(self):
        self.connection = socket.create_connection((CACHE_HOST, int(CACHE_PORT)), timeout=5)
        self.replies = self.connection.makefile("rb")

    def ask(self, command):
        self.connection.sendall(command)
        reply = self.replies.readline()
        if not reply:
            raise ConnectionError("the cache closed the connection")
        return reply.strip().decode()

    def count(self, key):
        reply = self.ask(f"incr {key} 1\r\n".encode())
        if reply == "NOT_FOUND":
            self.ask(f"add {key} 0 0 1\r\n0\r\n".encode())
            reply = self.ask(f"incr {key} 1\r\n".encode())
        return int(reply)

    def close(self):
        self.connection.close()


def respond(start_response, status, body):
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def slow(seconds):
    steps = round(seconds / STEP)
    log(f"slow request started ({seconds:g} s, {steps} cache calls)")
    answered = 0
    try:
        cache = Cache()
        try:
            for _ in range(steps):
                cache.count("slow-steps")
                answered += 1
                time.sleep(STEP)
        finally:
            cache.close()
    except (OSError, ValueError) as error:
        log(f"slow request failed: cache call {answered + 1} of {steps}: {error}")
        return "503 Service Unavailable", f"cache unavailable after {answered} of {steps} calls: {error}\n"
    log(f"slow request done: {answered} of {steps} cache calls answered")
    return "200 OK", f"slept {seconds:g} s: {answered} of {steps} cache calls answered\n"


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/slow":
        seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["3"])[0])
        return respond(start_response, *slow(seconds))
    if path == "/":
        try:
            cache = Cache()
            hits = cache.count("hits")
            cache.close()
        except (OSError, ValueError) as error:
            return respond(start_response, "503 Service Unavailable", f"cache unavailable: {error}\n")
        return respond(start_response, "200 OK", f"{GREETING}: hit {hits}, pid {os.getpid()}\n")
    return respond(start_response, "404 Not Found", "not found\n")

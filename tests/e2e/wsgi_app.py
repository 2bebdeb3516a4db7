"""WSGI app for gunicorn: `/` answers at once, `/slow?s=N` sleeps N seconds (default 2) then answers 200.

Run: gunicorn --chdir tests/e2e --bind 127.0.0.1:PORT wsgi_app:app
Standard library only, so the module also works under `python3 -m wsgiref.simple_server`-style tests.
"""

import os
import sys
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/slow":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        seconds = float(query.get("s", ["2"])[0])
        # A line a test can wait on: the request is in flight in this worker.
        print(f"app: slow request started ({seconds} s) pid {os.getpid()}", file=sys.stderr, flush=True)
        time.sleep(seconds)
        print(f"app: slow request done pid {os.getpid()}", file=sys.stderr, flush=True)
        body = f"slept {seconds} pid {os.getpid()}\n".encode()
    elif path == "/":
        body = f"ok pid {os.getpid()}\n".encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

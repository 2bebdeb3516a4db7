"""A WSGI app for the example image: `/` answers at once, `/slow?s=N` takes N seconds (default 5), so that a
request in flight during a shutdown shows gunicorn draining it under grace."""
import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["5"])[0])
        time.sleep(seconds)
        body = f"slept {seconds} s in pid {os.getpid()}\n"
    else:
        body = f"ok from pid {os.getpid()}\n"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]

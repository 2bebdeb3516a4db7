"""ASGI app for uvicorn: `/` answers at once, `/slow?s=N` sleeps N seconds (default 2) then answers 200.

Run: uvicorn --app-dir tests/e2e --host 127.0.0.1 --port PORT --workers 2 asgi_app:app
Standard library only (no framework), so only uvicorn itself has to be installed.
"""

import asyncio
import os
import sys
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        # Answer lifespan events so uvicorn prints "Application startup complete." / "Application shutdown complete."
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    status = 200
    if scope["path"] == "/slow":
        query = parse_qs(scope.get("query_string", b"").decode())
        seconds = float(query.get("s", ["2"])[0])
        # A line a test can wait on: the request is in flight in this worker.
        print(f"app: slow request started ({seconds} s) pid {os.getpid()}", file=sys.stderr, flush=True)
        await asyncio.sleep(seconds)
        print(f"app: slow request done pid {os.getpid()}", file=sys.stderr, flush=True)
        body = f"slept {seconds} pid {os.getpid()}\n".encode()
    elif scope["path"] == "/":
        body = f"ok pid {os.getpid()}\n".encode()
    else:
        status, body = 404, b"not found\n"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})

#!/bin/sh
# Broken setup 1: a shell that does not exec the server (like `sh -c 'server; true'`).
# dash forks the server, waits for it and stays in between: as a namespace's PID 1 it has no SIGTERM handler,
# so SIGTERM is discarded outright; as a child of an init it dies of SIGTERM at once and orphans the server.
# (Debian 12's dash 0.5.12 does not exec even a lone `sh -c 'server'`; `exec server` does.)
# Usage: broken_no_exec.sh SERVER [ARGS...]
"$@"
status=$?
echo "broken_no_exec.sh: server exited with $status" >&2
true

#!/bin/sh
# Installs what the end-to-end tests need; idempotent, so CI and a fresh machine can run it every time.
#   - nginx and tini (Debian packages; tini only for comparisons), util-linux's unshare and coreutils' tee
#   - memcached and curl (Debian packages) for the example image with several services that
#     tests/container.rs runs (docker/Dockerfile.services)
#   - a venv at target/e2e-venv with the pinned gunicorn and uvicorn (tests/e2e/requirements.txt)
# The stand-in (standin_server.py) needs only python3 from the system.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
venv="$repo/target/e2e-venv"

missing=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
command -v tini >/dev/null 2>&1 || missing="$missing tini"
command -v memcached >/dev/null 2>&1 || missing="$missing memcached"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
if [ -n "$missing" ]; then
    # apt-get update only when a package is missing, so the common case touches no registry
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

if [ ! -x "$venv/bin/gunicorn" ] || [ ! -x "$venv/bin/uvicorn" ] \
    || ! cmp -s "$repo/tests/e2e/requirements.txt" "$venv/requirements.installed"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$repo/tests/e2e/requirements.txt"
    cp "$repo/tests/e2e/requirements.txt" "$venv/requirements.installed"
fi
echo "e2e setup: nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $("$venv/bin/gunicorn" --version), uvicorn $("$venv/bin/uvicorn" --version | cut -d" " -f3), $(memcached --version)"

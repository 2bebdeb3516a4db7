#!/bin/sh
# The baseline of the services test in tests/container.rs: the example's services
# (docker/services/services.toml) started by a shell script as the container's PID 1, with no init, as
# many images do. It does its best: the migration first, each server stopped with its own graceful signal,
# and it waits for them all. What it cannot do is the order: on `podman stop` every service gets its
# signal at once, and the cache dies under the requests the app still serves. (Nor does it wait for
# readiness: nginx may start before gunicorn listens, and answer 502 meanwhile.)
# Usage: services-without-init.sh CMD... (the main service: gunicorn)
python3 /app/migrate.py || exit 1
memcached --user=memcache --listen=127.0.0.1 --port=11211 --memory-limit=64 &
cache=$!
"$@" &
app=$!
nginx -e stderr -g 'daemon off;' &
web=$!
echo "script: started cache $cache, app $app, nginx $web" >&2
trap 'echo "script: stopping every service" >&2; kill -QUIT "$web"; kill -TERM "$app" "$cache"' TERM INT
wait "$app" # returns early, above 128, when the trap has run
wait "$app"
status=$?
wait # the others
echo "script: exiting with the app's status $status" >&2
exit "$status"

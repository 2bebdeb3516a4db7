#!/bin/sh
# A server that never expected to be PID 1's child: it ignores SIGTERM, starts a background controller with
# setsid (which escapes its process group), and then asks its parent to stop it, as the kubelet would.
# Run it under grace to watch a bounded, logged shutdown:
#   ./target/release/grace --grace-period 4s -- examples/stubborn-server.sh
setsid sh -c 'trap "echo \"controller $$: got SIGTERM, exiting\"; exit 0" TERM; echo "controller $$: running"; while :; do sleep 0.1; done' &
trap '' TERM
echo "server $$: running, ignoring SIGTERM"
sleep 0.2
echo "server $$: sending SIGTERM to my parent (pid $PPID), as the kubelet would"
kill -TERM "$PPID"
while :; do sleep 1; done

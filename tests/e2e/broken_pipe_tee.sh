#!/bin/sh
# Broken setup 2: the server piped into tee (stdout only; stderr goes straight out).
# The shell waits for the pipeline and does not forward signals; tee sits in the same process group as the
# server, so a group-wide or tree-wide SIGTERM can kill tee before the server has written its last lines,
# which are then lost (and the server gets EPIPE on stdout).
# Usage: TEE_FILE=/path/log broken_pipe_tee.sh SERVER [ARGS...]   (TEE_FILE defaults to /dev/null)
"$@" | tee -a "${TEE_FILE:-/dev/null}"

#!/usr/bin/env bash
# Run a command, and run it again whenever it exits: under `make run` one crashed process must
# not end the stack (honcho stops every process when one of them exits). SIGTERM or SIGINT (what
# honcho sends on Ctrl-C) stops the command and this loop for good.
set -u
child=0
stop() {
  if [ "$child" -gt 0 ]; then
    kill -TERM "$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  exit 0
}
trap stop TERM INT
while true; do
  "$@" &
  child=$!
  wait "$child"
  code=$?
  echo "[forever] '$*' exited with code $code; starting it again in 1 s" >&2
  sleep 1 &
  wait $!
done

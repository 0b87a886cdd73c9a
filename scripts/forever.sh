#!/usr/bin/env bash
# Run a command, and run it again whenever it exits: under `make run` one crashed process must
# not end the stack (honcho stops every process when one of them exits). SIGTERM or SIGINT (what
# honcho sends on Ctrl-C) stops the command and this loop for good. Each start is told how often
# it started in the last 5 minutes (NOTIFY_RECENT_STARTS): its /healthz answers 503 while that
# is a loop (app/core/health.py).
set -u
child=0
starts=()
stop() {
  if [ "$child" -gt 0 ]; then
    kill -TERM "$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  exit 0
}
trap stop TERM INT
while true; do
  now=$(date +%s)
  recent=("$now")
  for at in "${starts[@]}"; do
    [ $((now - at)) -lt 300 ] && recent+=("$at")
  done
  starts=("${recent[@]}")
  NOTIFY_RECENT_STARTS=${#starts[@]} "$@" &
  child=$!
  wait "$child"
  code=$?
  echo "[forever] '$*' exited with code $code; starting it again in 1 s" >&2
  sleep 1 &
  wait $!
done

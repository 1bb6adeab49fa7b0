#!/usr/bin/env bash
# The Prefect UI on this machine with trbench deployed (embedded llama.cpp engine: no GPU needed).
#   scripts/ui.sh start   Prefect server (background), the trbench pool, `prefect deploy --all`,
#                         a process worker (background); prints the UI URL     (make ui)
#   scripts/ui.sh stop    stops the worker and the server                       (make ui-stop)
# State (database, pid files, logs) lives in .prefect/ (git-ignored). Port: TRBENCH_UI_PORT (4200).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${TRBENCH_UI_PORT:-4200}"
export PREFECT_HOME="$PWD/.prefect"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_SERVER_API_HOST=127.0.0.1 PREFECT_SERVER_API_PORT="$PORT"
# nothing leaves the machine: the server's telemetry, and the SDK's (the CLI, the worker, its flow runs)
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 PREFECT_SERVER_LOGGING_LEVEL=CRITICAL
PREFECT="$PWD/.venv/bin/prefect"
SERVER_PID="$PREFECT_HOME/ui-server.pid"
WORKER_PID="$PREFECT_HOME/ui-worker.pid"
mkdir -p "$PREFECT_HOME"

healthy() { "$PWD/.venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
  "$PREFECT_API_URL/health" 2>/dev/null; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  if healthy; then
    echo "a Prefect server already answers on port $PORT: using it"
  else
    # not `prefect server start --background`: in 3.8.8 that server writes to a pipe nobody reads
    # once the command has returned, and it dies on its first logged error (seen here)
    nohup "$PREFECT" server start >"$PREFECT_HOME/server.log" 2>&1 &
    echo $! >"$SERVER_PID"
    printf "starting the Prefect server on port %s" "$PORT"
    for _ in $(seq 180); do healthy && break; printf "."; sleep 1; done
    echo
    healthy || { tail -20 "$PREFECT_HOME/server.log"; echo "the server did not come up in 180 s"; exit 1; }
  fi
  "$PREFECT" work-pool inspect trbench >/dev/null 2>&1 || "$PREFECT" work-pool create trbench --type process >/dev/null
  "$PREFECT" --no-prompt deploy --all >"$PREFECT_HOME/deploy.log" 2>&1 \
    || { cat "$PREFECT_HOME/deploy.log"; exit 1; }
  echo "deployed: $(grep -o "Deployment '[^']*'" "$PREFECT_HOME/deploy.log" | tr '\n' ' ')"
  if alive "$WORKER_PID"; then
    echo "worker already running (pid $(cat "$WORKER_PID"))"
  else
    nohup "$PREFECT" worker start --pool trbench --name "$(hostname)-ui" >"$PREFECT_HOME/worker.log" 2>&1 &
    echo $! >"$WORKER_PID"
    echo "worker started (pid $!, log $PREFECT_HOME/worker.log)"
  fi
  cat <<MSG

Prefect UI: http://127.0.0.1:$PORT/deployments
  run the quickstart: Deployments > quickstart > Run > Custom run (e.g. models ["smollm2:135m"], runs 1)
  or from a shell:    PREFECT_API_URL=$PREFECT_API_URL .venv/bin/prefect deployment run tr_matrix/quickstart -p runs=1
  stop:               make ui-stop
MSG
}

# the worker talks to the server on its way out: it must be gone before the server is stopped
stop_pid() {  # INT (Ctrl-C), then TERM, then KILL, 8 s each
  local pid; pid="$(cat "$1")"
  for sig in INT TERM KILL; do
    kill -s "$sig" "$pid" 2>/dev/null || return 0
    for _ in $(seq 8); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
  done
}

stop() {
  alive "$WORKER_PID" && stop_pid "$WORKER_PID" && echo "worker stopped"
  alive "$SERVER_PID" && stop_pid "$SERVER_PID" && echo "server stopped"
  rm -f "$WORKER_PID" "$SERVER_PID"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 [start|stop]"; exit 2 ;;
esac

#!/usr/bin/env bash
# Stop the daemons tests/slurm/start_cluster.sh DIR started, by the PIDs in DIR (never by name).
set -uo pipefail

DIR=${1:?usage: stop_cluster.sh DIR}
status=0
# jobs still queued or running (a run that timed out) end first, so no job step outlives slurmd
if [ -s "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
  export SLURM_CONF="$DIR/slurm.conf"
  timeout 10 scancel --user "$(id -un)" 2>/dev/null || true
  for _ in $(seq 20); do
    [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
    sleep 0.5
  done
fi
# stop_daemons NAME...: SIGTERM to each by its PID file (if that PID still runs NAME), wait up
# to 10 s, then SIGKILL
stop_daemons() {
  local name pid pids=()
  for name in "$@"; do
    [ -s "$DIR/$name.pid" ] || continue
    pid=$(cat "$DIR/$name.pid")
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || continue
    kill "$pid" 2>/dev/null && pids+=("$name:$pid")
  done
  for _ in $(seq 100); do
    local alive=0
    for entry in "${pids[@]}"; do kill -0 "${entry#*:}" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return
    sleep 0.1
  done
  for entry in "${pids[@]}"; do
    if kill -0 "${entry#*:}" 2>/dev/null; then
      kill -9 "${entry#*:}" 2>/dev/null
      echo "stop_cluster.sh: ${entry%%:*} (${entry#*:}) did not stop in 10 s; killed" >&2
      status=1
    fi
  done
}
stop_daemons slurmd slurmctld
stop_daemons munged  # last: the SLURM daemons authenticate through it while they shut down
# the munge directory (see start_cluster.sh)
munge_dir=$(readlink "$DIR/munge" 2>/dev/null || true)
case "$munge_dir" in /tmp/scpert-munge.*) rm -rf "$munge_dir" ;; esac
# the /etc/slurm/slurm.conf symlink start_cluster.sh made, only if it still points into DIR
link=/etc/slurm/slurm.conf
if [ -L "$link" ] && [ "$(readlink "$link")" = "$(cd "$DIR" && pwd)/slurm.conf" ]; then
  rm -f "$link"
fi
exit $status

#!/usr/bin/env bash
# Start a one-node SLURM cluster on localhost with a fake GPU; its files go under DIR.
#
#   tests/slurm/start_cluster.sh DIR [PARTITION] [N_GPUS]
#
# Needs root and the Debian packages slurmctld, slurmd, slurm-client and munge (installs nothing).
# Writes DIR/slurm.conf, DIR/gres.conf, state, logs, the PID files munged.pid, slurmctld.pid and
# slurmd.pid (tests/slurm/stop_cluster.sh DIR stops them) and DIR/munge, a link to the private
# munge key and socket in /tmp/scpert-munge.*.
# Clients use the cluster through `export SLURM_CONF=DIR/slurm.conf`. Outside DIR it only adds the
# symlink /etc/slurm/slurm.conf -> DIR/slurm.conf (removed by stop_cluster.sh): Snakemake's job
# step strips SLURM_* variables, SLURM_CONF included, before its inner srun, which then reads the
# default path. It refuses to start where /etc/slurm/slurm.conf belongs to another cluster.
#
# The GPUs are files symlinked to /dev/null: slurmd accepts them as gres devices (a gres line with
# only Count= is dropped as "file-less"), so jobs asking for --gpus get an allocation and
# CUDA_VISIBLE_DEVICES although no CUDA device exists. There is no accounting database: sacct does
# not work here, query jobs with squeue / scontrol (MinJobAge keeps finished jobs for 10 minutes).
set -euo pipefail

DIR=${1:?usage: start_cluster.sh DIR [PARTITION] [N_GPUS]}
PARTITION=${2:-debug}
N_GPUS=${3:-2}

for tool in munged mungekey slurmctld slurmd sinfo scontrol; do
  command -v "$tool" >/dev/null || {
    echo "start_cluster.sh: '$tool' not found; install the Debian packages slurmctld slurmd slurm-client munge" >&2
    exit 2
  }
done
[ "$(id -u)" -eq 0 ] || { echo "start_cluster.sh: must run as root" >&2; exit 2; }

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
SYSTEM_CONF=/etc/slurm/slurm.conf
if [ -e "$SYSTEM_CONF" ] && ! [ -L "$SYSTEM_CONF" ]; then
  echo "start_cluster.sh: $SYSTEM_CONF exists (this machine has its own SLURM); not replacing it" >&2
  exit 2
fi
if [ -L "$SYSTEM_CONF" ]; then  # left by an earlier run: in use while its slurmctld lives
  other_pid=$(cat "$(dirname "$(readlink "$SYSTEM_CONF")")/slurmctld.pid" 2>/dev/null || true)
  if [ -n "$other_pid" ] && kill -0 "$other_pid" 2>/dev/null; then
    echo "start_cluster.sh: $SYSTEM_CONF -> $(readlink "$SYSTEM_CONF") is in use" >&2
    exit 2
  fi
fi
HOST=$(hostname -s)

# a free TCP port at or above $1 (nothing answers on it)
free_port() {
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}
CTLD_PORT=$(free_port 6817)
SLURMD_PORT=$(free_port $((CTLD_PORT + 1)))

# -- munge: a private key and socket. munged wants every parent of its socket world-searchable,
#    which DIR's parents (e.g. pytest's 0700 temp root) need not be, so they live in a fresh
#    directory under /tmp that DIR/munge links to (stop_cluster.sh removes it).
MUNGE_DIR=$(mktemp -d /tmp/scpert-munge.XXXXXX)
chmod 0755 "$MUNGE_DIR"
ln -sfn "$MUNGE_DIR" "$DIR/munge"
mungekey --create --keyfile "$MUNGE_DIR/munge.key" --force
chmod 0400 "$MUNGE_DIR/munge.key"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket"
munged --key-file "$MUNGE_DIR/munge.key" --socket "$MUNGE_SOCKET" --pid-file "$DIR/munged.pid" \
  --log-file "$MUNGE_DIR/munged.log" --seed-file "$MUNGE_DIR/munged.seed" --num-threads 2
munge --socket "$MUNGE_SOCKET" -n | unmunge --socket "$MUNGE_SOCKET" >/dev/null

# -- fake GPU device files
mkdir -p "$DIR/dev" "$DIR/state" "$DIR/spool" "$DIR/log"
for ((i = 0; i < N_GPUS; i++)); do ln -sf /dev/null "$DIR/dev/nvidia$i"; done

# node line: at least 4 CPUs (SlurmdParameters=config_overrides lets a 2-core machine run a
# 2-CPU and a 1-CPU job side by side) and memory at 95% of what slurmd sees (slurmd drains a node
# that reports less than RealMemory)
read -r CPUS MEM < <(slurmd -C | awk '/^NodeName/ {
  for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  print v["CPUs"], v["RealMemory"] }')
CPUS=$((CPUS < 4 ? 4 : CPUS))
MEM=$((MEM * 95 / 100))

cat >"$DIR/gres.conf" <<EOF
NodeName=$HOST Name=gpu File=$DIR/dev/nvidia[0-$((N_GPUS - 1))]
EOF

cat >"$DIR/slurm.conf" <<EOF
ClusterName=scpert-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=600
KillWait=5
MailProg=/bin/true
SlurmdParameters=config_overrides
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM Gres=gpu:$N_GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

mkdir -p "$(dirname "$SYSTEM_CONF")"
ln -sfn "$DIR/slurm.conf" "$SYSTEM_CONF"
export SLURM_CONF="$DIR/slurm.conf"
slurmctld -i
slurmd -N "$HOST"

# wait for the node to be idle; sinfo retries for minutes when no controller answers, so bound it
state=""
for _ in $(seq 60); do
  pid=$(cat "$DIR/slurmctld.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then break; fi
  state=$(timeout 5 sinfo -h -N -o %T 2>/dev/null || true)
  [ "$state" = idle ] && { echo "SLURM_CONF=$SLURM_CONF"; exit 0; }
  sleep 0.5
done
echo "start_cluster.sh: node not idle (state: '${state:-none}'); last log lines:" >&2
tail -n 5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
exit 1

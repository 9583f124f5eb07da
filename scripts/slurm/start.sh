#!/usr/bin/env bash
# Starts a one-node Slurm on this machine from Debian's packages (slurmctld, slurmd, munge),
# as root, with everything (munge key and socket, slurm.conf, state, spool, logs) under DIR.
# Prints the line to eval so that sbatch, squeue and scancel talk to it:
#
#   eval "$(bash scripts/slurm/start.sh /tmp/slurm)"
#   sbatch --wait --wrap 'hostname'
#   bash scripts/slurm/stop.sh /tmp/slurm
#
# Ports: SLURM_PORT (slurmctld; slurmd takes the next one), default 6817.
set -euo pipefail
dir=${1:?usage: start.sh DIR}
if [ "$(id -u)" -ne 0 ]; then
  echo "start.sh: a one-node Slurm here runs as root (SlurmUser=root)" >&2
  exit 1
fi
for b in slurmctld slurmd munged sbatch sinfo; do
  command -v "$b" >/dev/null 2>&1 || { echo "start.sh: $b is missing (bash scripts/setup.sh installs it)" >&2; exit 1; }
done
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
port=${SLURM_PORT:-6817}

# munge: a fresh key, owned by munge and readable by it alone; munged runs as munge.
chown munge: "$dir/munge"
chmod 700 "$dir/munge"
head -c 1024 /dev/urandom > "$dir/munge/munge.key"
chown munge: "$dir/munge/munge.key"
chmod 400 "$dir/munge/munge.key"
# The directory holding the socket must let root (slurm) in.
chmod 711 "$dir/munge"
chmod 755 "$dir"
runuser -u munge -- munged \
  --key-file="$dir/munge/munge.key" \
  --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munge/munged.pid" \
  --log-file="$dir/munge/munged.log" \
  --seed-file="$dir/munge/munged.seed"

host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ { print $2 }' /proc/meminfo) / 1024 - 256 ))
cat > "$dir/slurm.conf" <<CONF
ClusterName=blocksum
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"

# Ready when the node is idle (or mixed) in the partition: at most 60 s.
for _ in $(seq 1 120); do
  if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix)'; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "start.sh: the node did not come up in 60 s; logs in $dir/log" >&2
tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
exit 1

#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for trying hydra/launcher=slurm and for the
# tests of tests/test_slurm.py (docs/launchers.md). As root, on Debian or Ubuntu:
#   scripts/slurm_cluster.sh up     # install slurm-wlm and munge, start munged, slurmctld, slurmd
#   scripts/slurm_cluster.sh down   # stop the daemons this script started
# The node has the CPUs and memory `slurmd -C` finds. Jobs run in partition `debug`; a job
# in partition `urgent` preempts them (requeued after a 30 s grace time), as a busy
# cluster's higher-priority jobs do. The cluster keeps no accounting (no slurmdbd), like
# many small clusters: sacct has nothing.
set -euo pipefail

conf_dir=/etc/slurm
state_dir=/var/lib/slurm-aeff
run_dir=/run/slurm-aeff

up() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "slurm_cluster.sh: run it as root (it installs packages and starts daemons)" >&2
    exit 1
  fi
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
  mkdir -p /etc/munge /var/log/munge /var/lib/munge /run/munge "$conf_dir" "$state_dir" "$run_dir"
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /var/log/munge /var/lib/munge /run/munge
  chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
  pgrep -x munged >/dev/null || runuser -u munge -- munged
  host="$(hostname -s)"
  node="$(slurmd -C | head -1)"  # NodeName=<host> CPUs=... RealMemory=...
  cat >"$conf_dir/slurm.conf" <<CONF
ClusterName=aeff
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation=$state_dir/ctld
SlurmdSpoolDir=$state_dir/d
SlurmctldPidFile=$run_dir/slurmctld.pid
SlurmdPidFile=$run_dir/slurmd.pid
SlurmctldLogFile=$state_dir/slurmctld.log
SlurmdLogFile=$state_dir/slurmd.log
JobRequeue=1
KillWait=30
MinJobAge=300
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=30
PartitionName=urgent Nodes=$host MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
CONF
  mkdir -p "$state_dir/ctld" "$state_dir/d"
  down  # daemons of an earlier slurm.conf: started afresh with this one
  slurmctld
  slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "SLURM is up: partition debug, node $node"
      return 0
    fi
    sleep 1
  done
  echo "slurm_cluster.sh: the node did not come up; see $state_dir/slurmctld.log and slurmd.log" >&2
  exit 1
}

down() {
  local pid_file pid
  for pid_file in "$run_dir/slurmd.pid" "$run_dir/slurmctld.pid"; do
    if [ -s "$pid_file" ]; then
      pid="$(cat "$pid_file")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      rm -f "$pid_file"
    fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac

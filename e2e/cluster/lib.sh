# shellcheck shell=bash
# shellcheck source-path=SCRIPTDIR
# shellcheck disable=SC2034 # variables here are used by the scripts that source this file
# Shared by up.sh and down.sh: where things live, logging, ports, processes,
# and the teardown (which up.sh also uses to clean up after a crash).
#
# Layout of the state directory ($CLUSTER_DIR, default <repo>/_output/cluster):
#   env                   sourceable exports for tests and scripts (the public face)
#   state.env             ports and paths chosen at start (for up.sh's health check)
#   pids/<component>.pid  one per daemon we started
#   logs/<component>.log  one per daemon
#   pki/                  CA, serving and client certificates, kubeconfigs
#   etcd/                 etcd data
#   registry/{plain,auth} the two local registries (config, data, htpasswd)
#   nodes/<node>/         everything of one node: containerd (config, root, state,
#                         socket, certs.d), kubelet (config, root dir, certs), CNI
#                         config and IPAM state, pod logs, and root/ (the node's "/"
#                         for host paths Coral writes to: annotation coral.dev/host-root)

CLUSTER_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CLUSTER_LIB_DIR/../.." && pwd)
# shellcheck source=versions.env
source "$CLUSTER_LIB_DIR/versions.env"

CORAL_CACHE=${CORAL_CACHE:-/var/cache/coral}
CLUSTER_DIR=${CORAL_CLUSTER_DIR:-$REPO_ROOT/_output/cluster}
# Tools built from this repository (imagetool, pause); kept across cluster-down.
TOOLS_DIR=$REPO_ROOT/_output/bin

NODES=(coral-node-1 coral-node-2 coral-node-3)

# A short id derived from the state directory names what lives outside it
# (cgroups, bridges), so two checkouts on one machine do not tear down each
# other's nodes.
CLUSTER_ID=$(printf '%s' "$CLUSTER_DIR" | sha256sum | cut -c1-6)
CGROUP_PARENT=coral-$CLUSTER_ID

K8S_BIN=$CORAL_CACHE/k8s-$K8S_VERSION
CONTAINERD2_DIR=$CORAL_CACHE/containerd-$CONTAINERD_VERSION
CRICTL=$CORAL_CACHE/crictl-$CRICTL_VERSION/crictl

log() { printf '%s [cluster] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { log "WARNING: $*"; }
die() {
  log "ERROR: $*"
  exit 1
}

require_root() {
  [ "$(id -u)" -eq 0 ] || die "the local cluster needs root (kubelets, containerd, mounts, cgroups); run as root"
}

# lock_cluster serializes up.sh, down.sh and node.sh on one state directory
# (e.g. e2e test packages that each make sure the cluster is up). The lock is
# released when the script exits; start_daemon keeps it from the daemons.
LOCK_FD=""
lock_cluster() {
  local lock
  lock="$(dirname "$CLUSTER_DIR")/.$(basename "$CLUSTER_DIR").lock"
  mkdir -p "$(dirname "$lock")"
  exec {LOCK_FD}>"$lock"
  if ! flock -n "$LOCK_FD"; then
    log "waiting for another cluster-up/down on $CLUSTER_DIR to finish"
    flock -w 900 "$LOCK_FD" || die "timed out waiting for the lock $lock"
  fi
}

# ---- per-node facts ---------------------------------------------------------

node_index() { echo "${1##*-}"; }                     # coral-node-2 -> 2
node_dir() { echo "$CLUSTER_DIR/nodes/$1"; }
node_socket() { echo "$CLUSTER_DIR/nodes/$1/containerd.sock"; }
node_host_root() { echo "$CLUSTER_DIR/nodes/$1/root"; }
node_cgroup() { echo "/$CGROUP_PARENT/$1"; }           # kubelet cgroupRoot
node_bridge() { echo "crl${CLUSTER_ID}n$(node_index "$1")"; } # <= 15 chars
# Pod subnet per node, 10.X.<index>.0/24 with X from the cluster id, so
# bridges left by another checkout's cluster do not overlap.
node_subnet() { echo "10.$((200 + 16#${CLUSTER_ID:0:2} % 50)).$(node_index "$1").0/24"; }
# CORAL_CRI_CORAL_NODE_1 for coral-node-1.
node_env_name() {
  local n=${1^^}
  echo "CORAL_CRI_${n//-/_}"
}
# Nodes 1 and 2 run the pinned containerd 2.x; node 3 runs Debian's 1.6, an older
# runtime (it cannot pin images: that needs containerd 1.6.26+, Debian ships 1.6.20).
node_runtime() {
  case "$1" in
    coral-node-3) echo containerd1 ;;
    *) echo containerd2 ;;
  esac
}
node_labels() {
  case "$1" in
    coral-node-3) echo "pool=batch" ;;
    *) echo "pool=web" ;;
  esac
}
# Taints as "key=value:Effect", space separated.
node_taints() {
  case "$1" in
    coral-node-3) echo "dedicated=batch:NoSchedule" ;;
    *) echo "" ;;
  esac
}

# ---- ports ------------------------------------------------------------------

declare -A CHOSEN_PORTS=()

# listening_ports prints every TCP port something listens on.
listening_ports() {
  ss -Hltn 2>/dev/null | awk '{n=split($4, a, ":"); print a[n]}' | sort -u
}

# pick_port VAR sets VAR to a port that nothing listens on and that we have not
# handed out yet (it must not run in a subshell, which would forget the ports
# handed out). Ports are drawn below the kernel's ephemeral range, so outgoing
# connections cannot take one meanwhile.
pick_port() {
  local eph lo hi taken p
  read -r eph _ </proc/sys/net/ipv4/ip_local_port_range
  hi=$((eph - 1))
  lo=$((hi > 20000 ? 20000 : 1024))
  taken=" $(listening_ports | tr '\n' ' ') "
  for _ in $(seq 1 500); do
    p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
    [[ $taken == *" $p "* ]] && continue
    [ -n "${CHOSEN_PORTS[$p]:-}" ] && continue
    CHOSEN_PORTS[$p]=1
    printf -v "$1" '%s' "$p"
    return 0
  done
  die "found no free TCP port in $lo-$hi"
}

# ensure_port_free refuses to go on when something already listens on port.
ensure_port_free() {
  local port=$1 what=$2
  local ports
  ports=$(listening_ports)
  if grep -qx "$port" <<<"$ports"; then
    die "port $port chosen for $what is taken ($(ss -Hltnp "sport = :$port" | head -1)); run make cluster-up again to pick another"
  fi
}

# ---- processes --------------------------------------------------------------

# start_daemon NAME CMD... runs CMD in its own session (so ^C on cluster-up or
# the end of a CI step does not take it down), logs to logs/NAME.log and
# records its PID in pids/NAME.pid.
start_daemon() {
  local name=$1
  shift
  mkdir -p "$CLUSTER_DIR/logs" "$CLUSTER_DIR/pids"
  # Without job control a background child is not a process-group leader, so
  # setsid execs in place and $! is the daemon's own PID.
  if [ -n "$LOCK_FD" ]; then
    setsid "$@" >>"$CLUSTER_DIR/logs/$name.log" 2>&1 </dev/null {LOCK_FD}>&- &
  else
    setsid "$@" >>"$CLUSTER_DIR/logs/$name.log" 2>&1 </dev/null &
  fi
  local pid=$!
  echo "$pid" >"$CLUSTER_DIR/pids/$name.pid"
  # Until it has exec'd, the child is a copy of this shell and does not look
  # like ours (see ours()); wait for the exec (or its death).
  local _
  for _ in $(seq 1 100); do
    ours "$pid" && return 0
    [ -e "/proc/$pid" ] || return 0
    sleep 0.02
  done
}

# ours PID: is PID alive and one of our processes (its command line names the
# state directory)? Guards against PID reuse.
ours() {
  [ -r "/proc/$1/cmdline" ] && grep -qsF "$CLUSTER_DIR" "/proc/$1/cmdline"
}

daemon_pid() { cat "$CLUSTER_DIR/pids/$1.pid" 2>/dev/null; }

daemon_alive() {
  local pid
  pid=$(daemon_pid "$1") || return 1
  [ -n "$pid" ] && ours "$pid"
}

# fail_with_log NAME MESSAGE: die, showing the end of the daemon's log.
fail_with_log() {
  local name=$1 msg=$2
  log "last lines of $CLUSTER_DIR/logs/$name.log:"
  tail -n 25 "$CLUSTER_DIR/logs/$name.log" >&2 2>/dev/null || true
  die "$msg"
}

# wait_for NAME TIMEOUT_S DESCRIPTION CMD...: poll CMD every 0.2 s; fail early
# when daemon NAME has died ("" to skip that check).
wait_for() {
  local name=$1 timeout=$2 what=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$name" ] && ! daemon_alive "$name"; then
      fail_with_log "$name" "$name exited while waiting for $what"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      [ -n "$name" ] && fail_with_log "$name" "timed out after ${timeout}s waiting for $what"
      die "timed out after ${timeout}s waiting for $what"
    fi
    sleep 0.2
  done
}

# ---- node runtimes ----------------------------------------------------------

# containerd_binary NODE prints the containerd that NODE runs.
containerd_binary() {
  case "$(node_runtime "$1")" in
    containerd2) echo "$CONTAINERD2_DIR/containerd" ;;
    containerd1) command -v containerd || echo /usr/bin/containerd ;;
  esac
}

crictl_on() {
  local node=$1
  shift
  "$CRICTL" --runtime-endpoint "unix://$(node_socket "$node")" --timeout 5s "$@"
}

# launch_containerd NODE starts NODE's containerd from the config up.sh wrote.
launch_containerd() {
  local node=$1 bin dir
  bin=$(containerd_binary "$node")
  dir=$(node_dir "$node")
  [ -f "$dir/containerd/config.toml" ] || die "no containerd config for $node; run make cluster-up"
  rm -f "$(node_socket "$node")" "$(node_socket "$node").ttrpc"
  # The directory of the binary goes first on PATH so that containerd 2.x finds
  # its own runc shim before Debian's 1.6 one (up.sh also sets runtime_path).
  PATH="$(dirname "$bin"):$PATH" start_daemon "containerd-$node" "$bin" --config "$dir/containerd/config.toml"
}

wait_containerd() {
  wait_for "containerd-$1" 30 "containerd of $1 to serve CRI" crictl_on "$1" version
}

# start_containerd NODE starts NODE's containerd and waits until its CRI answers.
start_containerd() {
  launch_containerd "$1"
  wait_containerd "$1"
}

# ---- teardown ---------------------------------------------------------------

# cgroup_mounts prints the mount point of every cgroup hierarchy (v1 and v2).
cgroup_mounts() {
  awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts
}

# Process names (comm, cut to 15 characters) of what the cluster runs.
CLUSTER_COMMS=" etcd kube-apiserver kube-controller kube-scheduler kubelet containerd containerd-shim runc docker-registry "

# cluster_pids prints every process that belongs to the cluster: the recorded
# daemons; any cluster program (CLUSTER_COMMS) whose command line names the
# state directory, e.g. containerd shims left behind by a crash; and every
# process in the nodes' cgroups (the containers). Matching by command line is
# restricted to those programs, so a shell or test runner that merely mentions
# the directory is never killed.
cluster_pids() {
  local f pid h comm
  for f in "$CLUSTER_DIR"/pids/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    [ -n "$pid" ] && ours "$pid" && echo "$pid"
  done
  while IFS= read -r f; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
    [[ $CLUSTER_COMMS == *" $comm "* ]] && echo "$pid"
  done < <(grep -lsF "$CLUSTER_DIR" /proc/[0-9]*/cmdline)
  while read -r h; do
    [ -d "$h/$CGROUP_PARENT" ] || continue
    find "$h/$CGROUP_PARENT" -name cgroup.procs -exec cat {} + 2>/dev/null || true
  done < <(cgroup_mounts)
  return 0
}

# stop_processes: SIGTERM to the daemons (kubelets first, so they stop tending
# pods), up to 1 s for them to exit, then SIGKILL to whatever of the cluster
# still runs (shims and containers included) until nothing does. Nothing here
# needs a graceful stop: all state is thrown away, and kube-apiserver alone
# would take over 10 s to drain.
stop_processes() {
  local f pid pids left
  for f in "$CLUSTER_DIR"/pids/kubelet-*.pid "$CLUSTER_DIR"/pids/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    [ -n "$pid" ] && ours "$pid" && kill -TERM "$pid" 2>/dev/null
  done
  for _ in $(seq 1 5); do
    left=0
    for f in "$CLUSTER_DIR"/pids/*.pid; do
      [ -e "$f" ] || continue
      pid=$(cat "$f")
      [ -n "$pid" ] && ours "$pid" && left=1 && break
    done
    [ "$left" -eq 0 ] && break
    sleep 0.2
  done
  remember_shim_sockets
  for _ in $(seq 1 50); do
    pids=$(cluster_pids | sort -u)
    [ -z "$pids" ] && return 0
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.2
  done
  warn "processes still alive after SIGKILL: $(cluster_pids | sort -u | tr '\n' ' ')"
}

# remember_shim_sockets notes the sockets our containerd shims listen on: they
# live in the host-wide /run/containerd/s (the path is a hash, so a killed
# shim's socket cannot be told apart afterwards).
SHIM_SOCKETS=()
remember_shim_sockets() {
  local pid path
  for pid in $(cluster_pids | sort -u); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = containerd-shim ] || continue
    while read -r path; do
      SHIM_SOCKETS+=("$path")
    done < <(ss -Hxlp 2>/dev/null | awk -v p="pid=$pid," 'index($0, p) && $5 ~ "^/run/containerd/s/" {print $5}')
  done
}

# mounts_under DIR prints every mount point at or below DIR, deepest first.
mounts_under() {
  local dir=$1
  awk -v d="$dir" '{
      # mountinfo escapes spaces etc. as octal (\040).
      mp = $5; gsub(/\\040/, " ", mp)
      if (mp == d || index(mp, d "/") == 1) print length(mp) " " mp
    }' /proc/self/mountinfo | sort -rn | cut -d' ' -f2-
}

# unmount_all DIR: unmount everything below DIR, children before parents; a
# mount that stays busy is detached lazily.
unmount_all() {
  local dir=$1 mp i
  for i in 1 2 3 4 5; do
    local any=0
    while IFS= read -r mp; do
      [ -n "$mp" ] || continue
      any=1
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    done < <(mounts_under "$dir")
    [ "$any" -eq 0 ] && return 0
  done
  [ -z "$(mounts_under "$dir")" ] || die "could not unmount: $(mounts_under "$dir" | tr '\n' ' ')"
}

# remove_cgroups deletes our cgroup subtree in every hierarchy, leaves first.
remove_cgroups() {
  local h
  while read -r h; do
    [ -d "$h/$CGROUP_PARENT" ] || continue
    for _ in $(seq 1 25); do
      find "$h/$CGROUP_PARENT" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [ -d "$h/$CGROUP_PARENT" ] || break
      sleep 0.2
    done
    [ -d "$h/$CGROUP_PARENT" ] && warn "could not remove cgroup $h/$CGROUP_PARENT"
  done < <(cgroup_mounts)
  return 0
}

# remove_host_traces removes what the nodes leave outside the state directory:
# CNI bridges and result cache, container log links, shim sockets, and the
# device-plugin socket every kubelet creates in /var/lib/kubelet whatever its
# root dir.
remove_host_traces() {
  local node br l f id
  for node in "${NODES[@]}"; do
    br=$(node_bridge "$node")
    if ip link show "$br" >/dev/null 2>&1; then
      ip link delete "$br" 2>/dev/null || warn "could not delete bridge $br"
    fi
  done
  # kubelet links every container log into /var/log/containers.
  if [ -d /var/log/containers ]; then
    for l in /var/log/containers/*; do
      [ -L "$l" ] || continue
      [[ $(readlink "$l") == "$CLUSTER_DIR"/* ]] && rm -f "$l"
    done
  fi
  # libcni caches results as <network>-<container>-<ifname>; our networks are
  # named after the nodes.
  for node in "${NODES[@]}"; do
    for f in /var/lib/cni/results/"$node"-*; do
      [ -e "$f" ] || continue
      id=${f#/var/lib/cni/results/"$node"-}
      id=${id%-*}
      rm -f "$f" "/var/lib/cni/results/cni-loopback-$id-lo"
    done
  done
  rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  [ ${#SHIM_SOCKETS[@]} -gt 0 ] && rm -f "${SHIM_SOCKETS[@]}"
  rmdir /run/containerd/s /run/containerd /var/log/containers 2>/dev/null || true
  if ! pgrep -x kubelet >/dev/null; then
    rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint
    rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null || true
  fi
  return 0
}

# cluster_down removes every trace of the cluster; safe when nothing runs and
# after a crash.
cluster_down() {
  if [ ! -d "$CLUSTER_DIR" ] && [ -z "$(cluster_pids)" ]; then
    remove_cgroups
    remove_host_traces
    return 0
  fi
  log "stopping processes"
  stop_processes
  log "unmounting everything under $CLUSTER_DIR"
  unmount_all "$CLUSTER_DIR"
  log "removing cgroups /$CGROUP_PARENT"
  remove_cgroups
  remove_host_traces
  if [ -d "$CLUSTER_DIR" ]; then
    # --one-file-system: never follow a mount we failed to see into the host.
    rm -rf --one-file-system "$CLUSTER_DIR"
  fi
}

# ---- faults (node.sh) ---------------------------------------------------------
# node.sh stops and starts single daemons of a running cluster for fault tests.
# A daemon it stops is started again with exactly the command line it had
# (same ports, certificates, flags), recorded in pids/NAME.argv.

daemon_argv_file() { echo "$CLUSTER_DIR/pids/$1.argv"; }

# stop_daemon NAME SIGNAL [GRACE_S]: records NAME's command line, sends it
# SIGNAL and waits until it is gone; after GRACE_S (default 20) it gets SIGKILL.
stop_daemon() {
  local name=$1 sig=$2 grace=${3:-20} pid deadline
  if ! daemon_alive "$name"; then
    log "$name is not running"
    return 0
  fi
  pid=$(daemon_pid "$name")
  cp "/proc/$pid/cmdline" "$(daemon_argv_file "$name")"
  kill -"$sig" "$pid"
  deadline=$((SECONDS + grace))
  while ours "$pid"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$name (pid $pid) still runs ${grace}s after SIG$sig; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 30))
    fi
    sleep 0.1
  done
  log "stopped $name (pid $pid, SIG$sig)"
}

# restart_daemon_recorded NAME: starts NAME again from the command line
# stop_daemon recorded; a no-op when it runs.
restart_daemon_recorded() {
  local name=$1 f argv=()
  if daemon_alive "$name"; then
    log "$name is already running"
    return 0
  fi
  f=$(daemon_argv_file "$name")
  [ -s "$f" ] || die "no recorded command line for $name ($f): only what node.sh stopped can be started by it; run make cluster-up"
  mapfile -d '' argv <"$f"
  start_daemon "$name" "${argv[@]}"
  log "started $name (pid $(daemon_pid "$name"))"
}

# flag_value FLAG NAME prints the value of --FLAG in NAME's recorded command
# line (as "--flag value" or "--flag=value").
flag_value() {
  local flag=$1 f argv=() i
  f=$(daemon_argv_file "$2")
  mapfile -d '' argv <"$f"
  for ((i = 0; i < ${#argv[@]}; i++)); do
    case "${argv[i]}" in
      "$flag") echo "${argv[i + 1]:-}" && return 0 ;;
      "$flag="*) echo "${argv[i]#*=}" && return 0 ;;
    esac
  done
  return 1
}

# wait_port_free PORT WHAT: a restarted daemon must find its port free.
wait_port_free() {
  local port=$1 what=$2 deadline=$((SECONDS + 30)) ports
  while ports=$(listening_ports) && grep -qx "$port" <<<"$ports"; do
    [ "$SECONDS" -lt "$deadline" ] || die "port $port of $what is still taken 30s after it stopped"
    sleep 0.2
  done
}

cluster_kubectl() {
  local k
  k=$(command -v kubectl 2>/dev/null) || k=$K8S_BIN/kubectl
  "$k" --kubeconfig "$CLUSTER_DIR/kubeconfig" "$@"
}

# registry_hosts_file NODE HOST: the containerd host config of HOST on NODE.
registry_hosts_file() { echo "$(node_dir "$1")/containerd/certs.d/$2/hosts.toml"; }

# write_registry_redirect NODE HOST ENDPOINT: NODE's containerd pulls HOST's
# images from http://ENDPOINT (e.g. a fault proxy in front of a registry).
# containerd reads certs.d at every pull: no restart needed.
REDIRECT_MARK="# written by node.sh set-registry-host"
write_registry_redirect() {
  local node=$1 host=$2 endpoint=$3 f
  f=$(registry_hosts_file "$node" "$host")
  mkdir -p "$(dirname "$f")"
  # server and the one host are the same endpoint: containerd falls back to
  # server when a host fails, which would route around the proxy.
  cat >"$f.tmp" <<EOT
$REDIRECT_MARK
server = "http://$endpoint"

[host."http://$endpoint"]
  capabilities = ["pull", "resolve"]
EOT
  mv "$f.tmp" "$f"
}

# remove_registry_redirect NODE HOST removes what write_registry_redirect
# wrote (never a host config of up.sh's).
remove_registry_redirect() {
  local f
  f=$(registry_hosts_file "$1" "$2")
  [ -f "$f" ] || return 0
  [ "$(head -1 "$f")" = "$REDIRECT_MARK" ] || die "$f was not written by node.sh set-registry-host; not removing it"
  rm -f "$f"
  rmdir "$(dirname "$f")" 2>/dev/null || true
}

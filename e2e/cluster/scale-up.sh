#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Starts the scale control plane for make bench-scale: the local cluster's own
# etcd, kube-apiserver, kube-controller-manager and kube-scheduler (started by
# up.sh's functions, from the same cached binaries), no kubelets, and kwok
# (sigs.k8s.io/kwok, built from the Go module proxy through the tools module
# bench/scale/tools) standing in for the kubelets of every node labelled
# coral-scale/sim=true. The nodes themselves are created by the harness
# (bench/scale), which also completes the worker pods with real reports.
#
# What differs from make cluster-up, and why:
#   - state in _output/scale (CORAL_SCALE_DIR), so it never touches the e2e
#     cluster of the same checkout;
#   - kube-apiserver writes an audit log (Metadata level) of the requests of
#     the benchmark's own users only: Coral (coral-bench), the bound client
#     (coral-bound) and the pod completer (coral-sim). apiserver_request_total
#     has no user or user-agent label, so the audit log is what can tell
#     Coral's requests from kwok's and the controller manager's; the log
#     backend is blocking, so no request is lost;
#   - kube-controller-manager gets --node-monitor-grace-period above kwok's
#     node lease duration (kwok renews a lease every duration/4; at 5000 nodes
#     a 40 s lease would cost 500 writes/s);
#   - etcd is Debian's 3.4 (up.sh's start_etcd) with the API server's
#     --feature-gates WatchList=false (up.sh's start_apiserver): 3.4 lacks
#     RequestWatchProgress, and with streaming watch-lists off kwok's and
#     client-go's watches work (docs/scale.md, "How the harness works");
#     building etcd >= 3.5 would cost a build for no difference in what is
#     measured.
#
# Users (client certificates signed by the cluster CA, kubeconfigs in pki/):
#   coral-bench   Coral; RBAC exactly as bench/scale/rbac.yaml, never admin
#                 (system:masters bypasses API Priority and Fairness)
#   coral-bound   the bound client; same rights as Coral
#   coral-sim     the harness's pod completer, in group system:nodes so API
#                 Priority and Fairness treats it like the kubelets it stands for
#   coral-ctl     coral-controller (make bench-scale's controller mode), with
#                 the ClusterRole `kubectl coral install` gives it
#                 (config/rbac/role.yaml), bound by the harness
#                 (bench/scale/rbac-controller.yaml)
#   kwok-controller  kwok, also in system:nodes, bound to cluster-admin by RBAC
#
# Writes $CORAL_SCALE_DIR/env (sourceable) for the harness. Stop everything
# with e2e/cluster/scale-down.sh (make bench-scale does it on exit).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CORAL_CLUSTER_DIR=${CORAL_SCALE_DIR:-$(cd "$here/../.." && pwd)/_output/scale}
# Defines up.sh's functions (and lib.sh's) without running up.sh.
# shellcheck source=up.sh
source "$here/up.sh"

# No kubelets: nothing of lib.sh's node handling applies.
NODES=()
SCALE_NAMESPACE=${SCALE_NAMESPACE:-coral-scale}
SCALE_NODE_LABEL=coral-scale/sim
KWOK_LEASE_SECONDS=${KWOK_LEASE_SECONDS:-600}
AUDIT_POLICY=$CLUSTER_DIR/audit-policy.yaml
AUDIT_LOG=$CLUSTER_DIR/logs/audit.log
KWOK_CONFIG=$CLUSTER_DIR/kwok.yaml
BENCH_DIR=$REPO_ROOT/bench/scale

kwok_version() {
  awk '$1 == "sigs.k8s.io/kwok" {print $2; exit} $1 == "require" && $2 == "sigs.k8s.io/kwok" {print $3; exit}' "$BENCH_DIR/tools/go.mod"
}

# build_kwok builds kwok once per version into the component cache, from the
# tools module (never from Coral's own go.mod).
build_kwok() {
  local v out
  v=$(kwok_version)
  [ -n "$v" ] || die "no sigs.k8s.io/kwok in $BENCH_DIR/tools/go.mod"
  out=$CORAL_CACHE/kwok-$v
  KWOK=$out/kwok
  [ -x "$KWOK" ] && return 0
  log "building kwok $v into $out (once)"
  mkdir -p "$out"
  (cd "$BENCH_DIR/tools" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$KWOK.tmp" sigs.k8s.io/kwok/cmd/kwok)
  mv "$KWOK.tmp" "$KWOK"
}

# Extra flags for two of up.sh's daemons: start_daemon (lib.sh) is wrapped,
# not copied, so start_apiserver and start_controllers stay up.sh's own.
eval "lib_$(declare -f start_daemon)"
start_daemon() {
  case "$1" in
    kube-apiserver)
      lib_start_daemon "$@" \
        --audit-policy-file "$AUDIT_POLICY" --audit-log-path "$AUDIT_LOG" \
        --audit-log-format json --audit-log-mode blocking --audit-log-maxsize 4000 --audit-log-maxbackup 1
      ;;
    kube-controller-manager)
      lib_start_daemon "$@" --node-monitor-grace-period "$((KWOK_LEASE_SECONDS + 300))s"
      ;;
    *) lib_start_daemon "$@" ;;
  esac
}

write_audit_policy() {
  # One event per request and stage past RequestReceived; the harness counts
  # distinct audit IDs. kube-controller-manager's writes are logged too (what
  # the Job controller and the garbage collector do for a run); everyone
  # else (kwok, the scheduler, kcm's reads) is not.
  cat >"$AUDIT_POLICY" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: [coral-bench, coral-bound, coral-sim, coral-ctl]
- level: Metadata
  users: ["system:kube-controller-manager"]
  verbs: [create, update, patch, delete, deletecollection]
- level: None
EOF
}

# write_kwok_config: kwok's stages, our own. Nodes become Ready once (their
# lease, renewed by kwok, keeps them so); pods on them go Pending -> Running
# like a kubelet would take them; a pod being deleted is removed. Worker pods
# are NOT completed here: the harness's completer gives each one the report a
# real worker would write (pkg/report's encoder), see bench/scale/complete.go.
write_kwok_config() {
  cat >"$KWOK_CONFIG" <<'EOF'
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  cidr: 10.128.0.0/10
  # kwok's defaults (4) would make kwok itself the bottleneck of a 1000-pod wave.
  podPlayStageParallelism: 32
  nodePlayStageParallelism: 16
  nodeLeaseParallelism: 16
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: scale-node-ready
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: NotIn
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {type: Ready, status: "True", reason: KubeletReady, message: "simulated by kwok", lastHeartbeatTime: {{ $now | Quote }}, lastTransitionTime: {{ $now | Quote }}}
      - {type: MemoryPressure, status: "False", reason: KubeletHasSufficientMemory, lastHeartbeatTime: {{ $now | Quote }}, lastTransitionTime: {{ $now | Quote }}}
      - {type: DiskPressure, status: "False", reason: KubeletHasNoDiskPressure, lastHeartbeatTime: {{ $now | Quote }}, lastTransitionTime: {{ $now | Quote }}}
      - {type: PIDPressure, status: "False", reason: KubeletHasSufficientPID, lastHeartbeatTime: {{ $now | Quote }}, lastTransitionTime: {{ $now | Quote }}}
      addresses:
      - {type: InternalIP, address: {{ NodeIP | Quote }}}
      - {type: Hostname, address: {{ .metadata.name | Quote }}}
      allocatable: {cpu: "32", memory: 128Gi, pods: "110"}
      capacity: {cpu: "32", memory: 128Gi, pods: "110"}
      nodeInfo:
        architecture: amd64
        operatingSystem: linux
        containerRuntimeVersion: containerd://2.4.2
        kubeletVersion: {{ Version | Quote }}
        kubeProxyVersion: ""
        kernelVersion: simulated
        osImage: simulated
        machineID: ""
        bootID: ""
        systemUUID: ""
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: scale-pod-running
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: DoesNotExist
    - key: '.status.phase'
      operator: In
      values: [Pending]
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        imageID: ""
        ready: true
        started: true
        restartCount: 0
        state:
          running: {startedAt: {{ $now | Quote }}}
      {{ end }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: scale-pod-delete
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: Exists
  next:
    delete: true
EOF
}

choose_scale_ports() {
  NODE_IP=$(detect_node_ip)
  pick_port ETCD_PORT
  pick_port ETCD_PEER_PORT
  pick_port APISERVER_PORT
  pick_port KCM_PORT
  pick_port SCHEDULER_PORT
}

make_scale_users() {
  # The benchmark's users; up.sh's make_pki made the CA and the admin.
  new_cert coral-bench "/O=coral-scale/CN=coral-bench" clientAuth
  new_cert coral-bound "/O=coral-scale/CN=coral-bound" clientAuth
  new_cert coral-sim "/O=system:nodes/CN=coral-sim" clientAuth
  new_cert coral-ctl "/O=coral-scale/CN=coral-ctl" clientAuth
  new_cert kwok-controller "/O=system:nodes/CN=kwok-controller" clientAuth
  local u
  for u in coral-bench coral-bound coral-sim coral-ctl kwok-controller; do
    write_kubeconfig "$PKI/$u.kubeconfig" "$u"
  done
}

apply_rbac() {
  kc create namespace "$SCALE_NAMESPACE" >/dev/null
  kc -n "$SCALE_NAMESPACE" apply -f "$BENCH_DIR/rbac.yaml" >/dev/null
  # Who may do what, checked before anything is measured.
  local who verb
  for verb in "create jobs.batch" "deletecollection jobs.batch" "watch pods"; do
    # shellcheck disable=SC2086
    [ "$(kc auth can-i $verb -n "$SCALE_NAMESPACE" --as coral-bench)" = yes ] || die "RBAC: coral-bench cannot $verb"
  done
  [ "$(kc auth can-i list nodes --as coral-bench)" = yes ] || die "RBAC: coral-bench cannot list nodes"
  for who in coral-bench coral-bound; do
    [ "$(kc auth can-i '*' '*' --as "$who")" = no ] || die "RBAC: $who must not be an admin"
  done
}

start_kwok() {
  log "starting kwok for nodes labelled $SCALE_NODE_LABEL=true (lease ${KWOK_LEASE_SECONDS}s)"
  start_daemon kwok "$KWOK" --kubeconfig "$PKI/kwok-controller.kubeconfig" --config "$KWOK_CONFIG" \
    --manage-nodes-with-label-selector "$SCALE_NODE_LABEL=true" \
    --node-lease-duration-seconds "$KWOK_LEASE_SECONDS" --node-ip 10.127.0.1
  sleep 1
  daemon_alive kwok || fail_with_log kwok "kwok exited at start"
}

write_scale_env() {
  {
    echo "# The scale control plane, written by e2e/cluster/scale-up.sh at $(date -Is)."
    env_line SCALE_DIR "$CLUSTER_DIR"
    env_line KUBECONFIG "$KUBECONFIG_FILE"
    env_line SCALE_KUBECTL "$KUBECTL"
    env_line SCALE_CORAL_KUBECONFIG "$PKI/coral-bench.kubeconfig"
    env_line SCALE_BOUND_KUBECONFIG "$PKI/coral-bound.kubeconfig"
    env_line SCALE_SIM_KUBECONFIG "$PKI/coral-sim.kubeconfig"
    env_line SCALE_CONTROLLER_KUBECONFIG "$PKI/coral-ctl.kubeconfig"
    env_line SCALE_AUDIT_LOG "$AUDIT_LOG"
    env_line SCALE_PIDS_DIR "$CLUSTER_DIR/pids"
    env_line SCALE_NAMESPACE "$SCALE_NAMESPACE"
    env_line SCALE_NODE_LABEL "$SCALE_NODE_LABEL"
    env_line SCALE_KWOK "$KWOK"
  } >"$CLUSTER_DIR/env"
}

scale_main() {
  local t0=$SECONDS
  lock_cluster
  command -v etcd >/dev/null || die "etcd is missing: apt-get install -y etcd-server (or make cluster-up once)"
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    [ -x "$K8S_BIN/$b" ] || { build_components; break; }
  done
  build_kwok
  KUBECTL=$(kubectl_bin)
  KUBECONFIG_FILE=$CLUSTER_DIR/kubeconfig
  if [ -d "$CLUSTER_DIR" ] || [ -n "$(cluster_pids)" ]; then
    log "removing the leftovers of an earlier scale control plane"
    cluster_down
  fi
  choose_scale_ports
  mkdir -p "$CLUSTER_DIR/logs"
  make_pki
  make_scale_users
  write_audit_policy
  write_kwok_config
  start_etcd
  wait_for etcd 30 "etcd" curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  start_apiserver
  wait_for kube-apiserver 120 "the API server to be ready" https_healthy "$APISERVER_PORT" /readyz
  start_controllers
  apply_rbac
  start_kwok
  write_scale_env
  log "scale control plane up in $((SECONDS - t0))s: source $CLUSTER_DIR/env"
}

scale_main "$@"

#!/usr/bin/env bash
# Smoke test of the pinned control plane: etcd + kube-apiserver + kube-controller-manager +
# kube-scheduler on 127.0.0.1, driven by the kubectl and helm built from the same pins.
#
# Usage: tests/controlplane/smoke.sh [BIN_DIR]   (default: the folder build.sh prints)
#
# Everything runs as the current user in a temp folder: free loopback ports, a fresh CA, serving,
# client and service-account keys made with openssl. Every process started here is stopped by its
# PID on exit (success, failure or Ctrl-C) and the temp folder is removed; set KEEP=1 to keep it
# (logs are in it). Exit status 0 means every check passed; the failing check is named otherwise.
#
# Checks: /readyz, namespaces, the CRDs of manifests/crds become Established, the controller
# manager creates the default ServiceAccount and kube-root-ca.crt, PodSecurity rejects a privileged
# pod in a `restricted` namespace, a ValidatingAdmissionPolicy denies, the scheduler reports
# FailedScheduling (no nodes), `helm install` of charts/raas succeeds, manifests/examples pass a
# server-side dry run. About 15 s once the binaries are built.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:-$("$here/build.sh" | tail -n 1)}
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm; do
    [[ -x $bin/$b ]] || { echo "smoke.sh: $bin/$b is missing; run tests/controlplane/build.sh" >&2; exit 1; }
done

work=$(mktemp -d /tmp/raas-controlplane-smoke.XXXXXX)
pids=()
names=()
cleanup() {
    local rc=$? i pid
    # Stop in reverse start order, each fully, so the API server never outlives etcd.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        pid=${pids[i]}
        kill -TERM "$pid" 2>/dev/null || continue
        local t0=$SECONDS
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null && echo "smoke.sh: ${names[i]} ignored SIGTERM for 15 s: killed" >&2
        wait "$pid" 2>/dev/null || true
        echo "smoke.sh: stopped ${names[i]} (pid $pid) in $((SECONDS - t0)) s" >&2
    done
    if ((rc != 0)); then
        echo "smoke.sh: FAILED (exit $rc); last log lines:" >&2
        tail -n 15 "$work"/*.log >&2 2>/dev/null || true
    fi
    if [[ ${KEEP:-0} == 1 ]]; then echo "smoke.sh: kept $work" >&2; else rm -rf "$work"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }
fail() { echo "smoke.sh: check failed: $*" >&2; exit 1; }

# free_port: a loopback port nobody listens on right now (the kernel's pick).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND until it succeeds.
wait_for() {
    local budget=$1 what=$2 deadline=$((SECONDS + $1))
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$what not ready within $budget s"
        sleep 0.5
    done
}

cd "$work"
etcd_port=$(free_port)
peer_port=$(free_port)
api_port=$(free_port)
cm_port=$(free_port)
sched_port=$(free_port)

step "versions"
"$bin/etcd" --version | sed -n 1p  # sed reads to the end: no SIGPIPE under pipefail
"$bin/kube-apiserver" --version
"$bin/kubectl" version --client
"$bin/helm" version --short

step "PKI (openssl $(openssl version | cut -d' ' -f2))"
ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ec_key ca.key
openssl req -x509 -new -key ca.key -out ca.crt -days 2 -subj "/CN=raas-smoke-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
# sign NAME SUBJECT EXTENSIONS: NAME.key + NAME.crt signed by the CA.
sign() {
    ec_key "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -out "$1.crt" -extfile <(printf '%s\n' "$3") 2>/dev/null
}
client_ext="keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
sign apiserver "/CN=kube-apiserver" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=raas-admin" "$client_ext"
sign controller-manager "/CN=system:kube-controller-manager" "$client_ext"
sign scheduler "/CN=system:kube-scheduler" "$client_ext"
ec_key sa.key
openssl pkey -in sa.key -pubout -out sa.pub
ls

# kubeconfig NAME: NAME.kubeconfig for the client cert NAME.crt.
kubeconfig() {
    cat >"$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: smoke
  cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$work/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$work/$1.crt", client-key: "$work/$1.key"}
contexts:
- name: smoke
  context: {cluster: smoke, user: $1}
current-context: smoke
EOF
}
kubeconfig admin
kubeconfig controller-manager
kubeconfig scheduler
kubectl() { "$bin/kubectl" --kubeconfig "$work/admin.kubeconfig" "$@"; }

step "etcd on 127.0.0.1:$etcd_port"
etcd_flags=(
    --name=smoke --data-dir="$work/etcd"
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port"
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port"
    --initial-cluster="smoke=http://127.0.0.1:$peer_port" --initial-cluster-state=new
    --unsafe-no-fsync --log-level=warn
)
printf '  %s\n' "${etcd_flags[@]}"
"$bin/etcd" "${etcd_flags[@]}" >etcd.log 2>&1 &
pids+=($!)
names+=(etcd)
wait_for 30 etcd curl -fsS "http://127.0.0.1:$etcd_port/health"
curl -fsS "http://127.0.0.1:$etcd_port/health"; echo

step "kube-apiserver on 127.0.0.1:$api_port"
# shellcheck disable=SC2054 # the commas are inside flag values
api_flags=(
    --etcd-servers="http://127.0.0.1:$etcd_port"
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port"
    --tls-cert-file="$work/apiserver.crt" --tls-private-key-file="$work/apiserver.key"
    --client-ca-file="$work/ca.crt"
    --service-account-issuer=https://kubernetes.default.svc.cluster.local
    --service-account-key-file="$work/sa.pub" --service-account-signing-key-file="$work/sa.key"
    --service-cluster-ip-range=10.0.0.0/24
    --authorization-mode=Node,RBAC
    --allow-privileged=true
    --enable-admission-plugins=NodeRestriction,PodSecurity,ValidatingAdmissionPolicy
    --endpoint-reconciler-type=none
    --profiling=false
)
printf '  %s\n' "${api_flags[@]}"
"$bin/kube-apiserver" "${api_flags[@]}" >kube-apiserver.log 2>&1 &
pids+=($!)
names+=(kube-apiserver)
start=$SECONDS
wait_for 120 kube-apiserver curl -fsS --cacert ca.crt --cert admin.crt --key admin.key \
    "https://127.0.0.1:$api_port/readyz"
echo "readyz after $((SECONDS - start)) s"

step "kube-controller-manager on 127.0.0.1:$cm_port"
cm_flags=(
    --kubeconfig="$work/controller-manager.kubeconfig"
    --authentication-kubeconfig="$work/controller-manager.kubeconfig"
    --authorization-kubeconfig="$work/controller-manager.kubeconfig"
    --bind-address=127.0.0.1 --secure-port="$cm_port" --leader-elect=false
    --service-account-private-key-file="$work/sa.key" --root-ca-file="$work/ca.crt"
    --use-service-account-credentials=true
    --cluster-signing-cert-file="$work/ca.crt" --cluster-signing-key-file="$work/ca.key"
    --profiling=false
)
printf '  %s\n' "${cm_flags[@]}"
"$bin/kube-controller-manager" "${cm_flags[@]}" >kube-controller-manager.log 2>&1 &
pids+=($!)
names+=(kube-controller-manager)

step "kube-scheduler on 127.0.0.1:$sched_port"
sched_flags=(
    --kubeconfig="$work/scheduler.kubeconfig"
    --authentication-kubeconfig="$work/scheduler.kubeconfig"
    --authorization-kubeconfig="$work/scheduler.kubeconfig"
    --bind-address=127.0.0.1 --secure-port="$sched_port" --leader-elect=false
    --profiling=false
)
printf '  %s\n' "${sched_flags[@]}"
"$bin/kube-scheduler" "${sched_flags[@]}" >kube-scheduler.log 2>&1 &
pids+=($!)
names+=(kube-scheduler)
wait_for 60 kube-controller-manager curl -fsSk "https://127.0.0.1:$cm_port/healthz"
wait_for 60 kube-scheduler curl -fsSk "https://127.0.0.1:$sched_port/healthz"
echo "controller-manager and scheduler /healthz ok"

step "kubectl get --raw /readyz"
kubectl get --raw /readyz; echo
kubectl version
step "kubectl get ns"
kubectl get ns

step "CRDs from manifests/crds"
kubectl apply -f "$repo/manifests/crds/"
kubectl wait --for condition=Established --timeout=60s -f "$repo/manifests/crds/"
kubectl get crd

step "controller-manager works: default ServiceAccount and kube-root-ca.crt appear"
wait_for 60 "default ServiceAccount" kubectl -n default get serviceaccount default
wait_for 60 "kube-root-ca.crt" kubectl -n default get configmap kube-root-ca.crt
kubectl -n default get serviceaccount,configmap

step "PodSecurity: restricted namespace rejects a privileged pod"
kubectl create namespace smoke-restricted
kubectl label namespace smoke-restricted pod-security.kubernetes.io/enforce=restricted
if out=$(kubectl -n smoke-restricted run priv --image=busybox --restart=Never \
    --overrides='{"spec":{"containers":[{"name":"priv","image":"busybox","securityContext":{"privileged":true}}]}}' 2>&1); then
    fail "privileged pod was admitted: $out"
fi
echo "$out"
grep -q 'violates PodSecurity "restricted' <<<"$out" || fail "rejection was not PodSecurity: $out"

step "ValidatingAdmissionPolicy denies a labelled ConfigMap"
kubectl apply -f - <<'EOF'
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: smoke-no-forbidden}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [configmaps]}
  validations:
  - expression: "!has(object.metadata.labels) || !('smoke-forbidden' in object.metadata.labels)"
    message: smoke-forbidden label is not allowed
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: smoke-no-forbidden}
spec:
  policyName: smoke-no-forbidden
  validationActions: [Deny]
EOF
cat >vap-probe.yaml <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: vap-probe, namespace: default, labels: {smoke-forbidden: "x"}}
EOF
# The policy is enforced once the API server's informer has seen it: retry until denied.
deadline=$((SECONDS + 30))
while out=$(kubectl create --dry-run=server -f vap-probe.yaml 2>&1); do
    ((SECONDS < deadline)) || fail "ValidatingAdmissionPolicy never denied: $out"
    sleep 1
done
echo "$out"
grep -q 'smoke-forbidden label is not allowed' <<<"$out" || fail "denial was not the policy's: $out"

step "kube-scheduler works: a pod on a node-less cluster gets FailedScheduling"
kubectl -n default run sched-probe --image=busybox --restart=Never
failed_scheduling() { [[ -n $(kubectl -n default get events --field-selector reason=FailedScheduling -o name) ]]; }
wait_for 60 "FailedScheduling event" failed_scheduling
kubectl -n default get events --field-selector reason=FailedScheduling

step "helm installs charts/raas (kubeVersion check, CRDs, admission) and lists it"
helm() { KUBECONFIG="$work/admin.kubeconfig" HELM_CACHE_HOME="$work/helm/cache" \
    HELM_CONFIG_HOME="$work/helm/config" HELM_DATA_HOME="$work/helm/data" "$bin/helm" "$@"; }
helm install raas "$repo/charts/raas" --namespace raas-system --create-namespace
helm list -A

step "manifests/examples pass the real CRD schemas (server-side dry run, in the chart's namespaces)"
kubectl apply --dry-run=server -f "$repo/manifests/examples/"

step "all checks passed"

#!/usr/bin/env bash
# Build the pinned upstream control-plane binaries once and cache them by version.
#
# Usage: tests/controlplane/build.sh        (prints the bin folder as its last stdout line)
#
# Binaries: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (module k8s/),
# etcd (module etcd/), helm (module helm/), kubelet (module kubelet/, the same release as k8s/).
# Each module's go.mod/go.sum pin the versions.
#
# Cache: ${RAAS_CONTROLPLANE_CACHE:-$HOME/.cache/raas/controlplane}/<key>/bin/, where <key> is a
# hash of the go.mod and go.sum of k8s/, etcd/ and helm/, the Go version, the platform and the
# build recipe below. The kubelet has a key of its own (the recipe and kubelet/'s go.mod/go.sum),
# is built into <kubelet key>/bin/ and linked from <key>/bin/kubelet by a relative symlink, so the
# printed folder holds all seven binaries while a kubelet change rebuilds only the kubelet, and
# adding the kubelet kept the control plane's key (and its 20-minute build) as it was.
# When every binary is already there, no go command runs and the script costs milliseconds.
# A missing binary is built into a temp folder and moved into place, so an interrupted build
# never leaves a truncated binary; a lock serialises concurrent builds of the same key.
# Old keys are never removed: delete the cache folder to reclaim space.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PATH="$PATH:/usr/local/go/bin"  # where the machine image installs Go
cache_root=${RAAS_CONTROLPLANE_CACHE:-${HOME}/.cache/raas/controlplane}

log() { printf 'controlplane/build.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# module_version FILE MODULE: the version FILE's go.mod requires for MODULE.
module_version() {
    local v
    v=$(awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) { print ($1 == m ? $2 : $3); exit }' "$1")
    [[ -n $v ]] || die "$1 does not require $2; restore it from git"
    printf '%s' "$v"
}

# go_version: the Go toolchain that `go build` will use, read without running go.
go_version() {
    case "${GOTOOLCHAIN:-}" in
        go1.*) printf '%s' "${GOTOOLCHAIN%%+*}"; return ;;
    esac
    local go_bin version_file
    go_bin=$(command -v go) || die "go not found on PATH; install Go 1.26 or newer"
    version_file="$(dirname "$(readlink -f "$go_bin")")/../VERSION"
    if [[ -r $version_file ]]; then
        head -n 1 "$version_file"
    else
        go env GOVERSION
    fi
}

kube_version=$(module_version "$here/k8s/go.mod" k8s.io/kubernetes)
helm_version=$(module_version "$here/helm/go.mod" helm.sh/helm/v4)
kube_minor=${kube_version#v1.}
kube_minor=${kube_minor%%.*}

# Without these the servers report v0.0.0-master, which breaks kubeVersion checks (Helm charts).
kube_ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    kube_ldflags+=" -X ${pkg}.gitVersion=${kube_version} -X ${pkg}.gitMajor=1"
    kube_ldflags+=" -X ${pkg}.gitMinor=${kube_minor} -X ${pkg}.gitTreeState=archive"
done
helm_ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=${helm_version}"
helm_ldflags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
build_flags="-trimpath -buildvcs=false -mod=readonly"

# Changing anything in this recipe changes the cache key.
recipe="recipe=1
go=$(go_version)
platform=$(uname -s)/$(uname -m)
cgo=0
goflags=${build_flags}
kube_ldflags=${kube_ldflags}
helm_ldflags=${helm_ldflags}"
# cache_key FILE...: the hash of the recipe and FILEs (paths relative to this folder).
cache_key() {
    {
        printf '%s\n' "$recipe"
        local f
        for f in "$@"; do
            [[ -r $here/$f ]] || die "$here/$f is missing; restore it from git"
            printf '== %s\n' "$f"
            cat "$here/$f"
        done
    } | sha256sum | cut -c1-16
}

key=$(cache_key k8s/go.mod k8s/go.sum etcd/go.mod etcd/go.sum helm/go.mod helm/go.sum)
key_dir="$cache_root/$key"
bin_dir="$key_dir/bin"
kubelet_key=$(cache_key kubelet/go.mod kubelet/go.sum)
kubelet_dir="$cache_root/$kubelet_key"
kubelet_link="../../$kubelet_key/bin/kubelet"  # relative: the cache folder may move

kube_bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
all_bins=("${kube_bins[@]}" etcd helm kubelet)

missing() {
    local name
    for name in "$@"; do
        if [[ $name == kubelet ]]; then
            [[ -x $bin_dir/kubelet && $(readlink "$bin_dir/kubelet") == "$kubelet_link" ]] || echo kubelet
        else
            [[ -x $bin_dir/$name ]] || printf '%s\n' "$name"
        fi
    done
}

if [[ -z $(missing "${all_bins[@]}") ]]; then
    printf '%s\n' "$bin_dir"
    exit 0
fi

mkdir -p "$bin_dir"
exec 9>"$key_dir/.lock"
flock 9
tmp=$(mktemp -d "$key_dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
printf '%s\n' "$recipe" >"$key_dir/recipe.txt"

# go_build MODULE_DIR LDFLAGS OUTPUT PACKAGE...: nice'd, static, reproducible build.
go_build() {
    local module_dir=$1 ldflags=$2 output=$3
    shift 3
    (
        cd "$here/$module_dir"
        CGO_ENABLED=0 GOFLAGS="$build_flags" nice -n 10 go build -ldflags="$ldflags" -o "$output" "$@"
    )
}

# install_bins NAME...: move freshly built binaries into the cache atomically.
install_bins() {
    local name
    for name in "$@"; do
        mv -f "$tmp/$name" "$bin_dir/$name"
    done
}

start=$SECONDS
mapfile -t todo < <(missing "${kube_bins[@]}")
if ((${#todo[@]})); then
    log "building ${todo[*]} ${kube_version} (a cold build takes many minutes)"
    go_build k8s "$kube_ldflags" "$tmp/" "${todo[@]/#/k8s.io/kubernetes/cmd/}"
    install_bins "${todo[@]}"
fi
if [[ -n $(missing etcd) ]]; then
    log "building etcd $(module_version "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)"
    go_build etcd "-s -w" "$tmp/etcd" go.etcd.io/etcd/server/v3
    install_bins etcd
fi
if [[ -n $(missing helm) ]]; then
    log "building helm ${helm_version}"
    go_build helm "$helm_ldflags" "$tmp/helm" helm.sh/helm/v4/cmd/helm
    install_bins helm
fi
if [[ -n $(missing kubelet) ]]; then
    kubelet_version=$(module_version "$here/kubelet/go.mod" k8s.io/kubernetes)
    [[ $kubelet_version == "$kube_version" ]] ||
        die "kubelet/go.mod pins k8s.io/kubernetes $kubelet_version but k8s/go.mod pins $kube_version; pin both to one release"
    mkdir -p "$kubelet_dir/bin"
    if [[ ! -x $kubelet_dir/bin/kubelet ]]; then
        log "building kubelet ${kube_version} (a cold build takes several minutes)"
        printf '%s\n' "$recipe" >"$kubelet_dir/recipe.txt"
        go_build kubelet "$kube_ldflags" "$tmp/kubelet" k8s.io/kubernetes/cmd/kubelet
        mv -f "$tmp/kubelet" "$kubelet_dir/bin/kubelet"
    fi
    ln -sfn "$kubelet_link" "$tmp/kubelet.link"
    mv -fT "$tmp/kubelet.link" "$bin_dir/kubelet"
fi
log "built in $((SECONDS - start)) s into $bin_dir"
printf '%s\n' "$bin_dir"

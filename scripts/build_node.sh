#!/usr/bin/env bash
# Prepare the Kubernetes test bed's real node (tests/support/k8s_node.py): Debian's containerd,
# runc, CNI plugins, iptables and skopeo installed; a local image registry built from
# github.com/distribution/distribution/v3 (the Go module cloud/testbed/registry/); a static
# `pause` binary compiled from the Kubernetes module's own build/pause/linux/pause.c and made
# into an OCI image with buildah (from scratch), since no public registry is reachable here; and
# Debian's busybox-static as a second image (a shell, nc and httpd for pods that must do
# something: serve behind a Service, reach the API server).
#
# Output: ~/.cache/aerogrid/node/<kubernetes version>-<distribution version>/
#   bin/registry, bin/pause, pause.oci.tar (image aerogrid/pause:<kubernetes version>),
#   busybox.oci.tar (image aerogrid/busybox:<busybox version>)
# printed as the last line of stdout; everything else goes to stderr.
#
# Idempotent: packages are installed only when missing; the build does nothing when the stamp
# matches the inputs (this script, cloud/testbed/registry/, the Kubernetes version); a lock
# serialises concurrent runs. buildah uses a throwaway storage under the output folder (vfs),
# never the machine's own image store.
#
# Exit 3: not root, not Linux, no apt-get to install a missing package, or no Go (the tests skip
# locally, fail under CI=true).
# Environment: AEROGRID_CACHE (default ~/.cache/aerogrid).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REGISTRY_MOD="$REPO_ROOT/cloud/testbed/registry"
KUBE_MOD="$REPO_ROOT/cloud/testbed/kube"
CACHE_ROOT="${AEROGRID_CACHE:-$HOME/.cache/aerogrid}"

# command -> Debian package: what the node runs, and what builds the pause image.
PACKAGES=(
    containerd:containerd
    runc:runc
    /usr/lib/cni/bridge:containernetworking-plugins
    iptables:iptables
    skopeo:skopeo
    buildah:buildah
    gcc:gcc
    /usr/lib/x86_64-linux-gnu/libc.a:libc6-dev
    /bin/busybox:busybox-static
)

export GOCACHE="$CACHE_ROOT/go/build"
export GOMODCACHE="$CACHE_ROOT/go/mod"
export GOFLAGS="-mod=readonly -modcacherw -buildvcs=false"
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GO111MODULE=on

log() { echo "build_node.sh: $*" >&2; }
unavailable() {
    log "$*"
    exit 3
}

mod_version() {
    awk -v m="$1" '($1 == m && $2 ~ /^v/) { print $2; exit } ($1 == "require" && $2 == m) { print $3; exit }' "$2"
}

have() { [[ "$1" == /* ]] && [[ -e "$1" ]] || { [[ "$1" != /* ]] && command -v "$1" >/dev/null 2>&1; }; }

install_packages() {
    local missing=() entry
    for entry in "${PACKAGES[@]}"; do
        have "${entry%%:*}" || missing+=("${entry#*:}")
    done
    ((${#missing[@]} == 0)) && return
    if ! command -v apt-get >/dev/null 2>&1; then
        unavailable "missing ${missing[*]} and no apt-get to install them (Debian packages)"
    fi
    log "installing ${missing[*]} (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        apt-get update >&2
    fi
    apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

inputs_hash() {
    (
        cd "$REPO_ROOT"
        find cloud/testbed/registry -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
        sha256sum scripts/build_node.sh
        echo "kubernetes $1"
        dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || true
    ) | sha256sum | cut -d' ' -f1
}

build_pause() {
    local kube=$1 out=$2 dir
    dir="$(go -C "$KUBE_MOD" list -m -f '{{.Dir}}' k8s.io/kubernetes)"
    if [[ -z "$dir" || ! -f "$dir/build/pause/linux/pause.c" ]]; then
        (cd "$KUBE_MOD" && go mod download k8s.io/kubernetes)
        dir="$(go -C "$KUBE_MOD" list -m -f '{{.Dir}}' k8s.io/kubernetes)"
    fi
    log "compiling pause from k8s.io/kubernetes@$kube/build/pause/linux/pause.c"
    gcc -static -O2 -Wall -Werror -DVERSION="$kube-aerogrid" \
        -o "$out/bin/pause" "$dir/build/pause/linux/pause.c"
    strip "$out/bin/pause"
    # As upstream's image: nobody's UID, /pause as the entrypoint.
    image_of "$out" pause "localhost/aerogrid/pause:$kube" "$out/bin/pause" /pause \
        "k8s.io/kubernetes@$kube build/pause/linux/pause.c"
}

# image_of OUT NAME REF BINARY PATH SOURCE: a one-file image (from scratch) as OUT/NAME.oci.tar,
# running BINARY (copied to PATH) as UID 65535, labelled with where it came from.
image_of() {
    local out=$1 name=$2 ref=$3 binary=$4 path=$5 source=$6 store ctr
    store="$(mktemp -d "$out/buildah.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: $store is local
    trap "rm -rf '$store'" EXIT
    local bah=(buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs)
    ctr="$("${bah[@]}" from scratch)"
    "${bah[@]}" copy "$ctr" "$binary" "$path" >/dev/null
    "${bah[@]}" config --entrypoint "[\"$path\"]" --user 65535:65535 \
        --label "org.opencontainers.image.source=$source" "$ctr"
    "${bah[@]}" commit --quiet --format oci "$ctr" "$ref" >/dev/null
    rm -f "$out/$name.oci.tar"
    "${bah[@]}" push --quiet "$ref" "oci-archive:$out/$name.oci.tar.partial:$ref" >&2
    mv "$out/$name.oci.tar.partial" "$out/$name.oci.tar"
    "${bah[@]}" rm "$ctr" >/dev/null
    rm -rf "$store"
    trap - EXIT
}

main() {
    [[ "$(uname -s)" == Linux ]] || unavailable "the test bed's node runs on Linux only"
    [[ "$(id -u)" == 0 ]] || unavailable "the test bed's node needs root (containerd, kubelet, bridges, iptables)"
    command -v go >/dev/null 2>&1 || unavailable "'go' not found on PATH (the registry is built from Go modules)"

    local kube distribution
    kube="$(mod_version k8s.io/kubernetes "$KUBE_MOD/go.mod")"
    distribution="$(mod_version github.com/distribution/distribution/v3 "$REGISTRY_MOD/go.mod")"
    local out="$CACHE_ROOT/node/$kube-$distribution"
    local stamp="$out/.complete" hash
    hash="$(inputs_hash "$kube")"
    mkdir -p "$out"
    exec 9>"$out/.lock"
    flock 9
    install_packages
    if grep -qxF "inputs $hash" "$stamp" 2>/dev/null; then
        echo "$out"
        return
    fi
    rm -f "$stamp"
    local started=$SECONDS
    mkdir -p "$out/bin"
    log "building the registry (distribution $distribution)"
    (cd "$REGISTRY_MOD" && go build -trimpath -ldflags "-s -w" -o "$out/bin/registry" .)
    build_pause "$kube" "$out"
    local busybox
    busybox="$(dpkg-query -W -f '${Version}' busybox-static)"
    log "making an image of Debian's busybox-static $busybox"
    image_of "$out" busybox "localhost/aerogrid/busybox:${busybox//[^A-Za-z0-9_.-]/_}" \
        /bin/busybox /bin/busybox "Debian busybox-static $busybox"
    printf 'inputs %s\nkubernetes %s\ndistribution %s\n' "$hash" "$kube" "$distribution" >"$stamp"
    log "built $out in $((SECONDS - started)) s"
    echo "$out"
}

main "$@"

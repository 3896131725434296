#!/usr/bin/env bash
# Build a real Kubernetes control plane and node (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy) and etcd from Go modules, once, for the Kubernetes test
# bed (tests/support/k8s.py, tests/support/k8s_node.py), and extract Istio's CRDs next to them.
#
# Why: the cloud tests need a real API server (admission, RBAC, server-side apply, CRD schemas)
# and a real node that runs pods; no kind/Docker runs here, and Debian's etcd 3.4 is too old for
# current apiservers. The sources are the Go modules in cloud/testbed/ (kube: upstream's five
# mains, one release; etcd: a main calling etcdmain.Main); their go.mod/go.sum pin every version.
#
# Output: ~/.cache/aerogrid/k8s/<kubernetes version>-<etcd version>/
#   bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy,etcd},
#   istio-crds.yaml
# printed as the last line of stdout; everything else goes to stderr.
# Go's caches live in ~/.cache/aerogrid/go/{build,mod}, so a clean clone (CI keeps ~/.cache)
# reuses downloads and compiled packages.
#
# Idempotent: does nothing when the stamp matches the inputs (this script and cloud/testbed/);
# a half-finished run (no stamp) is redone; a lock serialises concurrent runs.
#
# Usage:
#   scripts/build_k8s.sh                      build (or print the cached folder)
#   scripts/build_k8s.sh --update [KUBE [ETCD]]
#       regenerate cloud/testbed/{kube,etcd}/go.mod and go.sum, e.g. --update v1.37.2 v3.6.16:
#       the kube module requires k8s.io/kubernetes KUBE and replaces each staging module that
#       KUBE's own go.mod points at ./staging/src/k8s.io/X with the published k8s.io/X v0.MINOR.PATCH.
#
# Exit 3: Go is missing or too old (the tests skip locally, fail under CI=true).
# Environment: AEROGRID_CACHE (default ~/.cache/aerogrid).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TESTBED="$REPO_ROOT/cloud/testbed"
KUBE_MOD="$TESTBED/kube"
ETCD_MOD="$TESTBED/etcd"
CACHE_ROOT="${AEROGRID_CACHE:-$HOME/.cache/aerogrid}"

# Istio's CRDs come from the istio.io/api module; the sum pins its content like a go.sum line.
ISTIO_API_VERSION="v1.32.0"
ISTIO_API_SUM="h1:37mJvg9I0biYZAEQF+MATs4FNeCpXEIVO3LFpVb6iNM="
ISTIO_CRDS_PATH="kubernetes/customresourcedefinitions.gen.yaml"

export GOCACHE="$CACHE_ROOT/go/build"
export GOMODCACHE="$CACHE_ROOT/go/mod"
# -modcacherw: the module cache can be deleted with rm -rf; no toolchain download, no go.work
# from a parent folder, static binaries.
export GOFLAGS="-mod=readonly -modcacherw -buildvcs=false"
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GO111MODULE=on

log() { echo "build_k8s.sh: $*" >&2; }

# The version a go.mod requires of a module (block or single-line require).
mod_version() {
    awk -v m="$1" '($1 == m && $2 ~ /^v/) { print $2; exit } ($1 == "require" && $2 == m) { print $3; exit }' "$2"
}

need_go() {
    if ! command -v go >/dev/null 2>&1; then
        log "'go' not found on PATH (the Kubernetes test bed is built from Go modules)"
        exit 3
    fi
    local want have
    want="$(awk '$1 == "go" { print $2; exit }' "$KUBE_MOD/go.mod")"
    have="$(go env GOVERSION)"
    have="${have#go}"
    if [[ -n "$want" && "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]]; then
        log "Go $have is older than the $want that cloud/testbed/kube/go.mod needs"
        exit 3
    fi
}

update() {
    need_go
    local kube="${1:-$(mod_version k8s.io/kubernetes "$KUBE_MOD/go.mod")}"
    local etcd="${2:-$(mod_version go.etcd.io/etcd/server/v3 "$ETCD_MOD/go.mod")}"
    if [[ ! "$kube" =~ ^v1\.([0-9]+)\.([0-9]+)$ || ! "$etcd" =~ ^v3\.[0-9]+\.[0-9]+$ ]]; then
        log "usage: $0 --update v1.MINOR.PATCH v3.MINOR.PATCH (got '$kube' '$etcd')"
        exit 2
    fi
    local staging_version="v0.${kube#v1.}"
    local work
    work="$(mktemp -d "${TMPDIR:-/tmp}/aerogrid-k8s-update.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: $work is local
    trap "rm -rf '$work'" EXIT
    export GOFLAGS="-modcacherw -buildvcs=false"

    # Upstream's go.mod at that release (outside any module, so our replaces do not apply).
    local upstream
    upstream="$(cd "$work" && go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@$kube")"
    local staging=()
    mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "$upstream")
    if ((${#staging[@]} < 20)); then
        log "found only ${#staging[@]} staging replaces in $upstream: has its layout changed?"
        exit 1
    fi
    # Only modules in the build graph need to exist; the rest (sample-*) are dropped if unpublished.
    local required=() m
    mapfile -t required < <(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$upstream")
    local replaces=()
    for m in "${staging[@]}"; do
        if (cd "$work" && go list -m "$m@$staging_version" >/dev/null 2>&1); then
            replaces+=("$m")
        elif printf '%s\n' "${required[@]}" | grep -qxF "$m"; then
            log "$m $staging_version is not on the module proxy, but k8s.io/kubernetes $kube requires it"
            exit 1
        else
            log "skipping $m: $staging_version is not published and $kube does not require it"
        fi
    done
    log "k8s.io/kubernetes $kube: replacing ${#replaces[@]} staging modules with $staging_version"

    {
        echo "// Generated by scripts/build_k8s.sh --update from k8s.io/kubernetes $kube's own go.mod:"
        echo "// each staging module it replaces with ./staging/src/k8s.io/X is the published k8s.io/X."
        echo
        echo "module aerogrid/testbed/kube"
        echo
        awk '$1 == "go" { print; exit }' "$upstream"
        echo
        # Upstream's godebug defaults apply only in the main module: keep its behaviour.
        grep '^godebug' "$upstream" || true
        echo
        echo "require k8s.io/kubernetes $kube"
        echo
        echo "replace ("
        for m in "${replaces[@]}"; do
            printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"
        done
        echo ")"
    } >"$KUBE_MOD/go.mod"
    rm -f "$KUBE_MOD/go.sum"
    (cd "$KUBE_MOD" && go mod tidy)

    (cd "$ETCD_MOD" && go get "go.etcd.io/etcd/server/v3@$etcd" && go mod tidy)
    log "updated $KUBE_MOD/go.mod and $ETCD_MOD/go.mod; now run $0 to build"
}

# A hash of everything the outputs depend on, so an edited go.mod or main rebuilds.
inputs_hash() {
    (
        cd "$REPO_ROOT"
        find cloud/testbed -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) -print0 |
            LC_ALL=C sort -z | xargs -0 sha256sum
        sha256sum scripts/build_k8s.sh
    ) | sha256sum | cut -d' ' -f1
}

build() {
    local kube etcd
    kube="$(mod_version k8s.io/kubernetes "$KUBE_MOD/go.mod")"
    etcd="$(mod_version go.etcd.io/etcd/server/v3 "$ETCD_MOD/go.mod")"
    if [[ -z "$kube" || -z "$etcd" ]]; then
        log "cloud/testbed/*/go.mod name no k8s.io/kubernetes or etcd version: run $0 --update"
        exit 1
    fi
    local out="$CACHE_ROOT/k8s/$kube-$etcd"
    local stamp="$out/.complete" hash
    hash="$(inputs_hash)"
    if grep -qxF "inputs $hash" "$stamp" 2>/dev/null; then
        echo "$out"
        return
    fi
    need_go
    mkdir -p "$out"
    # Two test sessions (or make -j) starting at once build once; the second waits, then reuses.
    exec 9>"$out/.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 9
        if grep -qxF "inputs $hash" "$stamp" 2>/dev/null; then
            echo "$out"
            return
        fi
    fi
    rm -f "$stamp"
    local started=$SECONDS
    mkdir -p "$out/bin"

    # /version must answer the release, not "v0.0.0-master": hack/lib/version.sh's ldflags.
    local minor="${kube#v1.}"
    minor="${minor%%.*}"
    local date ldflags="-s -w" pkg
    date="$(go -C "$KUBE_MOD" list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes 2>/dev/null || true)"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$kube -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit="  # no git checkout to name
        [[ -n "$date" ]] && ldflags+=" -X $pkg.buildDate=$date"
    done

    log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy $kube (a cold build takes many minutes)"
    (cd "$KUBE_MOD" && go build -trimpath -ldflags "$ldflags" -o "$out/bin/" ./cmd/...)
    log "building etcd $etcd"
    (cd "$ETCD_MOD" && go build -trimpath -ldflags "-s -w" -o "$out/bin/etcd" .)

    log "extracting Istio's CRDs from istio.io/api $ISTIO_API_VERSION"
    local work json dir sum
    work="$(mktemp -d "${TMPDIR:-/tmp}/aerogrid-k8s-build.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: $work is local
    trap "rm -rf '$work'" EXIT
    # Outside any module, so this touches no go.sum; the pinned sum checks the content instead.
    json="$(cd "$work" && go mod download -json "istio.io/api@$ISTIO_API_VERSION")"
    dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")"
    sum="$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p' <<<"$json")"
    if [[ "$sum" != "$ISTIO_API_SUM" ]]; then
        log "istio.io/api $ISTIO_API_VERSION has sum '$sum', expected $ISTIO_API_SUM"
        exit 1
    fi
    cp "$dir/$ISTIO_CRDS_PATH" "$out/istio-crds.yaml.partial"
    chmod 0644 "$out/istio-crds.yaml.partial"
    mv "$out/istio-crds.yaml.partial" "$out/istio-crds.yaml"

    printf 'inputs %s\nkubernetes %s\netcd %s\nistio.io/api %s\n' \
        "$hash" "$kube" "$etcd" "$ISTIO_API_VERSION" >"$stamp"
    log "built $out in $((SECONDS - started)) s"
    echo "$out"
}

case "${1:-}" in
--update)
    shift
    update "$@"
    ;;
"") build ;;
*)
    log "usage: $0 [--update [KUBE_VERSION [ETCD_VERSION]]]"
    exit 2
    ;;
esac

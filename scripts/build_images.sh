#!/usr/bin/env bash
# Build the container images for real, without a Docker daemon: aerogrid-runtime,
# aerogrid-platform and aerogrid-builder, from packaging/*.Dockerfile, with buildah.
#
# Why: no container registry is reachable here, so the public bases the Dockerfiles name
# (docker.io/library/python:3.11-slim-bookworm, docker.io/library/debian:bookworm-slim) cannot be
# pulled. This script makes stand-ins for them from Debian's own packages: a bookworm minbase
# root file system (debootstrap, from the mirror this machine's apt uses) committed as
# `debian:bookworm-slim`'s stand-in, and on top of it Debian's python3.11 + python3.11-venv with
# a `python` in /usr/local/bin (where the public image has its own) as the python image's. Both
# carry the label org.aerogrid.stand-in-for=<the public image>. The Dockerfiles keep the public
# image as their default base; the stand-in is passed as the build argument (PYTHON_IMAGE,
# DEBIAN_IMAGE), so users build from the real one.
#
# buildah keeps its own storage under the cache (vfs driver: plain directories, no overlay
# mounts): ~/.cache/aerogrid/images/storage. RUN steps use chroot isolation (no runc, no network
# namespace: pip and apt reach PyPI and the Debian mirror as the host does).
#
# Output: ~/.cache/aerogrid/images/<stamp>/ with aerogrid-{runtime,platform,builder}.oci.tar and
# images.json ({"aerogrid-runtime": {"archive", "tag", "size_bytes", "archive_bytes",
# "base"}, ...}; size_bytes: the image's unpacked size), printed as the last line of stdout;
# progress goes to stderr.
#
# Idempotent, two stamps: the stand-ins are rebuilt when their recipe in this script changes
# (about a minute), the images when a Dockerfile, a requirements file, a wheel in dist/, a
# stand-in or their recipe changes (about 3 minutes). A warm run takes 0.2 s. A lock
# serialises concurrent runs.
#
# Needs: `make dist` first (dist/aerogrid-*.whl, dist/aerogrid_cloud-*.whl); root; buildah and
# debootstrap (installed from Debian's packages when missing, with podman and runc for the
# image tests).
# Exit 3: not root or no apt-get to install them (the tests skip locally, fail under CI=true).
# Environment: AEROGRID_CACHE (default ~/.cache/aerogrid).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_ROOT="${AEROGRID_CACHE:-$HOME/.cache/aerogrid}"
HOME_DIR="$CACHE_ROOT/images"
STORE=(--root "$HOME_DIR/storage" --runroot "$HOME_DIR/runroot" --storage-driver vfs)

SUITE=bookworm
# The mirror this machine's apt uses (deb822 or one-line sources), else Debian's own.
MIRROR="$(sed -n 's#^URIs:[[:space:]]*\(http[^[:space:]]*/debian\)/*$#\1#p; s#^deb[[:space:]]\+\(http[^[:space:]]*/debian\)/*[[:space:]]\+bookworm[[:space:]].*#\1#p' \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -n1 || true)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

PUBLIC_DEBIAN=docker.io/library/debian:bookworm-slim
PUBLIC_PYTHON=docker.io/library/python:3.11-slim-bookworm
STANDIN_DEBIAN=localhost/aerogrid-stand-in/debian:bookworm-slim
STANDIN_PYTHON=localhost/aerogrid-stand-in/python:3.11-slim-bookworm
# Debian's python packages; passwd: groupadd/useradd (the Dockerfiles add the aerogrid user);
# ca-certificates, netbase, tzdata: what the public python image carries beside Python.
PYTHON_PACKAGES=(python3.11 python3.11-venv passwd ca-certificates netbase tzdata)
# What the public slim images leave out of every package, here and in later apt-get installs.
DPKG_SLIM='path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*'
SLIM_CLEANUP='rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/apt \
  /var/log/dpkg.log /var/log/bootstrap.log /var/log/alternatives.log /usr/share/doc/* \
  /usr/share/man/* /usr/share/info/* /usr/share/locale/* /usr/share/lintian /tmp/* /var/tmp/*'

log() { echo "build_images.sh: $*" >&2; }
bah() { buildah "${STORE[@]}" "$@"; }

install_tools() {
    local tool
    # podman and runc: the image tests run the images with them (tests/support/containers.py).
    for tool in buildah debootstrap podman runc; do
        bash "$REPO_ROOT/scripts/apt_install_tool.sh" "$tool" "$tool" "AEROGRID_$(tr a-z A-Z <<<"$tool")" \
            "$tool" >&2 || exit "$?"
    done
    if [[ "$(id -u)" != 0 ]]; then
        log "building images needs root (debootstrap, buildah's vfs storage under $HOME_DIR)"
        exit 3
    fi
}

# sha256 of the given files' contents and names.
hash_files() { (cd "$REPO_ROOT" && sha256sum "$@") | sha256sum | cut -c1-16; }

# sha256 of this script's recipe for a step: the functions named and the settings above, so an
# edit elsewhere in the script does not rebuild (and a change to the step does).
recipe_hash() {
    {
        declare -f "$@"
        declare -p SUITE MIRROR PUBLIC_DEBIAN PUBLIC_PYTHON STANDIN_DEBIAN STANDIN_PYTHON \
            PYTHON_PACKAGES DPKG_SLIM SLIM_CLEANUP
    } | sha256sum | cut -c1-16
}

# The stand-in bases, cached by this script's hash; prints nothing.
build_bases() {
    local stamp="$HOME_DIR/bases.stamp" hash
    hash="$(recipe_hash build_bases)"
    if grep -qxF "script $hash" "$stamp" 2>/dev/null &&
        bah inspect --type image "$STANDIN_DEBIAN" >/dev/null 2>&1 &&
        bah inspect --type image "$STANDIN_PYTHON" >/dev/null 2>&1; then
        return
    fi
    rm -f "$stamp"
    # Every image in the storage derives from the old stand-ins: start it afresh (vfs keeps a
    # full copy of each layer, so stale ones cost gigabytes).
    rm -rf "$HOME_DIR/storage" "$HOME_DIR/runroot"
    local started=$SECONDS ctr mnt
    log "debootstrap $SUITE (minbase) from $MIRROR: the stand-in for $PUBLIC_DEBIAN"
    ctr="$(bah from --name aerogrid-stand-in-debian scratch)"
    mnt="$(bah mount "$ctr")"
    mkdir -p "$HOME_DIR/debs" "$mnt/etc/dpkg/dpkg.cfg.d"
    echo "$DPKG_SLIM" >"$mnt/etc/dpkg/dpkg.cfg.d/aerogrid-slim"
    debootstrap --variant=minbase --cache-dir="$HOME_DIR/debs" "$SUITE" "$mnt" "$MIRROR" >&2
    echo "deb $MIRROR $SUITE main" >"$mnt/etc/apt/sources.list"
    chroot "$mnt" /bin/sh -c "apt-get clean && $SLIM_CLEANUP"
    rm -rf "${mnt:?}"/dev/* "$mnt"/proc/* "$mnt"/sys/* "$mnt"/run/*
    bah umount "$ctr" >/dev/null
    bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd bash --label "org.aerogrid.stand-in-for=$PUBLIC_DEBIAN" \
        --label "org.opencontainers.image.description=A stand-in for $PUBLIC_DEBIAN (no registry here): debootstrap --variant=minbase $SUITE, docs and apt lists removed" \
        "$ctr"
    bah commit --rm --format oci "$ctr" "$STANDIN_DEBIAN" >/dev/null

    log "Debian's python3.11 on it: the stand-in for $PUBLIC_PYTHON"
    ctr="$(bah from --name aerogrid-stand-in-python --pull=never "$STANDIN_DEBIAN")"
    bah run --isolation chroot "$ctr" -- /bin/sh -c "
        set -e
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${PYTHON_PACKAGES[*]}
        apt-get clean
        $SLIM_CLEANUP
        # As the public image does to its Python: no bytecode caches, no test suites.
        find /usr/lib/python3.11 -depth -type d \\( -name __pycache__ -o -name test -o -name tests \\
            -o -name idle_test \\) -exec rm -rf {} +
        for name in python python3; do ln -sf /usr/bin/python3.11 /usr/local/bin/\$name; done
        python -m venv --help >/dev/null
        groupadd --help >/dev/null && useradd --help >/dev/null" >&2
    bah config --env LANG=C.UTF-8 --cmd python3 \
        --label "org.aerogrid.stand-in-for=$PUBLIC_PYTHON" \
        --label "org.opencontainers.image.description=A stand-in for $PUBLIC_PYTHON (no registry here): Debian's python3.11 and python3.11-venv on the debian:bookworm-slim stand-in, python in /usr/local/bin" \
        "$ctr"
    bah commit --rm --format oci "$ctr" "$STANDIN_PYTHON" >/dev/null
    printf 'script %s\n' "$hash" >"$stamp"
    log "stand-ins built in $((SECONDS - started)) s"
}

# RUN steps see the host's CA bundle (only while they run; the images do not keep it), so pip
# trusts what this machine trusts, e.g. an egress proxy's CA (Debian's pip reads the system
# bundle). Only on the python stand-in, which has the file: the builder's apt installs its own.
PYTHON_RUN_MOUNTS=()
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
if [[ -s "$HOST_CA_BUNDLE" ]]; then
    PYTHON_RUN_MOUNTS=(--volume "$HOST_CA_BUNDLE:$HOST_CA_BUNDLE:ro")
fi

# One image: bud with its stand-in base, export as an OCI archive; prints its images.json entry.
build_image() {
    local name=$1 dockerfile=$2 arg=$3 base=$4 version=$5 out=$6
    local RUN_MOUNTS=()
    [[ "$arg" == PYTHON_IMAGE ]] && RUN_MOUNTS=("${PYTHON_RUN_MOUNTS[@]}")
    local ref="localhost/$name:$version" started=$SECONDS
    log "buildah bud -f $dockerfile --build-arg $arg=$base"
    local bud=(bud --isolation chroot --pull=never --layers --format oci "${RUN_MOUNTS[@]}"
        --build-arg "$arg=$base" -f "$dockerfile")
    # Earlier stages (`FROM ... AS install`) are tagged too, so that pruning the images no tag
    # names keeps their layers: the next build reuses them (pip's downloads and installs).
    local stage
    for stage in $(sed -n 's/^FROM[[:space:]].*[[:space:]][Aa][Ss][[:space:]]\+\([A-Za-z0-9_.-]\+\)[[:space:]]*$/\1/p' "$REPO_ROOT/$dockerfile"); do
        (cd "$REPO_ROOT" && bah "${bud[@]}" --target "$stage" -t "localhost/$name-stage-$stage:cache" . >&2)
    done
    (cd "$REPO_ROOT" && bah "${bud[@]}" -t "$ref" . >&2)
    rm -f "$out/$name.oci.tar"
    bah push --quiet "$ref" "oci-archive:$out/$name.oci.tar:$name:$version" >&2
    local size archive_bytes
    # Unpacked size: the sum of the layers, which buildah's storage keeps as uncompressed tars.
    size="$(bah inspect --type image "$ref" | python3 -c \
        'import json, sys; print(sum(layer["size"] for layer in json.loads(json.load(sys.stdin)["Manifest"])["layers"]))')"
    archive_bytes="$(stat -c %s "$out/$name.oci.tar")"
    log "$name:$version: $size bytes unpacked, archive $archive_bytes bytes ($((SECONDS - started)) s)"
    printf '"%s": {"archive": "%s", "tag": "%s", "size_bytes": %s, "archive_bytes": %s, "base": "%s"}' \
        "$name" "$out/$name.oci.tar" "$version" "$size" "$archive_bytes" "$base"
}

build_images() {
    local wheels=() wheel
    mapfile -t wheels < <(cd "$REPO_ROOT" && ls dist/aerogrid-*.whl dist/aerogrid_cloud-*.whl 2>/dev/null)
    if ((${#wheels[@]} != 2)); then
        log "need exactly one dist/aerogrid-*.whl and one dist/aerogrid_cloud-*.whl (found: ${wheels[*]:-none}): run make dist"
        exit 1
    fi
    wheel="${wheels[0]##*/}"
    local version="${wheel#aerogrid-}"
    version="${version%%-*}"
    local bases base hash
    bases="$(for base in "$STANDIN_DEBIAN" "$STANDIN_PYTHON"; do
        bah inspect --type image --format '{{.FromImageID}}' "$base"
    done)"
    hash="$( (
        recipe_hash build_image build_images
        declare -p PYTHON_RUN_MOUNTS
        hash_files packaging/*.Dockerfile .dockerignore packaging/requirements/*.txt "${wheels[@]}"
        echo "$bases"
    ) | sha256sum | cut -c1-16)"
    local out="$HOME_DIR/$hash"
    if [[ -f "$out/.complete" ]]; then
        echo "$out"
        return
    fi
    local started=$SECONDS
    rm -rf "$out" && mkdir -p "$out"
    {
        echo "{"
        build_image aerogrid-runtime packaging/runtime.Dockerfile PYTHON_IMAGE "$STANDIN_PYTHON" "$version" "$out"
        echo ","
        build_image aerogrid-platform packaging/platform.Dockerfile PYTHON_IMAGE "$STANDIN_PYTHON" "$version" "$out"
        echo ","
        build_image aerogrid-builder packaging/builder.Dockerfile DEBIAN_IMAGE "$STANDIN_DEBIAN" "$version" "$out"
        echo "}"
    } >"$out/images.json.partial"
    python3 -m json.tool "$out/images.json.partial" >"$out/images.json"
    rm "$out/images.json.partial"
    touch "$out/.complete"
    # Older outputs and the layers only they used.
    find "$HOME_DIR" -mindepth 1 -maxdepth 1 -type d -name '????????????????' ! -path "$out" -exec rm -rf {} +
    # Images a newer build untagged: vfs keeps a full copy of every layer, so they cost gigabytes.
    bah rmi --prune >/dev/null 2>&1 || true
    log "images built in $((SECONDS - started)) s: $out"
    echo "$out"
}

install_tools
mkdir -p "$HOME_DIR"
exec 9>"$HOME_DIR/.lock"
flock 9
build_bases
build_images

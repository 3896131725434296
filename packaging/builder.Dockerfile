# syntax=docker/dockerfile:1
# The builder image: what the operator's build Job runs to put an app's requirements on the
# runtime image (`buildah bud` of a Dockerfile with no RUN step, then `buildah push`; see
# cloud/src/aerogrid_cloud/render/build.py). A stand-in for the public quay.io/buildah/stable
# for the test bed (tests/support/images.py), and a smaller one: Debian's buildah without
# recommends (no fuse-overlayfs, no runc/crun: with the vfs driver and no RUN step buildah
# neither mounts an overlay nor runs a container).
#
#   docker build -f packaging/builder.Dockerfile -t aerogrid-builder:<version> .
#
# Nothing from the build context is copied (.dockerignore sends only dist/ and packaging/).
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE}
# netavark is named only to settle buildah's "container-network-stack" dependency (the
# small of its two providers); ca-certificates: pulls and pushes to TLS registries.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      buildah netavark ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
      /usr/share/man/*
# Storage: vfs (plain directories: no overlay mount, no fuse device, no privilege) under
# /var/lib/containers, which the Job mounts as an emptyDir.
# Policy: images come from and go to registries only (the docker transport) and buildah's
# own storage; any other transport (dir:, docker-daemon:, oci-archive: ...) is refused.
# Registries: no short names (the operator always gives a full reference, and an
# unqualified FROM must not be resolved against docker.io by surprise); plain-HTTP registries
# are allowed per push with --tls-verify=false, not here.
RUN printf '%s\n' \
      '[storage]' \
      'driver = "vfs"' \
      'graphroot = "/var/lib/containers/storage"' \
      'runroot = "/run/containers/storage"' \
      > /etc/containers/storage.conf \
 && printf '%s\n' \
      '{' \
      '  "default": [{"type": "reject"}],' \
      '  "transports": {' \
      '    "docker": {"": [{"type": "insecureAcceptAnything"}]},' \
      '    "containers-storage": {"": [{"type": "insecureAcceptAnything"}]}' \
      '  }' \
      '}' \
      > /etc/containers/policy.json \
 && printf '%s\n' \
      'unqualified-search-registries = []' \
      'short-name-mode = "enforcing"' \
      > /etc/containers/registries.conf \
 && rm -rf /etc/containers/registries.conf.d \
 && buildah --version
# chroot isolation: buildah never needs runc (there is none) nor user namespaces for a
# Dockerfile without RUN; the Job sets the same, this is for running the image by hand.
ENV BUILDAH_ISOLATION=chroot \
    STORAGE_DRIVER=vfs
WORKDIR /workspace
ENTRYPOINT ["buildah"]
CMD ["--help"]

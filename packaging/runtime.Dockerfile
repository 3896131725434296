# syntax=docker/dockerfile:1
# The runtime image: what an App's pod runs (`aerogrid run /app/app.py`), and the base the
# operator's build Job puts an app's requirements on (FROM this image, USER 0, pip install,
# USER 10001). Only the `aerogrid` distribution and its locked dependencies are inside: no
# devkit, no cloud libraries, no compilers.
#
#   make dist                                   # dist/aerogrid-<version>-py3-none-any.whl
#   docker build -f packaging/runtime.Dockerfile -t aerogrid-runtime:<version> .
#
# The build context is the checkout (see .dockerignore: only dist/ and packaging/ are sent).
# The base is a build argument whose default is the public image; users build from that one.
# The test bed cannot pull it (no registry is reachable there), so scripts/build_images.sh
# (`make images`) passes a stand-in made from Debian's own packages (a debootstrap'd bookworm
# with Debian's python3.11, labelled org.aerogrid.stand-in-for): --build-arg PYTHON_IMAGE=...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS install
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/aerogrid
COPY packaging/requirements/runtime.txt /tmp/requirements.txt
# Third-party packages exactly as uv.lock pins them, hashes checked.
RUN /opt/aerogrid/bin/pip install --require-hashes --only-binary=:all: -r /tmp/requirements.txt
# Test suites that packages ship (pip's vendored colorama has one) stay out of the image.
COPY dist/aerogrid-*.whl /tmp/wheels/
RUN /opt/aerogrid/bin/pip install --no-deps /tmp/wheels/aerogrid-*.whl \
 && /opt/aerogrid/bin/python -m aerogrid --version \
 && find /opt/aerogrid -depth -type d \( -name tests -o -name test \) -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
# The same uid the operator's pods run as (render.APP_UID), whatever the image says.
RUN groupadd --system --gid 10001 aerogrid \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin aerogrid \
 && mkdir -p /app && chown 10001:10001 /app
COPY --from=install /opt/aerogrid /opt/aerogrid
ENV PATH=/opt/aerogrid/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER 10001:10001
# 50051: native gRPC. 50052: Connect / gRPC-Web, /healthz, /readyz, /metrics.
EXPOSE 50051 50052
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:50052/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["aerogrid", "run"]
CMD ["/app/app.py", "--host", "0.0.0.0", "--port", "50051", "--http-port", "50052"]

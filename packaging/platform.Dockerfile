# syntax=docker/dockerfile:1
# The platform image: the operator (`python -m aerogrid_cloud.operator`) and the catalog
# (`python -m aerogrid_cloud.catalog`); the platform's Deployments pick the module
# (cloud/src/aerogrid_cloud/render.py). It holds the `aerogrid` and `aerogrid-cloud`
# distributions and their locked dependencies, and neither the devkit nor a compiler.
#
#   make dist
#   docker build -f packaging/platform.Dockerfile -t aerogrid-platform:<version> .
# The base is a build argument whose default is the public image; users build from that one.
# The test bed cannot pull it (no registry is reachable there), so scripts/build_images.sh
# (`make images`) passes a stand-in made from Debian's own packages (a debootstrap'd bookworm
# with Debian's python3.11, labelled org.aerogrid.stand-in-for): --build-arg PYTHON_IMAGE=...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS install
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/aerogrid
COPY packaging/requirements/platform.txt /tmp/requirements.txt
RUN /opt/aerogrid/bin/pip install --require-hashes --only-binary=:all: -r /tmp/requirements.txt
# Test suites that packages ship (pip's vendored colorama has one) stay out of the image.
COPY dist/aerogrid-*.whl dist/aerogrid_cloud-*.whl /tmp/wheels/
RUN /opt/aerogrid/bin/pip install --no-deps /tmp/wheels/*.whl \
 && /opt/aerogrid/bin/python -c "import aerogrid_cloud.operator, aerogrid_cloud.catalog" \
 && find /opt/aerogrid -depth -type d \( -name tests -o -name test \) -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 aerogrid \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin aerogrid
COPY --from=install /opt/aerogrid /opt/aerogrid
ENV PATH=/opt/aerogrid/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
# 8080: kopf's liveness endpoint (operator --liveness); the catalog serves gRPC and Connect
# on the ports its Deployment passes.
EXPOSE 8080 50051 50052
ENTRYPOINT ["python", "-m"]
CMD ["aerogrid_cloud.operator"]

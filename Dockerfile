# syntax=docker/dockerfile:1
# pysozu: the proxy (`pysozu start`) and the ingress controller (`pysozu-ingress`) in one image.
#
# Build (no arguments needed):
#   docker build -t pysozu .
# The version label is PYSOZU_VERSION below, which the build checks against pyproject.toml.
# A release build also pins the base by digest (`docker buildx imagetools inspect
# python:3.11.14-slim-bookworm` prints it) and records the commit:
#   docker build -t registry.example.com/pysozu:0.1.0 \
#     --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> \
#     --build-arg VCS_REF="$(git rev-parse HEAD)" .
# Run the proxy with the built-in config (deploy/pysozu.toml), root filesystem read-only:
#   docker run --read-only --tmpfs /tmp -v pysozu-run:/run/pysozu -p 8080:8080 -p 8443:8443 \
#     -p 9090:9090 pysozu
# or with your own: add -v "$PWD/config.toml:/etc/pysozu/config.toml:ro". Stop with
# `docker stop -t 35` to give the soft stop its 30 s drain. The ingress controller:
#   docker run --no-healthcheck ... pysozu pysozu-ingress --command-socket ...

# Pinned base; a release build pins it by digest too (see above).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
# The image's version label: pyproject.toml's version (a bump changes both; the build fails
# when they disagree, so a forgotten one cannot ship a wrong label).
ARG PYSOZU_VERSION=0.1.0

FROM ${PYTHON_IMAGE} AS build
ARG PYSOZU_VERSION
ENV VIRTUAL_ENV=/opt/pysozu \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md setup.py build_backend.py ./
COPY dataplane ./dataplane
COPY operator ./operator
# The image's version label must be the version pip installs. (-P: ./operator must not
# shadow the standard library's operator module.)
RUN python -P -c 'import sys, tomllib; v = tomllib.load(open("pyproject.toml", "rb"))["project"]["version"]; sys.exit(None if v == sys.argv[1] else f"PYSOZU_VERSION={sys.argv[1]!r} (the Dockerfile default or --build-arg) but pyproject.toml says {v!r}")' "${PYSOZU_VERSION}"
# The HTTP/1.1 request path, metrics and access log are compiled by mypyc (PYSOZU_COMPILE=1,
# setup.py): a C compiler for this stage only. And Debian's tini (not PyPI's unrelated
# "tini"), which the runtime stage copies, so that it needs no apt of its own. Versions are
# the base's Debian release's (pinning them would break the build at each security update).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install --yes --no-install-recommends gcc libc6-dev tini \
 && rm -rf /var/lib/apt/lists/*
# The kubernetes client's asyncio copy (kubernetes/aio, about 70 MB installed) goes: neither
# pysozu-ingress (kubernetes.client) nor kopf (kubernetes_asyncio, a separate project) uses it.
RUN python -P -m venv "${VIRTUAL_ENV}" \
 && PYSOZU_COMPILE=1 "${VIRTUAL_ENV}/bin/pip" install ".[operator]" \
 && "${VIRTUAL_ENV}/bin/pip" uninstall --yes pip setuptools \
 && rm -rf "${VIRTUAL_ENV}"/lib/python3*/site-packages/kubernetes/aio

FROM ${PYTHON_IMAGE} AS runtime
ARG PYSOZU_VERSION
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="pysozu" \
      org.opencontainers.image.description="Hot-reconfigurable HTTP reverse proxy on sozu's design, and its Kubernetes ingress controller" \
      org.opencontainers.image.version="${PYSOZU_VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.source="https://github.com/pysozu/pysozu" \
      org.opencontainers.image.url="https://github.com/pysozu/pysozu" \
      org.opencontainers.image.documentation="https://github.com/pysozu/pysozu#readme" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="pysozu"
# tini is PID 1: with -g it forwards SIGTERM to the whole process group (main and its
# workers) and reaps exited workers. Its static build: nothing to install beside it.
COPY --from=build /usr/bin/tini-static /usr/bin/tini
RUN groupadd --system --gid 10001 pysozu \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin pysozu \
 && install --directory --owner=10001 --group=10001 --mode=0750 /run/pysozu
COPY --from=build /opt/pysozu /opt/pysozu
COPY deploy/pysozu.toml /etc/pysozu/config.toml
ENV PATH=/opt/pysozu/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The command socket and runtime state: the only place the processes write (with /tmp).
VOLUME ["/run/pysozu"]
WORKDIR /run/pysozu
USER 10001:10001
# HTTP and HTTPS listeners, Prometheus metrics, ingress controller health and its admission
# webhook (HTTPS, when enabled).
EXPOSE 8080/tcp 8443/tcp 8444/tcp 9090/tcp 10254/tcp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["pysozu", "-c", "/etc/pysozu/config.toml", "status"]
ENTRYPOINT ["/usr/bin/tini", "-g", "--"]
CMD ["pysozu", "start", "-c", "/etc/pysozu/config.toml"]

# hodei's control plane: `hodei scheduler`, `hodei serve`, `hodei flower`, `hodei db upgrade`
# and the CLI. (Worker containers use workers/Dockerfile.)
#   docker build -t hodei:0.1.0 .                                         # Docker provider
#   docker build --build-arg HODEI_EXTRAS=docker,kubernetes -t hodei:0.1.0-k8s .
# BASE_IMAGE: any Python >= 3.11 image with venv (docs/operations.md builds one offline).
ARG BASE_IMAGE=python:3.12-slim

# The dependencies alone, in a venv: this stage changes only with pyproject.toml and
# the extras, so a change to hodei's code rebuilds neither it nor its copy below.
FROM ${BASE_IMAGE} AS deps
ARG HODEI_EXTRAS=docker
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml /src/
RUN python3 -c "import sys, tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; \
extras = [e for e in sys.argv[1].split(',') if e]; \
print('\n'.join(p['dependencies'] + [d for e in extras for d in p['optional-dependencies'][e]]))" \
    "${HODEI_EXTRAS}" > /src/requirements.txt \
    && python3 -m venv /opt/hodei \
    && /opt/hodei/bin/pip install -r /src/requirements.txt

# hodei itself, as a wheel (no compiler cache and no source tree reach the runtime image).
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hodei ./hodei
COPY migrations ./migrations
RUN python3 -m pip wheel --no-deps --wheel-dir /dist .

FROM ${BASE_IMAGE}
RUN useradd --create-home --uid 10001 --user-group hodei \
    && mkdir -p /var/lib/hodei \
    && chown hodei:hodei /var/lib/hodei
COPY --from=deps /opt/hodei /opt/hodei
# Only hodei's own wheel (~0.2 MB) passes through a layer; the dependencies came above.
COPY --from=build /dist /tmp/dist
RUN /opt/hodei/bin/pip install --no-cache-dir --no-deps /tmp/dist/*.whl \
    && rm -rf /tmp/dist
ENV PATH=/opt/hodei/bin:$PATH \
    HODEI_HOME=/var/lib/hodei \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /var/lib/hodei
USER hodei
# 9464: hodei serve (metrics, health); 5555: hodei flower
EXPOSE 9464 5555
CMD ["hodei", "--help"]

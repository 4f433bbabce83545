# hodei's control plane: `hodei scheduler`, `hodei serve`, `hodei flower`, `hodei db upgrade`
# and the CLI. (Worker containers use workers/Dockerfile.)
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hodei ./hodei
COPY migrations ./migrations
# Wheels in a build stage: the runtime image gets no compiler cache and no source tree.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[docker]"

FROM python:3.12-slim
RUN useradd --create-home --uid 10001 --user-group hodei \
    && mkdir -p /var/lib/hodei \
    && chown hodei:hodei /var/lib/hodei
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "hodei[docker]" \
    && rm -rf /wheels
ENV HODEI_HOME=/var/lib/hodei \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /var/lib/hodei
USER hodei
# 9464: hodei serve (metrics, health); 5555: hodei flower
EXPOSE 9464 5555
CMD ["hodei", "--help"]

# syntax=docker/dockerfile:1
# The ActiveDataFlow image: the operator (`adf operator`) and the runner (`adf heartbeat`, run by the CronJobs).
#   docker build -t ghcr.io/activedataflow/activedataflow:0.1.0 .
# Flows with `python:` transform steps ship their code in an image built FROM this one.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core/ core/
COPY operator/ operator/
COPY runner/ runner/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 adf \
 && useradd --system --uid 10001 --gid adf --home-dir /home/adf --create-home --shell /usr/sbin/nologin adf
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/*.whl
# Numeric, so the kubelet can enforce runAsNonRoot.
USER 10001:10001
WORKDIR /home/adf
ENTRYPOINT ["adf"]
CMD ["--help"]

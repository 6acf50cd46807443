# The ActiveDataFlow image: the operator (`adf operator`) and the runner (`adf heartbeat`, run by the CronJobs).
#   docker build -t ghcr.io/activedataflow/activedataflow:0.1.0 .
# Flows with `python:` transform steps ship their code in an image built FROM this one: the project lives in
# the virtualenv /opt/adf (first on PATH), which has no pip; as USER root,
#   RUN python3 -m ensurepip && python3 -m pip install --no-cache-dir mycompany-flows
#
# BASE is any image with python3 (>= 3.11, at /usr/local/bin or /usr/bin) and its venv module. Without a
# registry, scripts/build-image builds FROM a debootstrapped Debian (--build-arg BASE=adf.local/debian-python:bookworm).
# Uses no BuildKit-only feature, so the classic builder builds it too.
ARG BASE=python:3.11-slim

# The dependencies, in a layer of their own: a change to the sources reinstalls only the project.
FROM ${BASE} AS deps
# Where pip finds packages (PyPI unless set); scripts/build-image points them at a wheelhouse on 127.0.0.1.
ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# binutils' strip: the wheels' extension modules carry some 20 MB of symbols. Only in the build stages.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils >/dev/null \
 && rm -rf /var/lib/apt/lists/*
# pip lives in a venv of its own (/opt/pip), so the image's /opt/adf has neither pip nor setuptools.
RUN python3 -m venv /opt/pip \
 && python3 -m venv --without-pip /opt/adf
WORKDIR /src
COPY pyproject.toml ./
# kubernetes/aio (kubernetes' asyncio client, 68 MB) is never imported: kopf and the operator use the sync one.
# Bytecode (start-up: `import kopf` 1.0 s instead of 2.4 s) for all but what is imported rarely if ever:
# kubernetes' generated API and model modules (imported lazily, a few at most), pygments' lexers, sqlalchemy.testing.
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > requirements.txt \
 && /opt/pip/bin/pip --python /opt/adf/bin/python3 install --no-compile -r requirements.txt \
 && site="$(/opt/adf/bin/python3 -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
 && rm -rf "$site/kubernetes/aio" \
 && find /opt/adf -name '*.so*' -type f -exec strip --strip-unneeded {} + \
 && /opt/adf/bin/python3 -m compileall -q -j 0 -x '/kubernetes/client/(api|models)/|/pygments/lexers/|/sqlalchemy/testing/' /opt/adf/lib \
 && echo /opt/adf/app > "$site/adf-app.pth"

# The project itself, in /opt/adf/app (on the venv's sys.path through adf-app.pth): a small layer.
FROM deps AS build
# (pip builds the project with setuptools from there too)
ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
COPY README.md ./
COPY cli/ cli/
COPY core/ core/
COPY operator/ operator/
COPY runner/ runner/
COPY ui/ ui/
# (from /: with --python, pip runs with its working directory on sys.path, where operator/ shadows the stdlib's)
RUN cd / && /opt/pip/bin/pip --python /opt/adf/bin/python3 install --no-deps --no-compile --target /opt/adf/app /src \
 && /opt/adf/bin/python3 -m compileall -q /opt/adf/app \
 && /opt/adf/app/bin/adf --version

FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/adf/app/bin:/opt/adf/bin:$PATH
# Written into passwd/group directly: not every base has useradd.
RUN echo 'adf:x:10001:' >> /etc/group \
 && echo 'adf:x:10001:10001:ActiveDataFlow:/home/adf:/usr/sbin/nologin' >> /etc/passwd \
 && mkdir -p /home/adf && chown 10001:10001 /home/adf && chmod 0750 /home/adf
COPY --from=deps /opt/adf /opt/adf
COPY --from=build /opt/adf/app /opt/adf/app
# Numeric, so the kubelet can enforce runAsNonRoot.
USER 10001:10001
WORKDIR /home/adf
ENTRYPOINT ["adf"]
CMD ["--help"]

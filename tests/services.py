"""Real PostgreSQL, Redis and MariaDB servers for the tests, started on loopback.

Each server is a private throwaway instance (fresh data dir, free port) started
once per test session from Debian's binaries; ``.ci/run`` installs them. Set
``ADF_TEST_PG_URL`` / ``ADF_TEST_REDIS_URL`` / ``ADF_TEST_MYSQL_URL`` to use an
existing server instead. When a binary is missing the tests that need it skip
locally but fail under CI (``CI=true``), so a missing install step can never
pass as green.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_PASSWORD = "adf-test-pw"
MYSQL_PASSWORD = PG_PASSWORD  # MariaDB's root (one test password: the secret scan looks for each)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0, *, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


def missing(what: str) -> None:
    unavailable(f"{what} is not installed (run .ci/run or apt-get install it)")


def unavailable(msg: str) -> None:
    """Skip a test whose precondition this machine lacks; under CI (``CI=true``) fail it instead,
    so a CI run never passes by skipping."""
    if os.environ.get("CI"):
        pytest.fail(f"{msg} (CI=true: this test must run)")
    pytest.skip(msg)


def wait_accepting(bindir: Path, host: str, port: int, timeout: float = 30.0) -> None:
    """Until PostgreSQL accepts connections: it listens before it is ready ("the database system is
    starting up"), and a test's first connection would fail now and then."""
    deadline = time.monotonic() + timeout
    while subprocess.run([str(bindir / "pg_isready"), "-q", "-h", host, "-p", str(port)]).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL on {host}:{port} does not accept connections after {timeout}s")
        time.sleep(0.05)


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextlib.contextmanager
def postgres_server(*, host: str = "127.0.0.1", allow: str | None = None) -> Iterator[str]:
    """Yields a SQLAlchemy URL (postgresql+psycopg://postgres:***@HOST:PORT/postgres).

    ``host`` is the one address it listens on; ``allow`` a further client CIDR that may log in
    with the password (Pods on the test node's bridge connect from their own addresses).
    """
    if host == "127.0.0.1" and (url := os.environ.get("ADF_TEST_PG_URL")):
        yield url
        return
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        missing("PostgreSQL (Debian package postgresql)")
    bindir = Path(bins[-1]).parent
    tmp = Path(tempfile.mkdtemp(prefix="adf-pg-"))
    data = tmp / "data"
    pwfile = tmp / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile),
                      "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync"]),
        check=True, capture_output=True,
    )
    if host != "127.0.0.1" or allow:
        with open(data / "pg_hba.conf", "a") as hba:
            for cidr in (f"{host}/32", allow):
                if cidr:
                    hba.write(f"host all all {cidr} scram-sha-256\n")
    proc = subprocess.Popen(
        _as_postgres([str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(tmp),
                      "-c", f"listen_addresses={host}", "-c", "fsync=off", "-c", "synchronous_commit=off",
                      "-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=256MB"]),
        stdout=subprocess.DEVNULL, stderr=open(tmp / "log", "wb"),  # noqa: SIM115
    )
    try:
        wait_port(port, host=host)
        wait_accepting(bindir, host, port)
        yield f"postgresql+psycopg://postgres:{PG_PASSWORD}@{host}:{port}/postgres"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Yields redis://127.0.0.1:PORT/0."""
    if url := os.environ.get("ADF_TEST_REDIS_URL"):
        yield url
        return
    exe = shutil.which("redis-server")
    if not exe:
        missing("Redis (Debian package redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def mysql_server() -> Iterator[str]:
    """Yields mysql+pymysql://root:***@127.0.0.1:PORT/adf (MariaDB from Debian)."""
    if url := os.environ.get("ADF_TEST_MYSQL_URL"):
        yield url
        return
    mariadbd = shutil.which("mariadbd") or shutil.which("mysqld") or (
        "/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else None)
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if not mariadbd or not install:
        missing("MariaDB (Debian package mariadb-server)")
    tmp = Path(tempfile.mkdtemp(prefix="adf-mysql-"))
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run([install, f"--datadir={tmp / 'data'}", "--auth-root-authentication-method=normal",
                    "--skip-test-db", *user], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(
        [mariadbd, "--no-defaults", f"--datadir={tmp / 'data'}", f"--port={port}", "--bind-address=127.0.0.1",
         f"--socket={tmp / 'sock'}", f"--pid-file={tmp / 'pid'}", "--skip-grant-tables=0",
         "--innodb-flush-log-at-trx-commit=0", *user],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "log", "wb"),  # noqa: SIM115
    )
    try:
        wait_port(port, 60)
        import pymysql

        conn = pymysql.connect(unix_socket=str(tmp / "sock"), user="root")
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS adf")
            cur.execute(f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{MYSQL_PASSWORD}'")
            cur.execute(f"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '{MYSQL_PASSWORD}'")
            cur.execute("GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
        conn.commit()
        conn.close()
        yield f"mysql+pymysql://root:{MYSQL_PASSWORD}@127.0.0.1:{port}/adf"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        shutil.rmtree(tmp, ignore_errors=True)

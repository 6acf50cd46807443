"""Choosing and building the transport under RestKube, without an API server (tests/k8s/test_incluster.py has one)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from activedataflow.errors import UserError
from activedataflow.kube.client import (
    ServiceAccountTransport,
    join_host_port,
    load_transport,
    request_url,
)

from tests.secrets_scan import register_secret

TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-part.signature"
register_secret(TOKEN)


@pytest.fixture
def sa_dir(tmp_path: Path) -> Path:
    """A service-account directory as the kubelet mounts it (the CA is only parsed on connecting)."""
    root = tmp_path / "serviceaccount"
    root.mkdir()
    (root / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nnot parsed before a connection\n")
    (root / "token").write_text(TOKEN + "\n")
    return root


def in_pod(root: Path, host: str = "10.96.0.1", port: str = "443") -> dict[str, str]:
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port, "ADF_SERVICEACCOUNT_DIR": str(root)}


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("10.96.0.1", "10.96.0.1:443"),
        ("kubernetes.default.svc", "kubernetes.default.svc:443"),
        ("fd00:10:96::1", "[fd00:10:96::1]:443"),
        ("fe80::1%eth0", "[fe80::1%eth0]:443"),
        ("[fd00::1]", "[fd00::1]:443"),
    ],
)
def test_host_and_port_join_with_ipv6_in_brackets(host: str, expected: str) -> None:
    assert join_host_port(host, 443) == expected


def test_an_ipv6_service_host_gives_a_bracketed_server_url(sa_dir: Path) -> None:
    transport = ServiceAccountTransport.from_env(in_pod(sa_dir, host="fd00:10:96::1"))
    assert transport is not None
    assert transport.server == "https://[fd00:10:96::1]:443"
    assert urlsplit(transport.server).hostname == "fd00:10:96::1"


def test_query_parameters_are_percent_encoded() -> None:
    url = request_url("https://k:6443/", "/api/v1/namespaces/shop/configmaps",
                      [("labelSelector", "app=a b,activedataflow.io/flow=x&y"), ("force", "true")])
    parts = urlsplit(url)
    assert (parts.path, " " in parts.query, "&y" in parts.query) == ("/api/v1/namespaces/shop/configmaps", False, False)
    assert parse_qsl(parts.query) == [("labelSelector", "app=a b,activedataflow.io/flow=x&y"), ("force", "true")]
    assert request_url("https://k:6443", "/version") == "https://k:6443/version"


def test_in_a_pod_the_service_account_is_used(sa_dir: Path) -> None:
    transport = load_transport(env=in_pod(sa_dir))
    assert isinstance(transport, ServiceAccountTransport)
    assert transport.server == "https://10.96.0.1:443"
    assert transport.token() == TOKEN  # the trailing newline is not part of it


@pytest.mark.parametrize("missing", ["token", "ca.crt"])
def test_without_the_service_account_files_the_kubeconfig_is_used(
    sa_dir: Path, tmp_path: Path, missing: str
) -> None:
    (sa_dir / missing).unlink()
    env = {**in_pod(sa_dir), "KUBECONFIG": str(tmp_path / "nowhere")}
    assert ServiceAccountTransport.from_env(env) is None
    with pytest.raises(UserError, match=r"not in a cluster and no kubeconfig at .*nowhere"):
        load_transport(env=env)


def test_an_empty_token_file_is_not_a_service_account(sa_dir: Path) -> None:
    (sa_dir / "token").write_text("\n")
    assert ServiceAccountTransport.from_env(in_pod(sa_dir)) is None


def test_without_the_service_host_there_is_no_service_account(sa_dir: Path) -> None:
    assert ServiceAccountTransport.from_env({"ADF_SERVICEACCOUNT_DIR": str(sa_dir)}) is None
    assert ServiceAccountTransport.from_env({**in_pod(sa_dir), "KUBERNETES_SERVICE_PORT": ""}) is None


def test_the_token_is_re_read_once_older_than_a_minute(sa_dir: Path) -> None:
    now = [1000.0]
    transport = ServiceAccountTransport("10.96.0.1", 443, root=sa_dir, clock=lambda: now[0])
    (sa_dir / "token").write_text("rotated")
    now[0] += 59
    assert transport.token() == TOKEN
    now[0] += 1
    assert transport.token() == "rotated"


def test_a_vanished_token_file_keeps_the_last_token(sa_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    transport = ServiceAccountTransport("10.96.0.1", 443, root=sa_dir, clock=lambda: now[0])
    (sa_dir / "token").unlink()
    now[0] += 61
    assert transport.token() == TOKEN
    assert "could not re-read the service-account token" in caplog.text
    assert TOKEN not in caplog.text


def test_the_token_never_shows_in_a_repr(sa_dir: Path) -> None:
    from activedataflow.kube.client import RestKube

    transport = ServiceAccountTransport("10.96.0.1", 443, root=sa_dir)
    assert "10.96.0.1" in repr(RestKube(transport))
    assert TOKEN not in repr(RestKube(transport)) + repr(transport) + str(vars(RestKube(transport)))

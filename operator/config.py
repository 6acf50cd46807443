"""The operator's configuration (its environment, as the Helm chart sets it) and the :class:`Context`
its handlers share: that configuration, the Kubernetes API, the store, and what the operator remembers
between handler calls (the namespaces' store Secrets)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import ConfigError
from ..kube.client import KubeApi
from ..schedule import DEFAULT_HEARTBEAT_SCHEDULE, HEARTBEAT_SCHEDULE_ENV, utcnow
from ..store.base import Store
from .cronjob import RunnerSettings

__all__ = ["CONFLICT_RETRIES", "DEFAULT_RUNNER_IMAGE", "SECRET_CACHE_SECONDS", "Context", "OperatorConfig"]

DEFAULT_RUNNER_IMAGE = "activedataflow:0.1.0"
CONFLICT_RETRIES = 8
SECRET_CACHE_SECONDS = 300.0  # how long a store Secret read or written is trusted without a GET


@dataclass(frozen=True)
class OperatorConfig:
    """The operator's settings (from its environment; the Helm chart sets them)."""

    store_url: str
    runner: RunnerSettings

    @classmethod
    def from_env(cls, *, store_url: str | None = None, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """``ADF_STORE_URL``, ``ADF_RUNNER_IMAGE``,
        ``ADF_RUNNER_SERVICE_ACCOUNT``, ``ADF_RUNNER_IMAGE_PULL_POLICY``, ``ADF_RUNNER_RESOURCES``,
        ``ADF_RUNNER_POD_SECURITY_CONTEXT``, ``ADF_RUNNER_SECURITY_CONTEXT`` (JSON objects),
        ``ADF_HEARTBEAT_SCHEDULE``."""
        from ..schedule import check_cron
        from ..store import store_url as effective_store_url

        env = os.environ if env is None else env

        def json_object(var: str) -> dict[str, Any] | None:
            raw = env.get(var)
            if not raw:
                return None
            try:
                value = json.loads(raw)
            except ValueError as err:
                raise ConfigError(f"not JSON: {err}", field=var) from None
            if not isinstance(value, dict):
                raise ConfigError("expected a JSON object", field=var)
            return value

        resources = json_object("ADF_RUNNER_RESOURCES")
        security = {
            key: value
            for key, var in (("pod_security_context", "ADF_RUNNER_POD_SECURITY_CONTEXT"),
                             ("security_context", "ADF_RUNNER_SECURITY_CONTEXT"))
            if (value := json_object(var)) is not None
        }
        schedule = env.get(HEARTBEAT_SCHEDULE_ENV) or DEFAULT_HEARTBEAT_SCHEDULE
        try:
            check_cron(schedule)
        except ValueError as err:
            raise ConfigError(str(err), field=HEARTBEAT_SCHEDULE_ENV) from None
        return cls(
            store_url=store_url or env.get("ADF_STORE_URL") or effective_store_url(None),
            runner=RunnerSettings(
                image=env.get("ADF_RUNNER_IMAGE") or DEFAULT_RUNNER_IMAGE,
                service_account=env.get("ADF_RUNNER_SERVICE_ACCOUNT") or None,
                heartbeat_schedule=schedule,
                image_pull_policy=env.get("ADF_RUNNER_IMAGE_PULL_POLICY") or None,
                resources=resources,
                **security,
            ),
        )


class Context:
    """What the handlers share: configuration, the Kubernetes API and the store.

    The store URL is checked at construction (ConfigError for a malformed one);
    connecting and migrating happen on first use, so an unreachable store is
    retried per resource (Ready=False StorageUnavailable) instead of crashing.
    """

    def __init__(
        self,
        config: OperatorConfig,
        kube: KubeApi,
        *,
        open_store: Callable[..., Store] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if open_store is None:
            from ..store import open_store as default_open_store

            open_store = default_open_store
        self.config = config
        self.kube = kube
        self.clock = clock
        self._store = open_store(config.store_url, migrate=False)
        self._migrated = False
        self._lock = threading.Lock()
        self._secret_locks: dict[str, threading.Lock] = {}
        self._record_locks: dict[tuple[str, str], threading.Lock] = {}
        self._secrets: dict[str, tuple[float, dict[str, Any]]] = {}

    def secret_lock(self, namespace: str) -> threading.Lock:
        """Serialises this operator's writes of one namespace's store Secret (its handlers run in threads)."""
        with self._lock:
            return self._secret_locks.setdefault(namespace, threading.Lock())

    def record_lock(self, namespace: str, name: str) -> threading.Lock:
        """Serialises the writes of one flow record's enabled state: the registration of a DataFlow and
        the disabling after the deletion of an earlier DataFlow of that name run in different threads
        (kopf handles each object, by uid, on its own)."""
        with self._lock:
            return self._record_locks.setdefault((namespace, name), threading.Lock())

    def known_secret(self, namespace: str) -> dict[str, Any] | None:
        """The namespace's store Secret as this operator last read or wrote it, if not older than
        ``SECRET_CACHE_SECONDS`` (a Secret changed by someone else is seen again after that)."""
        entry = self._secrets.get(namespace)
        if entry is None or time.monotonic() - entry[0] > SECRET_CACHE_SECONDS:
            return None
        return entry[1]

    def forget_secrets(self) -> None:
        """Trust no remembered Secret: the next reconcile of each namespace reads its Secret again."""
        self._secrets.clear()

    def remember_secret(self, namespace: str, secret: dict[str, Any] | None) -> None:
        if secret is None:
            self._secrets.pop(namespace, None)
        else:
            self._secrets[namespace] = (time.monotonic(), secret)

    def store(self) -> Store:
        if not self._migrated:
            self._store.migrate()  # idempotent; StoreUnavailable naming the address if unreachable
            self._migrated = True
        return self._store

    def close(self) -> None:
        self._store.close()


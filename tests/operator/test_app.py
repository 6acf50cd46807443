"""The operator's kopf settings and handler registrations: what keeps its memory flat in the flow count."""

from __future__ import annotations

import kopf
from activedataflow.kube.client import LIST_PAGE
from activedataflow.operator import main
from activedataflow.operator.app import IDLE_WORKER_SECONDS, StatusDiffBaseStorage, configure_settings


def test_kopf_lists_in_pages_and_lets_idle_workers_go_soon() -> None:
    settings = kopf.OperatorSettings()
    configure_settings(settings)
    assert settings.watching.chunk_size == LIST_PAGE
    assert settings.queueing.idle_timeout == IDLE_WORKER_SECONDS < 1
    assert isinstance(settings.persistence.diffbase_storage, StatusDiffBaseStorage)
    assert settings.posting.enabled is False  # Events come from the handlers alone


def test_no_resume_handler_but_run_now_s_which_only_objects_with_the_annotation_match() -> None:
    """A restart resumes DataFlows in the resync thread's first pass, a page at a time; a kopf resume handler
    would hold every listed DataFlow in a worker until it ran."""
    handlers = main.registry._changing.get_all_handlers()
    resumes = [h for h in handlers if h.initial]
    assert [h.id for h in resumes] == ["run_now"]
    assert resumes[0].annotations == {"activedataflow.io/run-now": kopf.PRESENT}
    assert not any(h.id.startswith("reconcile") and h.initial for h in handlers)

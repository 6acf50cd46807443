"""Every test that starts a server carries its marker (tests/conftest.py): marked at collection by the server
fixtures it needs, failed under CI when it got one through request.getfixturevalue without the marker."""

from __future__ import annotations

import pytest

CONFTEST = '''
import pytest

from tests.conftest import _servers_are_marked, pytest_collection_modifyitems  # noqa: F401  the hooks under test


@pytest.fixture(scope="session")
def pg_server():
    return "postgresql://stand-in"  # the name is what counts: nothing is started


@pytest.fixture
def pg_url(pg_server):
    return pg_server


@pytest.fixture(params=["sqlite", "postgresql"])
def unmarked(request):
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else "sqlite://"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def marked(request):
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else "sqlite://"
'''

TESTS = '''
def test_static(pg_url):
    pass


def test_dynamic_unmarked(unmarked):
    pass


def test_dynamic_marked(marked):
    pass
'''


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=TESTS)
    pytester.makeini("[pytest]\nmarkers =\n    postgres: a real PostgreSQL\n")
    return pytester


def test_a_test_that_needs_a_server_fixture_is_marked_at_collection(inner: pytest.Pytester) -> None:
    result = inner.runpytest_inprocess("-m", "not postgres", "-q", "-p", "no:cacheprovider", "--collect-only")
    collected = {line.split("::")[1] for line in result.outlines if "::" in line}
    assert collected == {"test_dynamic_unmarked[sqlite]", "test_dynamic_unmarked[postgresql]",
                         "test_dynamic_marked[sqlite]"}


def test_a_server_got_at_run_time_without_its_marker_fails_under_ci(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = inner.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    errors = {line.split("::")[1].split()[0] for line in result.outlines if line.startswith("ERROR")}
    assert errors == {"test_dynamic_unmarked[postgresql]"}, result.stdout.str()
    assert "pg_server (marker postgres) through request.getfixturevalue" in result.stdout.str()
    assert result.parseoutcomes()["passed"] == 5


def test_outside_ci_it_warns(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = inner.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert (outcomes["passed"], outcomes.get("errors", 0)) == (5, 0)
    assert "test_dynamic_unmarked[postgresql] started pg_server" in result.stdout.str()

"""The suite-wide secret scan (tests/secrets_scan.py) catches a secret wherever a test's output shows it."""

from __future__ import annotations

import pytest

from tests.secrets_scan import allowed

LEAKY_TESTS = '''
import logging
import subprocess
import sys

from activedataflow.errors import ConnectorError
from tests import services
from tests.cli_helpers import adf
from tests.memkube import MemoryKube
from tests.secrets_scan import allowed, register_secret

URL = f"postgresql+psycopg://postgres:{services.PG_PASSWORD}@db:5432/shop"
register_secret("a-token-of-the-test")


def test_a_debug_log_line():
    logging.getLogger("activedataflow.runner").debug("connecting to %s", URL)


def test_an_exception_in_a_log_record():
    try:
        raise RuntimeError(f"lost {URL}")
    except RuntimeError:
        logging.getLogger("activedataflow.runner").exception("failed")


def test_an_error_message_even_if_caught():
    try:
        raise ConnectorError(f"cannot connect to {URL}")
    except ConnectorError:
        pass


def test_stdout():
    print("token a-token-of-the-test")


def test_a_subprocess_of_the_helpers():
    adf("--store", URL, "flows", "-o", "json")  # exits 2 naming the store: without the password


def test_an_event_posted_as_the_product_posts_it():  # event_body redacts the message: nothing shown
    kube = MemoryKube()
    kube.post_event({"kind": "DataFlow", "metadata": {"name": "f", "namespace": "n", "uid": "u"}},
                    type="Warning", reason="Failed", message=f"no store at {URL}")


def test_an_event():
    kube = MemoryKube()
    kube.events.append({"reason": "Failed", "message": f"no store at {URL}"})


def test_a_status():
    kube = MemoryKube()
    kube.objects[("dataflows", "n", "f")] = {"status": {"conditions": [{"message": URL}]}}


def test_shown_on_purpose():
    with allowed():
        logging.getLogger("activedataflow.runner").warning("the Secret holds %s", URL)


def test_clean():
    print("postgresql+psycopg://postgres:***@db:5432/shop")
'''


def test_every_kind_of_output_that_shows_a_secret_fails_its_test(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    with allowed():  # the inner tests' logs reach this test's handlers too
        result = pytester.runpytest_inprocess("-p", "tests.secrets_scan", "-q", "-p", "no:cacheprovider")
    capsys.readouterr()  # pytester echoes the inner report (secrets in its captured logs) to this test's stdout
    outcomes = result.parseoutcomes()
    failed = {line.split("::")[1].split()[0] for line in result.outlines if line.startswith("FAILED")}
    assert failed == {
        "test_a_debug_log_line", "test_an_exception_in_a_log_record", "test_an_error_message_even_if_caught",
        "test_stdout", "test_an_event", "test_a_status",
    }, result.stdout.str()
    assert outcomes["passed"] == 4  # the subprocess printed no password; the product's event; on purpose; clean
    assert "a secret was shown" in result.stdout.str() and "<SECRET>" in result.stdout.str()

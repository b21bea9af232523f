"""Tokens for the access tests, and a log capture proving none is ever written (A1).

Test modules bind the fixture with ``no_token_logged = access_harness.no_token_logged``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

TOKEN = "tok-user-5b1e0c7d"
ADMIN_TOKEN = "tok-admin-e94a2f60"
SECRETS = (TOKEN, ADMIN_TOKEN)


@pytest.fixture
def no_token_logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture every sbroker logger at DEBUG; after the test, no token is in any line."""
    caplog.set_level(logging.DEBUG, logger="sbroker")
    yield caplog
    formatter = logging.Formatter()
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    for record in records:
        assert_no_token(formatter.format(record))  # the message, its arguments, a traceback


def assert_no_token(text: str) -> None:
    """Fail if ``text`` contains a token."""
    for secret in SECRETS:
        assert secret not in text

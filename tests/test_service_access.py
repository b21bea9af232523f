"""Access rules without sockets: tokens, their sources, admin gating, protected mode (section 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbroker.service.access import (
    ADMIN_METHODS,
    Access,
    Tokens,
    protected_mode_error,
    resolve_tokens,
)
from sbroker.service.listen import parse_address

TOKEN = "user-secret-7f3a"
ADMIN = "admin-secret-91c2"
PLAIN_METHODS = ["ask", "ask_r", "nb_ask", "len", "names", "statistics", "config", "monitor"]


# A6: token sources, first found wins.
def test_token_file_wins_and_loses_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    tokens = resolve_tokens(
        token_file=str(path),
        environ={"SBROKER_TOKEN": "from-env"},
        config_token="from-file",
        config_admin_token=ADMIN,
    )
    assert tokens == Tokens(TOKEN, ADMIN)


def test_environment_wins_over_config() -> None:
    tokens = resolve_tokens(
        token_file=None,
        environ={"SBROKER_TOKEN": "from-env"},
        config_token="from-file",
        config_admin_token=None,
    )
    assert tokens == Tokens("from-env", None)


def test_config_token_used_last_and_empty_environment_is_unset() -> None:
    tokens = resolve_tokens(
        token_file=None, environ={"SBROKER_TOKEN": ""}, config_token=TOKEN, config_admin_token=None
    )
    assert tokens == Tokens(TOKEN, None)
    assert (
        resolve_tokens(token_file=None, environ={}, config_token=None, config_admin_token=None)
        == Tokens()
    )


@pytest.mark.parametrize("content", ["", "\n", "\r\n"])
def test_empty_token_file_refused(tmp_path: Path, content: str) -> None:
    # A6: an empty file refused
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(ValueError, match="token file .* is empty"):
        resolve_tokens(token_file=str(path), environ={}, config_token=None, config_admin_token=None)


def test_empty_configured_tokens_refused() -> None:
    with pytest.raises(ValueError, match=r"\[server\] token"):
        resolve_tokens(token_file=None, environ={}, config_token="", config_admin_token=None)
    with pytest.raises(ValueError, match=r"\[server\] admin_token"):
        resolve_tokens(token_file=None, environ={}, config_token=None, config_admin_token="")


def test_missing_token_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(OSError, match="absent"):
        resolve_tokens(token_file=str(path), environ={}, config_token=None, config_admin_token=None)


def test_tokens_repr_hides_tokens() -> None:
    assert TOKEN not in repr(Tokens(TOKEN, ADMIN))
    assert ADMIN not in repr(Tokens(TOKEN, ADMIN))


# A1: with neither token set, everything is open.
def test_no_tokens_everything_open() -> None:
    access = Access(Tokens())
    for method in [*PLAIN_METHODS, *ADMIN_METHODS]:
        assert access.check(method) is None
    assert access.hello({}) == "ok"
    assert access.hello({"token": "anything"}) == "ok"


# A1: until a valid hello every method is unauthorized.
def test_token_required_before_any_method() -> None:
    access = Access(Tokens(TOKEN))
    for method in [*PLAIN_METHODS, *ADMIN_METHODS]:
        message = access.check(method)
        assert message is not None and method in message and TOKEN not in message
    assert access.hello({"token": TOKEN}) == "ok"
    for method in [*PLAIN_METHODS, *ADMIN_METHODS]:
        assert access.check(method) is None  # no admin_token: token is enough for all


def test_token_accepted_as_bin() -> None:
    access = Access(Tokens(TOKEN))
    assert access.hello({"token": TOKEN.encode()}) == "ok"
    assert access.check("ask") is None


# A1: admin_token gates exactly change_config and reload.
def test_admin_token_gates_exactly_the_admin_methods() -> None:
    assert ADMIN_METHODS == {"change_config", "reload"}
    access = Access(Tokens(TOKEN, ADMIN))
    assert access.hello({"token": TOKEN}) == "ok"
    for method in PLAIN_METHODS:
        assert access.check(method) is None
    for method in ADMIN_METHODS:
        message = access.check(method)
        assert message is not None and "admin" in message
        assert TOKEN not in message and ADMIN not in message
    assert access.hello({"token": ADMIN}) == "ok"
    for method in [*PLAIN_METHODS, *ADMIN_METHODS]:
        assert access.check(method) is None


def test_admin_token_alone_is_enough_for_everything() -> None:
    access = Access(Tokens(TOKEN, ADMIN))
    assert access.hello({"token": ADMIN}) == "ok"
    for method in [*PLAIN_METHODS, *ADMIN_METHODS]:
        assert access.check(method) is None


def test_user_token_after_admin_keeps_admin() -> None:
    access = Access(Tokens(TOKEN, ADMIN))
    assert access.hello({"token": ADMIN}) == "ok"
    assert access.hello({"token": TOKEN}) == "ok"
    assert access.check("reload") is None


def test_only_admin_token_set_leaves_plain_methods_open() -> None:
    access = Access(Tokens(None, ADMIN))
    assert access.check("ask") is None
    assert access.check("reload") is not None
    assert access.hello({}) == "ok"  # a plain hello needs no token here
    assert access.hello({"token": "wrong"}) == "failed"
    assert access.hello({"token": ADMIN}) == "ok"
    assert access.check("reload") is None


# A1, A6: three failed hellos close; only missing or wrong tokens count.
@pytest.mark.parametrize("bad", [{}, {"token": "wrong"}, {"token": 7}, {"token": None}])
def test_three_failed_hellos_close(bad: dict[str, object]) -> None:
    access = Access(Tokens(TOKEN))
    assert access.hello(bad) == "failed"
    assert access.hello(bad) == "failed"
    assert access.hello(bad) == "close"
    assert access.check("ask") is not None


def test_failed_hello_does_not_take_back_access() -> None:
    access = Access(Tokens(TOKEN, ADMIN))
    assert access.hello({"token": ADMIN}) == "ok"
    assert access.hello({"token": "wrong"}) == "failed"
    assert access.check("reload") is None
    assert access.check("ask") is None


def test_missing_token_after_access_is_not_a_failure() -> None:
    access = Access(Tokens(TOKEN))
    assert access.hello({"token": TOKEN}) == "ok"
    for _ in range(3):
        assert access.hello({}) == "ok"
    assert access.check("ask") is None


def test_failures_before_success_still_count() -> None:
    access = Access(Tokens(TOKEN))
    assert access.hello({"token": "wrong"}) == "failed"
    assert access.hello({"token": TOKEN}) == "ok"
    assert access.hello({"token": "wrong"}) == "failed"
    assert access.hello({"token": "wrong"}) == "close"


def test_prefix_of_token_is_wrong() -> None:
    access = Access(Tokens(TOKEN))
    assert access.hello({"token": TOKEN[:-1]}) == "failed"
    assert access.hello({"token": TOKEN + "x"}) == "failed"


# A2: protected mode.
EXPOSED = parse_address("192.0.2.1:7421")  # TEST-NET-1: never bound in these tests


def test_protected_mode_refuses_exposed_address_without_token() -> None:
    message = protected_mode_error([EXPOSED], Tokens(), insecure=False)
    assert message is not None
    assert "192.0.2.1:7421" in message
    assert "SBROKER_TOKEN" in message and "--token-file" in message and "--insecure" in message


def test_admin_token_alone_does_not_satisfy_protected_mode() -> None:
    message = protected_mode_error([EXPOSED], Tokens(None, ADMIN), insecure=False)
    assert message is not None and ADMIN not in message


def test_protected_mode_satisfied_by_token_or_insecure() -> None:
    assert protected_mode_error([EXPOSED], Tokens(TOKEN), insecure=False) is None
    assert protected_mode_error([EXPOSED], Tokens(), insecure=True) is None


@pytest.mark.parametrize(
    "text",
    ["127.0.0.1:7421", "127.8.9.10:1", "[::1]:7421", "localhost:7421", "unix:/tmp/x.sock"],
)
def test_loopback_and_unix_need_no_token(text: str) -> None:
    assert protected_mode_error([parse_address(text)], Tokens(), insecure=False) is None


@pytest.mark.parametrize(
    "text", ["198.51.100.7:7421", "[::]:7421", "example.com:7421", "10.0.0.1:1"]
)
def test_other_hosts_are_exposed(text: str) -> None:
    addresses = [parse_address("127.0.0.1:7421"), parse_address(text)]
    message = protected_mode_error(addresses, Tokens(), insecure=False)
    assert message is not None and "127.0.0.1" not in message


# A1, A6 over any sequence of hellos: access only grows, and the third failure closes.
HELLO_OPTS: list[dict[str, object]] = [
    {},
    {"token": TOKEN},
    {"token": ADMIN},
    {"token": "wrong"},
    {"token": 7},
]


@settings(max_examples=200, deadline=None)
@given(
    tokens=st.sampled_from([Tokens(), Tokens(TOKEN), Tokens(None, ADMIN), Tokens(TOKEN, ADMIN)]),
    hellos=st.lists(st.sampled_from(range(len(HELLO_OPTS))), max_size=8),
)
def test_any_hello_sequence(tokens: Tokens, hellos: list[int]) -> None:
    access = Access(tokens)
    user = tokens.token is None  # what the connection may do so far
    admin = user and tokens.admin_token is None
    failures = 0
    for index in hellos:
        opts = HELLO_OPTS[index]
        presented = opts.get("token")
        if presented is not None and presented in (tokens.token, tokens.admin_token):
            expected = "ok"
            admin = admin or presented == tokens.admin_token or tokens.admin_token is None
            user = True
        elif "token" not in opts and (user or tokens.token is None):
            expected = "ok"  # nothing to check: a plain hello
        elif "token" in opts and tokens == Tokens():
            expected = "ok"  # no tokens: everything open
        else:
            failures += 1
            expected = "close" if failures >= 3 else "failed"
        assert access.hello(opts) == expected
        assert (access.check("ask") is None) is user
        assert (access.check("reload") is None) is admin

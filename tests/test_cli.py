"""The command line: help text, version, and errors for bad option values."""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sbroker
from sbroker import _demo
from sbroker.__main__ import build_parser, main
from sbroker._arguments import tcp_address

SOURCE_ROOT = str(Path(sbroker.__file__).resolve().parent.parent)

#: reST/Sphinx markup that must not reach a terminal: ``code``, :role:`target`.
REST_MARKUP = re.compile(r"``|:[a-z]+:`")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m sbroker ARGS`` importing this checkout's package, bounded in time."""
    env = {**os.environ, "PYTHONPATH": SOURCE_ROOT}
    return subprocess.run(
        [sys.executable, "-m", "sbroker", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=SOURCE_ROOT,
    )


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_help_is_plain_text_and_every_subcommand_is_described() -> None:
    assert not REST_MARKUP.search(build_parser().format_help())
    assert subcommands()
    for name, subparser in subcommands().items():
        assert subparser.description, f"{name} has no description"
        assert not REST_MARKUP.search(subparser.format_help()), name


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.split()[-1] == sbroker.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", sbroker.__version__)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--seconds", "nan"), ("--seconds", "inf"), ("--seconds", "-1"), ("--load", "0")]
    + [("--load", "nan"), ("--load", "two")],
)
def test_bad_values_name_the_option_with_the_subcommand_usage(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ") and " demo [-h]" in err.splitlines()[0]
    assert f"argument {option}: " in err and repr(value) in err


def test_demo_with_nan_seconds_exits_instead_of_hanging() -> None:
    completed = run_cli("demo", "--seconds", "nan")  # used to loop forever
    assert completed.returncode == 2
    assert "usage: python -m sbroker demo" in completed.stderr
    assert "argument --seconds" in completed.stderr


def test_python_dash_m_version() -> None:
    completed = run_cli("--version")
    assert completed.returncode == 0
    assert completed.stdout.strip() == f"python -m sbroker {sbroker.__version__}"


@pytest.mark.parametrize("seconds", [math.nan, math.inf, 0.0])
def test_demo_arrivals_refuse_a_window_that_never_ends(seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        _demo.poisson_arrivals(800.0, seconds, random.Random(1))


def test_tcp_address_option_values() -> None:
    assert tcp_address("127.0.0.1:9421") == ("127.0.0.1", 9421)
    assert tcp_address("[::1]:0") == ("::1", 0)
    for bad in ("127.0.0.1", ":80", "host:http", "host:65536", "host:-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="HOST:PORT"):
            tcp_address(bad)

"""`sbroker serve` and access: protected mode, token sources, unix_mode and TLS settings.

Nothing here listens: protected mode is tested with TEST-NET-1 (192.0.2.1), and where the
command gets past it, ``open_listeners`` is replaced by a recorder that refuses to bind, so the
settings it would have listened with are checked without a socket.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import access_harness
import pytest
import trustme
from access_harness import ADMIN_TOKEN, TOKEN, assert_no_token

import sbroker
from sbroker.__main__ import main
from sbroker.service import cli
from sbroker.service.listen import Address, parse_address

no_token_logged = access_harness.no_token_logged
pytestmark = pytest.mark.usefixtures("no_token_logged")

EXPOSED = "192.0.2.1:7421"  # TEST-NET-1: documentation only, never routed


class ListenRecorder:
    """Stands in for ``open_listeners``: records its arguments and binds nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Address], int, ssl.SSLContext | None]] = []

    async def __call__(
        self, addresses: Any, *, unix_mode: int = 0o600, ssl_context: Any = None
    ) -> Any:
        self.calls.append((list(addresses), unix_mode, ssl_context))
        raise OSError("not binding in a test")


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> ListenRecorder:
    monkeypatch.delenv("SBROKER_TOKEN", raising=False)
    recorder = ListenRecorder()
    monkeypatch.setattr(cli, "open_listeners", recorder)
    return recorder


def serve(*argv: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", *argv])
    code = exit_info.value.code
    assert isinstance(code, int)
    return code


def test_protected_mode_refuses_before_binding(
    recorder: ListenRecorder, capsys: pytest.CaptureFixture[str]
) -> None:
    # A2: exit status 2, a message saying how to set a token, nothing bound
    assert serve("--listen", EXPOSED) == 2
    error = capsys.readouterr().err
    assert "protected mode" in error and EXPOSED in error
    assert "SBROKER_TOKEN" in error and "--token-file" in error and "--insecure" in error
    assert "Traceback" not in error
    assert recorder.calls == []


def test_admin_token_alone_does_not_satisfy_protected_mode(
    recorder: ListenRecorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A6
    config = tmp_path / "sbroker.toml"
    config.write_text(f'[server]\nlisten = ["{EXPOSED}"]\nadmin_token = "{ADMIN_TOKEN}"\n')
    assert serve("--config", str(config)) == 2
    error = capsys.readouterr().err
    assert "protected mode" in error
    assert_no_token(error)
    assert recorder.calls == []


def _token_file(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return str(path)


@pytest.mark.parametrize("source", ["env", "token-file", "config", "insecure"])
def test_token_or_insecure_passes_protected_mode(
    source: str,
    recorder: ListenRecorder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A1, A2: each token source (or --insecure) lets the server go on to listen
    argv = ["--listen", EXPOSED]
    if source == "env":
        monkeypatch.setenv("SBROKER_TOKEN", TOKEN)
    elif source == "token-file":
        argv += ["--token-file", _token_file(tmp_path)]
    elif source == "config":
        config = tmp_path / "sbroker.toml"
        config.write_text(f'[server]\ntoken = "{TOKEN}"\n')
        argv += ["--config", str(config)]
    else:
        argv.append("--insecure")
    assert serve(*argv) == 1  # the recorder refused to bind
    assert [call[0] for call in recorder.calls] == [[parse_address(EXPOSED)]]
    output = capsys.readouterr()
    assert_no_token(output.err + output.out)


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_unusable_token_file_refused(
    content: str | None,
    recorder: ListenRecorder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A6: an empty (or missing) token file refuses to start
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    assert serve("--token-file", str(path), "--listen", "127.0.0.1:0") == 2
    assert str(path) in capsys.readouterr().err
    assert recorder.calls == []


@pytest.mark.parametrize(("setting", "mode"), [("", 0o600), ("unix_mode = 0o660", 0o660)])
def test_unix_mode_passed_to_the_listeners(
    setting: str, mode: int, recorder: ListenRecorder, tmp_path: Path
) -> None:
    # A3: 0600 unless unix_mode says otherwise
    config = tmp_path / "sbroker.toml"
    config.write_text(f'[server]\nlisten = ["unix:{tmp_path}/s.sock"]\n{setting}\n')
    assert serve("--config", str(config)) == 1
    ((_, unix_mode, _),) = recorder.calls
    assert unix_mode == mode


def test_tls_files_relative_to_the_config_file(
    recorder: ListenRecorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A4, A6: tls_cert and tls_key make the TCP listeners TLS; paths relative to the file
    (tmp_path / "tls").mkdir()
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "tls" / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "tls" / "key.pem"))
    config = tmp_path / "sbroker.toml"
    config.write_text('[server]\ntls_cert = "tls/cert.pem"\ntls_key = "tls/key.pem"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert serve("--config", str(config)) == 1
    ((_, _, context),) = recorder.calls
    assert isinstance(context, ssl.SSLContext)


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('tls_cert = "cert.pem"', "tls_key"),  # A6: tls_cert and tls_key go together
        ('tls_cert = "absent-cert.pem"\ntls_key = "absent-key.pem"', "absent-cert.pem"),
    ],
)
def test_tls_settings_refused(
    table: str,
    named: str,
    recorder: ListenRecorder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A4, section 7: an invalid configuration, exit status 2, before anything listens
    config = tmp_path / "sbroker.toml"
    config.write_text(f"[server]\n{table}\n")
    assert serve("--config", str(config)) == 2
    error = capsys.readouterr().err
    assert named in error and "Traceback" not in error
    assert recorder.calls == []


def test_protected_mode_from_the_command_line(tmp_path: Path) -> None:
    # A2: the real command, as an operator runs it; it exits before binding anything
    source_root = os.path.dirname(os.path.dirname(os.path.abspath(sbroker.__file__)))
    env = {k: v for k, v in os.environ.items() if k != "SBROKER_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "sbroker", "serve", "--listen", EXPOSED],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "protected mode" in done.stderr and "--token-file" in done.stderr
    assert "Traceback" not in done.stderr


def test_console_refuses_an_empty_token_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A6 for the console too: it reads the token as the server does
    path = tmp_path / "token"
    path.write_text("\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["console", "127.0.0.1:1", "--token-file", str(path)])
    assert exit_info.value.code == 2
    assert "is empty" in capsys.readouterr().err

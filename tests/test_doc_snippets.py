"""Every ```python block of README.md and docs/**/*.md runs.

Each block runs alone, in a fresh process, on trio's MockClock: the block's
own ``trio.run(...)`` gets ``clock=MockClock(autojump_threshold=0)``, and a
block with a top-level ``await``/``async with`` (as typed at trio's REPL,
``python -m trio``) runs inside such a ``trio.run``. Sleeps and timeouts are
then instant, so a block that waits 5 s still finishes at once; every block
is bounded in wall-clock time all the same. Blocks marked ```pycon, ```sh or
anything else are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sbroker

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOT = str(Path(sbroker.__file__).resolve().parent.parent)
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

#: Reads a snippet on stdin and runs it as described in the module docstring.
RUNNER = """\
import ast, inspect, sys
import trio, trio.testing

source = sys.stdin.read()
real_run = trio.run

def run_on_mock_clock(*args, **kwargs):
    kwargs.setdefault("clock", trio.testing.MockClock(autojump_threshold=0))
    return real_run(*args, **kwargs)

trio.run = run_on_mock_clock
code = compile(source, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = {"__name__": "__main__"}
if code.co_flags & inspect.CO_COROUTINE:
    async def main():
        await eval(code, namespace)
    trio.run(main)
else:
    exec(code, namespace)
"""


def snippets() -> list[pytest.param]:
    """One param per ```python block: (source, "file:line") with id "file:line"."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = page.read_text()
        for fence in FENCE.finditer(text):
            if fence["info"].split()[:1] != ["python"]:
                continue
            line = text.count("\n", 0, fence.start()) + 1
            where = f"{page.relative_to(ROOT)}:{line}"
            # Pad with blank lines so tracebacks show the page's own line numbers.
            source = "\n" * line + fence["body"]
            found.append(pytest.param(source, where, id=where))
    return found


def test_snippets_are_found() -> None:
    wheres = [param.values[1] for param in snippets()]
    assert "README.md" in {where.split(":")[0] for where in wheres}
    assert len(wheres) >= 10


@pytest.mark.parametrize(("source", "where"), snippets())
def test_snippet_runs(source: str, where: str) -> None:
    env = {**os.environ, "PYTHONPATH": SOURCE_ROOT}
    completed = subprocess.run(
        [sys.executable, "-c", RUNNER, where],
        input=source,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=SOURCE_ROOT,
    )
    assert completed.returncode == 0, f"{where}\n{completed.stderr[-3000:]}"

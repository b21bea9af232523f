"""Type checking as a user sees it: mypy --strict over typed user code and examples/.

One mypy run checks three things: a snippet of mistakes a type checker must
catch (each marked ``# error``), a snippet of correct use that must pass, and
every example. api.md rule 5 asks the constructors to reject the same
mistakes at run time; here they are caught before the code runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MISTAKES = """\
import sbroker
from sbroker.meters import PieMeter
from sbroker.queues import AdaptiveQueue, CodelQueue, DropQueue, TimeoutQueue

TimeoutQueue(out="sideways")  # error
DropQueue(drop="middle")  # error
CodelQueue(out="adaptive")  # error
AdaptiveQueue(out="random")  # error
PieMeter(ask={"taget": 0.1})  # error
PieMeter(ask_r=dict(target="fast"))  # error
go: sbroker.Go[int] = sbroker.Go(ref=1, value="text", relative_time=0, sojourn_time=0)  # error
"""

CORRECT_USE = """\
import sbroker
from sbroker.meters import PieMeter, SideTargets
from sbroker.queues import AdaptiveQueue, CodelQueue, DropQueue, Out, TimeoutQueue

order: Out = "lifo"
targets: SideTargets = {"target": 0.2}
policies = [
    TimeoutQueue(timeout=1.0, out=order, drop="head"),
    DropQueue(out="fifo", drop="tail", max_len=3),
    CodelQueue(0.01, 0.1, out="lifo"),
    AdaptiveQueue(out="adaptive"),
]
pie = PieMeter(ask=dict(target=0.01, interval=0.1), ask_r=targets)
again = PieMeter(ask=pie.ask)


def job_name(result: sbroker.Go[str] | sbroker.Drop) -> str:
    match result:
        case sbroker.Go(value=name):
            return name.upper()
        case sbroker.Drop():
            return "dropped"


def untyped(result: sbroker.Go) -> object:
    return result.value


print(job_name(sbroker.Go(ref=1, value="job", relative_time=0, sojourn_time=0)), policies)
"""


def test_mypy_rejects_mistakes_and_accepts_correct_use_and_examples(tmp_path: Path) -> None:
    mistakes = tmp_path / "mistakes.py"
    mistakes.write_text(MISTAKES)
    correct = tmp_path / "correct_use.py"
    correct.write_text(CORRECT_USE)
    examples = sorted(str(path) for path in (ROOT / "examples").glob("*.py"))
    completed = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary"]
        + ["--config-file", str(ROOT / "pyproject.toml"), str(mistakes), str(correct)]
        + examples,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = re.findall(r"^(.+?):(\d+): error: (.*)$", completed.stdout, re.MULTILINE)
    assert completed.stderr == ""
    assert [e for e in errors if Path(e[0]).name != "mistakes.py"] == [], completed.stdout
    expected = [n for n, line in enumerate(MISTAKES.splitlines(), 1) if line.endswith("# error")]
    assert sorted({int(line) for _, line, _ in errors}) == expected, completed.stdout
    out_error = next(text for _, line, text in errors if int(line) == expected[0])
    assert '"out"' in out_error and "sideways" in out_error

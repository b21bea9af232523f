"""The documentation site and the messages users read.

- every public name has a place in the API reference (docs/reference/*.md,
  rendered by mkdocstrings; CI runs ``mkdocs build --strict``);
- the docs point at no private module;
- no error message leaks a spec rule id such as ``(F1)`` (the rules are for
  the implementers; a user needs the parameter and the reason).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import sbroker

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(sbroker.__file__).resolve().parent
DOCS = ROOT / "docs"
DIRECTIVE = re.compile(r"^::: ([\w.]+)\n((?:[ ]{4}.*\n)*)", re.MULTILINE)
RULE_ID = re.compile(r"\([A-Z]{1,2}\d+[a-z]?\)")


def public_modules() -> list[str]:
    """``sbroker`` and each of its public submodules (a name without a leading ``_``)."""
    names = [
        f"sbroker.{info.name}"
        for info in pkgutil.iter_modules([str(PACKAGE)])
        if not info.name.startswith("_")
    ]
    return ["sbroker", *sorted(names)]


def documented() -> dict[str, set[str] | None]:
    """Per ``::: module`` directive: its explicit ``members`` list, or ``None`` (all of them)."""
    found: dict[str, set[str] | None] = {}
    for page in sorted((DOCS / "reference").glob("*.md")):
        for module, options in DIRECTIVE.findall(page.read_text()):
            members = re.findall(r"^\s+- (\w+)$", options, re.MULTILINE)
            found[module] = set(members) if "members:" in options else None
    return found


def test_every_public_name_is_in_the_api_reference() -> None:
    pages = documented()
    modules = {name: importlib.import_module(name) for name in public_modules()}
    # A subpackage page without a members list documents all of its __all__.
    whole = {
        name
        for module_name, module in modules.items()
        if pages.get(module_name, set()) is None
        for name in getattr(module, "__all__", ())
    }
    missing = [
        f"{module_name}.{name}"
        for module_name, module in modules.items()
        for name in getattr(module, "__all__", ())
        if name not in whole and name not in (pages.get(module_name) or set())
    ]
    assert missing == [], "add them to docs/reference/*.md"


def test_every_reference_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (DOCS / "reference").glob("*.md"):
        assert f"reference/{page.name}" in nav


def test_docs_point_at_no_private_module() -> None:
    # a private file, an import from a private module, or a link into one
    private = re.compile(r"sbroker/_[a-z]|(from|import) sbroker\._|\]\([^)]*sbroker[./]_")
    for page in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            assert not private.search(line), f"{page.name}:{number}: {line}"


def raised_texts(path: Path) -> list[tuple[int, str]]:
    """The string pieces (literals and f-string parts) of every ``raise`` in ``path``."""
    texts = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and node.exc is not None:
            for part in ast.walk(node.exc):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    texts.append((node.lineno, part.value))
    return texts


def test_no_error_message_leaks_a_rule_id() -> None:
    leaks = [
        f"{path.relative_to(PACKAGE)}:{line}: {text}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, text in raised_texts(path)
        if RULE_ID.search(text)
    ]
    assert leaks == []


def test_the_rule_id_scan_sees_f_strings(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('def f(x):\n    raise TypeError(f"{x} must not be a FairQueue (F1)")\n')
    assert [RULE_ID.search(text) is not None for _, text in raised_texts(sample)] == [True]

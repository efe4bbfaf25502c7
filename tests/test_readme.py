"""The README against the Makefile and the project's rules for it.

Every command in the README's quickstart section must be a command of the Makefile's `quickstart`
target, in the same order, token by token after the Makefile's variables are substituted; `...`
in the README stands for any arguments left out. The Makefile may have more steps than the
README shows. The README stays short and carries no dated run history (docs/results.md does).
"""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"
MAX_README_LINES = 220
ELLIPSIS = "..."


def _logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined."""
    return text.replace("\\\n", " ").splitlines()


def makefile_variables(text: str) -> dict[str, str]:
    """`NAME ?= value`, `NAME := value` and `NAME = value` assignments at the top level."""
    found = {}
    for line in _logical_lines(text):
        match = re.match(r"^([A-Z_]+)\s*(?:\?=|:=|=)\s*(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def _substitute(line: str, variables: dict[str, str]) -> str:
    line = line.replace("$(BIN)/python", "python")
    for _ in range(5):  # variables may name other variables
        line = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), line)
    return line


def makefile_commands(text: str, target: str = "quickstart") -> list[list[str]]:
    """The Python commands of a target's recipe, as tokens, with the variables substituted."""
    variables = makefile_variables(text)
    lines = _logical_lines(text)
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{target}\s*:", line))
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        if line.strip().startswith("$(BIN)/python"):
            commands.append(shlex.split(_substitute(line.strip(), variables)))
    return commands


def readme_quickstart_commands(text: str) -> list[list[str]]:
    """The `python ...` commands in the fenced blocks of the README's "Quickstart" section."""
    section = re.search(r"^## Quickstart\n(.*?)(?=^## )", text, flags=re.M | re.S)
    assert section, 'README.md has no "## Quickstart" section'
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", section.group(1), flags=re.M | re.S):
        for line in _logical_lines(block):
            if line.strip().startswith("python "):
                commands.append(shlex.split(line, comments=True))
    return commands


def matches(shown: list[str], actual: list[str]) -> bool:
    """Whether `shown` equals `actual` token by token, `...` standing for any run of tokens."""
    if not shown:
        return not actual
    if shown[0] == ELLIPSIS:
        return any(matches(shown[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and shown[0] == actual[0] and matches(shown[1:], actual[1:])


def unmatched(shown: list[list[str]], actual: list[list[str]]) -> list[str]:
    """The shown commands that have no match in `actual` after the previous one's match."""
    missing, position = [], 0
    for command in shown:
        found = next((j for j in range(position, len(actual)) if matches(command, actual[j])), None)
        if found is None:
            missing.append(shlex.join(command))
        else:
            position = found + 1
    return missing


@pytest.fixture(scope="module")
def quickstart():
    shown = readme_quickstart_commands(README.read_text())
    actual = makefile_commands(MAKEFILE.read_text())
    return shown, actual


def test_quickstart_commands_are_the_makefiles(quickstart):
    shown, actual = quickstart
    assert len(shown) >= 10, "the README's quickstart section shows too few commands"
    missing = unmatched(shown, actual)
    assert not missing, (
        "README quickstart commands not in the Makefile's quickstart target (in this order):\n"
        + "\n".join(missing)
        + "\nMakefile commands:\n"
        + "\n".join(shlex.join(c) for c in actual)
    )


def test_every_shown_token_is_checked(quickstart):
    """Changing any token that the README shows, in the Makefile command it matches, fails."""
    shown, actual = quickstart
    position, unchecked = 0, []
    for command in shown:
        j = next(j for j in range(position, len(actual)) if matches(command, actual[j]))
        position = j + 1
        for token in set(command) - {ELLIPSIS}:
            changed = [list(c) for c in actual]
            changed[j] = [t + "-changed" if t == token else t for t in changed[j]]
            if not unmatched(shown, changed):
                unchecked.append(f"{token!r} in {shlex.join(command)}")
    assert not unchecked, "tokens the check does not catch:\n" + "\n".join(unchecked)


@pytest.mark.parametrize(
    ("shown", "actual", "expected"),
    [
        ("python -m a --x 1", "python -m a --x 1", True),
        ("python -m a --x 1", "python -m a --x 2", False),
        ("python -m a ... --x 1", "python -m a --y 0 --x 1", True),
        ("python -m a ... --x 1", "python -m a --x 1 --y 0", False),
        ("python -m a ... --x 1 ...", "python -m a --x 1 --y 0", True),
        ("python -m a ...", "python -m b --x 1", False),
        ("python -m a", "python -m a --x 1", False),
    ],
)
def test_matches(shown, actual, expected):
    assert matches(shown.split(), actual.split()) is expected


def test_order_and_added_steps():
    actual = [["python", "-m", m] for m in ("a", "export", "b", "c")]
    assert unmatched([["python", "-m", "a"], ["python", "-m", "c"]], actual) == []
    assert unmatched([["python", "-m", "c"], ["python", "-m", "a"]], actual) == ["python -m a"]


def test_makefile_substitution():
    text = "QS ?= out/qs\nSHAPES := --size 64\nquickstart: x\n\t$(BIN)/python -m m '$(QS)/a.tar' $(SHAPES)\n\t@echo done\n"
    assert makefile_commands(text) == [["python", "-m", "m", "out/qs/a.tar", "--size", "64"]]


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES})"
    )


DATED_HISTORY = [
    re.compile(r"\b(?:19|20)\d\d-\d\d-\d\d\b"),  # an ISO date
    re.compile(r"\bruns? \d+\s*\(", re.I),  # "Run 8 (4f46b93, ..."
    re.compile(r"\bruns? \d+ (?:to|and|-) ?\d+", re.I),  # "Runs 4 to 6 scored ..."
]


@pytest.mark.parametrize("pattern", DATED_HISTORY, ids=lambda p: p.pattern)
def test_readme_has_no_run_history(pattern):
    hits = [line for line in README.read_text().splitlines() if pattern.search(line)]
    assert not hits, "dated run history belongs in docs/results.md:\n" + "\n".join(hits)


@pytest.mark.parametrize(
    "line", ["Run 8 (4f46b93, 2026-12-02) took 23 min", "Runs 4 to 6 scored 0.88"]
)
def test_run_history_patterns_catch(line):
    assert any(p.search(line) for p in DATED_HISTORY)


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", ["README.md", "docs/results.md"])
def test_anchors_exist(page):
    """Links with a #fragment into a page that exists name one of its headings."""
    source = ROOT / page
    broken = []
    for target, fragment in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", source.read_text()):
        path = (source.parent / target).resolve() if target else source
        if not path.exists():
            continue
        headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)
        if fragment not in {_slug(h) for h in headings}:
            broken.append(f"{target}#{fragment}")
    assert not broken, f"{page}: links to missing headings: {broken}"

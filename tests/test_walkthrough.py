"""walkthrough.md stays true to the code: its breakpoints point at the lines it quotes, and it
names every module of the package."""

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = open(os.path.join(REPO, "walkthrough.md"), encoding="utf-8").read()


def test_every_breakpoint_is_on_the_line_the_text_quotes():
    recipes = list(re.finditer(r'-c "b (minillm/[\w/]+\.py):(\d+)"', TEXT))
    assert len(recipes) >= 3
    for match in recipes:
        path, line = match.group(1), int(match.group(2))
        after = TEXT[match.end():]
        quoted = re.search(r"The breakpoint is (?:the line )?`([^`]+)`", after)
        assert quoted, f"no 'The breakpoint is `...`' after the recipe for {path}:{line}"
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            lines = f.read().splitlines()
        now = [n for n, text in enumerate(lines, 1) if quoted.group(1) in text]
        assert quoted.group(1) in lines[line - 1], (
            f"walkthrough.md: {path}:{line} is now {lines[line - 1].strip()!r}; "
            f"the quoted line is at {now}: update the recipe")


def test_every_module_is_named():
    package = os.path.join(REPO, "minillm")
    for folder, _, files in os.walk(package):
        for name in files:
            if name.endswith(".py") and name not in ("__init__.py",):
                rel = os.path.relpath(os.path.join(folder, name), REPO)
                assert rel in TEXT, f"walkthrough.md never names {rel}"

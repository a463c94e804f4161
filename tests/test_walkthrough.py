"""walkthrough.md stays true to the code: its breakpoints point at the lines it quotes, and it
names every module of the package."""

import os
import re

import pytest

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


def test_every_module_a_recipe_uses_is_there_at_its_breakpoint():
    """A `(Pdb) p np.exp(...)` line works only where the stopped frame's module imported numpy
    as np, or the recipe imported it first: the line numbers alone do not show that."""
    recipes = list(re.finditer(r'-c "b (minillm/[\w/]+\.py):(\d+)"', TEXT))
    for match in recipes:
        with open(os.path.join(REPO, match.group(1)), encoding="utf-8") as f:
            source = f.read()
        block = TEXT[match.end():].split("```", 3)[2]  # the (Pdb) block after the recipe
        imported = set(re.findall(r"^import (\w+) as (\w+)$", source, re.M))
        imported |= set(re.findall(r"^\(Pdb\) import (\w+) as (\w+)", block, re.M))
        aliases = {alias for _, alias in imported} | set(re.findall(r"^import (\w+)$", source,
                                                                    re.M))
        for line in re.findall(r"^\(Pdb\) (?:p |pp )?(.*)$", block, re.M):
            code = line.split("#")[0]
            for name in re.findall(r"\b(np|math|json)\.", code):
                assert name in aliases, (f"walkthrough.md: the recipe at {match.group(1)}:"
                                         f"{match.group(2)} uses {name}. but its module does "
                                         f"not import it: add '(Pdb) import ... as {name}'")


def test_every_module_is_named():
    package = os.path.join(REPO, "minillm")
    for folder, _, files in os.walk(package):
        for name in files:
            if name.endswith(".py") and name not in ("__init__.py",):
                rel = os.path.relpath(os.path.join(folder, name), REPO)
                assert rel in TEXT, f"walkthrough.md never names {rel}"


def test_every_test_it_names_exists():
    named = set(re.findall(r"(tests/test_\w+\.py)::(test_\w+)", TEXT))
    named |= {(None, t) for t in re.findall(r"`(test_\w+)`", TEXT)}
    assert len(named) >= 10
    sources = {}
    for folder, _, files in os.walk(os.path.join(REPO, "tests")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    sources[os.path.relpath(os.path.join(folder, name), REPO)] = f.read()
    for path, test in named:
        where = [sources[path]] if path else list(sources.values())
        assert any(f"def {test}(" in text for text in where), f"walkthrough.md names {test}"


def test_every_function_it_names_exists():
    import importlib

    names = set(re.findall(r"`(?:minillm/)?([\w/]+)\.py::(\w+)", TEXT))
    names = {(m, a) for m, a in names if not m.startswith("tests/")}
    assert len(names) >= 20
    for module, attr in names:
        mod = importlib.import_module("minillm." + module.replace("/", "."))
        assert hasattr(mod, attr.split(".")[0]), f"walkthrough.md names {module}.py::{attr}"


def test_the_corruption_table_is_what_its_snippet_prints():
    import numpy as np

    from minillm.grammar import default_grammar
    from minillm.corruption.bert import corruption_table, mask_tokens
    from minillm.tokenizer import CLS_ID, SEP_ID

    tok = default_grammar().tokenizer()
    ids = np.array([CLS_ID, *tok.encode("今天天气很好，我们去公园玩。"), SEP_ID])
    inputs, labels, info = mask_tokens(ids, np.random.default_rng(18), tok.ordinary_ids,
                                       mlm_probability=0.3)
    table = corruption_table(tok, ids, inputs, labels, info["action"])
    assert "```\n" + table + "\n```" in TEXT, "walkthrough.md's corruption table is stale:\n" + table


@pytest.mark.parametrize("name", ["walkthrough.md", "README.md"])
def test_every_link_leads_to_a_file_of_the_repository(name):
    """A link to a file outside the repository (the tutorial, in the project's shared folder)
    works only where that folder happens to sit beside it: such a place is named in words."""
    with open(os.path.join(REPO, name), encoding="utf-8") as f:
        links = re.findall(r"\]\(([^)\s]+)\)", f.read())
    for link in links:
        if re.match(r"[a-z]+://", link) or link.startswith("#"):
            continue
        path = os.path.normpath(os.path.join(REPO, link.split("#")[0]))
        assert path.startswith(REPO + os.sep) and os.path.exists(path), f"{name}: ({link})"

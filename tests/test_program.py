"""The tiny programming language, its interpreter, and the code-generation items."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import program
from minillm.program import (HELD_OUT_NUMBERS, INSTRUCTION_WORDS, ITEM_MAX_INSTRUCTION_WORDS,
                             ITEM_MAX_PROGRAM_TOKENS, NAMES, PROGRAM_TOKENS, TEMPLATES,
                             CodeItem, ProgramError, code_items, make_item, program_text, run,
                             tokenize_program)
from minillm.tokenizer import Tokenizer

# ----------------------------------------------------------------------------------------------
# The test's own programs: trees of tuples, drawn by hypothesis, rendered to tokens and
# evaluated here (Python's arithmetic), never by the interpreter under test.
#   ("int", n)  ("var", name)  ("paren", e)  (op, left, right) for op in + - *
#   ("list", elements)  ("index", a_list, i)  ("len", a_list)  ("sum", a_list)
# Statements: ("assign", name, e) and ("print", e).

LIMIT = 10**12  # the language's bound on every value (program.py's docstring)
PRECEDENCE = {"+": 1, "-": 1, "*": 2}


class TooLarge(Exception):
    pass


def numbers():
    return st.one_of(st.integers(0, 99), st.integers(0, 999_999))


def draw_int(draw, types, depth):
    """An integer-valued tree; ``types`` maps each assigned name to "int" or a list length."""
    kinds = ["int"] + ["var"] * any(t == "int" for t in types.values())
    if depth > 0:
        kinds += ["+", "-", "*", "paren", "index", "len", "sum"]
    kind = draw(st.sampled_from(kinds))
    if kind == "int":
        return ("int", draw(numbers()))
    if kind == "var":
        return ("var", draw(st.sampled_from(sorted(n for n, t in types.items() if t == "int"))))
    if kind in PRECEDENCE:
        return (kind, draw_int(draw, types, depth - 1), draw_int(draw, types, depth - 1))
    if kind == "paren":
        return ("paren", draw_int(draw, types, depth - 1))
    a_list, length = draw_list(draw, types, depth - 1)
    if kind in ("len", "sum") or length == 0:
        return ("len" if kind == "index" else kind, a_list)
    i = draw(st.integers(0, length - 1))
    if draw(st.booleans()):  # the index written as len(list) - (length - i)
        other, _ = draw_list_of_length(draw, types, depth - 1, length)
        return ("index", a_list, ("-", ("len", other), ("int", length - i)))
    return ("index", a_list, ("int", i))


def draw_list(draw, types, depth):
    """A list-valued tree and its length."""
    names = sorted(n for n, t in types.items() if t != "int")
    if names and draw(st.booleans()):
        name = draw(st.sampled_from(names))
        return ("var", name), types[name]
    return draw_list_of_length(draw, types, depth, draw(st.integers(0, 4)))


def draw_list_of_length(draw, types, depth, length):
    elements = tuple(draw_int(draw, types, max(depth, 0)) for _ in range(length))
    return ("list", elements), length


@st.composite
def programs(draw):
    types, statements = {}, []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            tree, length = draw_list(draw, types, 2)
            kind = length
        else:
            tree, kind = draw_int(draw, types, 3), "int"
        if draw(st.booleans()):
            statements.append(("print", tree))
        else:
            name = draw(st.sampled_from(NAMES))
            types[name] = kind
            statements.append(("assign", name, tree))
    return statements


def needs_parens(child, operator, side):
    """A child of a binary operator needs brackets if it binds less tightly, or equally on the
    right of "-" (a - (b - c) is not a - b - c)."""
    if child[0] not in PRECEDENCE:
        return False
    return (PRECEDENCE[child[0]] < PRECEDENCE[operator]
            or (side == "right" and operator == "-" and PRECEDENCE[child[0]] == 1))


def render(tree):
    kind = tree[0]
    if kind == "int":
        return list(str(tree[1]))
    if kind == "var":
        return [tree[1]]
    if kind == "paren":
        return ["(", *render(tree[1]), ")"]
    if kind in PRECEDENCE:
        left, right = render(tree[1]), render(tree[2])
        if needs_parens(tree[1], kind, "left"):
            left = ["(", *left, ")"]
        if needs_parens(tree[2], kind, "right"):
            right = ["(", *right, ")"]
        return [*left, kind, *right]
    if kind == "list":
        tokens = ["["]
        for k, element in enumerate(tree[1]):
            tokens += ([","] if k else []) + render(element)
        return tokens + ["]"]
    if kind == "index":
        return [*render(tree[1]), "[", *render(tree[2]), "]"]
    return [kind, "(", *render(tree[1]), ")"]  # len, sum


def render_program(statements):
    tokens = []
    for k, statement in enumerate(statements):
        tokens += [";"] if k else []
        if statement[0] == "print":
            tokens += ["print", "(", *render(statement[1]), ")"]
        else:
            tokens += [statement[1], "=", *render(statement[2])]
    return tuple(tokens)


def bounded(value):
    if abs(value) > LIMIT:
        raise TooLarge
    return value


def value_of(tree, env):
    kind = tree[0]
    if kind == "int":
        return tree[1]
    if kind == "var":
        return env[tree[1]]
    if kind == "paren":
        return value_of(tree[1], env)
    if kind == "list":
        return [value_of(element, env) for element in tree[1]]
    if kind == "index":
        return value_of(tree[1], env)[value_of(tree[2], env)]
    if kind == "len":
        return len(value_of(tree[1], env))
    if kind == "sum":
        return bounded(sum(value_of(tree[1], env)))
    left, right = value_of(tree[1], env), value_of(tree[2], env)
    return bounded({"+": left + right, "-": left - right, "*": left * right}[kind])


def printed(statements):
    env, lines = {}, []
    for statement in statements:
        if statement[0] == "print":
            lines.append(str(value_of(statement[1], env)))  # Python prints [2, 5, 9] too
        else:
            env[statement[1]] = value_of(statement[2], env)
    return "\n".join(lines)


@settings(max_examples=300)
@given(programs())
def test_the_interpreter_agrees_with_python_arithmetic(statements):
    tokens = render_program(statements)
    if len(tokens) > program.MAX_TOKENS:  # refused before it runs
        with pytest.raises(ProgramError, match="longer than"):
            run(tokens)
        return
    try:
        expected = printed(statements)
    except TooLarge:
        with pytest.raises(ProgramError, match="too large"):
            run(tokens)
        return
    assert run(tokens) == expected


def test_precedence_and_order_by_hand():
    assert run(tokenize_program("print(7 + 4 * 2)")) == "15"
    assert run(tokenize_program("print(7 - 4 - 2)")) == "1"
    assert run(tokenize_program("print((7 + 4) * 2); print(2 * 3 - 10)")) == "22\n-4"
    assert run(tokenize_program("xs = [2, 5, 9]; print(xs[1] + len(xs) * sum(xs))")) == "53"
    assert run(tokenize_program("xs = []; print(xs); print(len(xs) + sum(xs))")) == "[]\n0"
    assert run(tokenize_program("a = 3")) == ""  # nothing printed


# ----------------------------------------------------------------------------------------------
# Refusals: one clear ProgramError naming the problem and its token


BAD_PROGRAMS = [
    # (tokens, the problem the message names, the token it names)
    (("a", "=", "foo"), "unknown token 'foo'", 2),
    (("a", "=", "37"), "unknown token '37'", 2),  # a digit is a token; 37 is "3" "7"
    (tokenize_program("print((3)"), "expected ')' but found the end of the program", 5),
    (tokenize_program("print([1, 2)"), "expected ',' or ']' but found ')'", 6),
    (tokenize_program("print(3))"), "unmatched ')'", 4),
    (tokenize_program("a = 1; print(b)"), "undefined name 'b'", 6),
    (tokenize_program("a = a + 1"), "undefined name 'a'", 2),
    (tokenize_program("xs = [1, 2]; print(xs[2])"), "index 2 is out of range", 11),
    (tokenize_program("xs = [1]; print(xs[0 - 1])"), "index -1 is out of range", 9),
    (tokenize_program("a = 1234567"), "more than 6 digits", 2),
    (tokenize_program("a = 07"), "starts with 0", 2),
    (("a", "=", "1", ";") * 50 + ("print", "(", "a", ")"), "204 tokens is longer than 200",
     200),
    ((), "empty program", 0),
    (tokenize_program("print()"), "expected an expression", 2),
    (tokenize_program("a = 1;"), "expected a statement", 4),
    (tokenize_program("a + 1"), "expected '='", 1),
    (tokenize_program("print(1 + [2])"), "'+' needs two numbers, got a number and a list", 3),
    (tokenize_program("print(len(3))"), "len needs a list", 2),
    (tokenize_program("print(3[0])"), "indexing needs a list and a number", 3),
    (tokenize_program("print([[1]])"), "a list holds numbers, not lists", 3),
    # 999999 * 999999 is just under 10^12; the second * is the one that goes beyond.
    (tokenize_program("print(999999 * 999999 * 9)"), "too large", 15),
    (("print",) + ("(",) * 21 + ("1",) + (")",) * 21, "nested more than 20 deep", 21),
]


@pytest.mark.parametrize("tokens, problem, position", BAD_PROGRAMS)
def test_each_kind_of_bad_program_is_refused_by_name(tokens, problem, position):
    with pytest.raises(ProgramError) as refused:
        run(tokens)
    assert problem in str(refused.value)
    assert str(refused.value).endswith(f"at token {position}")
    assert refused.value.position == position
    assert isinstance(refused.value, ValueError)


def test_deep_brackets_are_refused_not_a_recursion_error():
    # 199 opening brackets would recurse ~800 frames deep without the nesting limit.
    for opener in ("(", "["):
        with pytest.raises(ProgramError, match="nested more than 20 deep"):
            run(("print", "(") + (opener,) * 198)


def test_twenty_brackets_deep_still_runs():
    assert run(("print",) + ("(",) * 20 + ("1",) + (")",) * 20) == "1"


def test_a_program_must_be_tokens_not_text():
    with pytest.raises(TypeError, match="tokenize_program"):
        run("print(1)")


SOUP = PROGRAM_TOKENS + ("foo", "12", "", " ", "PRINT", "/")


@st.composite
def damaged_programs(draw):
    """A drawn program with a few tokens replaced, deleted or inserted: nearly right, so that
    the errors past the first statement are reached too."""
    tokens = list(render_program(draw(programs())))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(0, len(tokens)))
        edit = draw(st.sampled_from(["replace", "delete", "insert"]))
        if edit == "insert" or where == len(tokens):
            tokens.insert(where, draw(st.sampled_from(SOUP)))
        elif edit == "delete":
            del tokens[where]
        else:
            tokens[where] = draw(st.sampled_from(SOUP))
    return tokens


@settings(max_examples=300)
@given(st.lists(st.sampled_from(SOUP), max_size=60)
       | st.lists(st.sampled_from(PROGRAM_TOKENS), max_size=250) | damaged_programs())
def test_a_token_soup_runs_or_raises_only_program_error(tokens):
    try:
        output = run(tuple(tokens))
    except ProgramError as refused:
        assert 0 <= refused.position <= len(tokens)
    else:
        assert isinstance(output, str)


# ----------------------------------------------------------------------------------------------
# Text <-> tokens


@given(st.lists(st.sampled_from(PROGRAM_TOKENS), max_size=40))
def test_program_text_cuts_back_into_the_same_tokens(tokens):
    assert tokenize_program(program_text(tuple(tokens))) == tuple(tokens)


@pytest.mark.parametrize("text", ["a = 3; a = a + 5; print(a)", "x = 7 * 4 - 2; print(x)",
                                  "xs = [2, 5, 9]; print(xs[1])", "x = (7 + 4) * 2; print(x)",
                                  "xs = [12, 5]; print(sum(xs)); print(len(xs))"])
def test_readable_text_is_what_program_text_writes(text):
    assert program_text(tokenize_program(text)) == text


def test_tokenize_program_cuts_digits_and_words():
    assert tokenize_program("xs=[37,5]") == ("xs", "=", "[", "3", "7", ",", "5", "]")
    assert tokenize_program("print ( a )") == ("print", "(", "a", ")")


@pytest.mark.parametrize("text, problem", [("a = foo", "unknown word 'foo' at character 4"),
                                           ("a = 3 / 2", "unknown word '/' at character 6"),
                                           ("A = 3", "unknown word 'A' at character 0")])
def test_tokenize_program_refuses_unknown_words(text, problem):
    with pytest.raises(ProgramError, match=problem):
        tokenize_program(text)


# ----------------------------------------------------------------------------------------------
# The items


def said_numbers(instruction):
    """The numbers an instruction says, in order (runs of digit words)."""
    found, run_of_digits = [], ""
    for word in instruction + ("",):
        if word.isdigit():
            run_of_digits += word
        elif run_of_digits:
            found.append(int(run_of_digits))
            run_of_digits = ""
    return found


def answer(instruction):
    """The answer to an instruction, read from its words alone (not from its program)."""
    numbers = said_numbers(instruction)
    if "计算" in instruction:
        a, b, c = numbers
        ops = [w for w in instruction if w in ("加", "减", "乘")]
        step = {"加": lambda x, y: x + y, "减": lambda x, y: x - y, "乘": lambda x, y: x * y}
        return step[ops[1]](step[ops[0]](a, b), c)  # a op b first, then (再) op c
    if "放进" in instruction:
        if "第" in instruction:
            *listed, k = numbers
            return listed[k - 1]
        if "和" in instruction:
            return sum(numbers)
        return len(numbers)
    a, b = numbers
    if "吃了" in instruction or "比" in instruction:
        return a - b
    if "盒" in instruction:
        return a * b
    return a + b  # 又买了 / 他们一共


def numbers_from_the_split_rule(instruction):
    """The numbers the split rule looks at: all said, except k of 第k个 (a position)."""
    numbers = said_numbers(instruction)
    return numbers[:-1] if "第" in instruction else numbers


def check_item(item, split):
    assert isinstance(item, CodeItem)
    assert run(item.program) == item.output
    assert item.output == str(answer(item.instruction))
    assert set(item.instruction) <= set(INSTRUCTION_WORDS)
    assert set(item.program) <= set(PROGRAM_TOKENS)
    assert len(item.instruction) <= ITEM_MAX_INSTRUCTION_WORDS
    assert len(item.program) <= ITEM_MAX_PROGRAM_TOKENS
    numbers = numbers_from_the_split_rule(item.instruction)
    assert all(0 <= n <= 99 for n in numbers)
    held_out = [n for n in numbers if n in HELD_OUT_NUMBERS]
    assert (not held_out) if split == "train" else held_out
    if "吃了" in item.instruction or "比" in item.instruction:
        assert int(item.output) >= 0
    if "计算" in item.instruction:  # brackets only where * would otherwise come first
        first, then = [w for w in item.instruction if w in ("加", "减", "乘")]
        assignment = item.program[: item.program.index(";")]
        assert ("(" in assignment) == (then == "乘" and first != "乘")


@settings(max_examples=40)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["train", "test"]))
def test_every_item_runs_to_the_answer_its_instruction_asks_for(seed, split):
    for item in code_items(np.random.default_rng(seed), 30, split):
        check_item(item, split)


def test_every_template_appears_and_the_splits_are_disjoint():
    rng = np.random.default_rng(0)
    train, test = code_items(rng, 2000, "train"), code_items(rng, 2000, "test")
    keys = {"buy": "又", "eat": "吃了", "boxes": "盒", "calculate": "计算", "index": "第",
            "sum": "和", "count": "数", "together": "他们", "more": "比"}
    for items in (train, test):
        assert {t for t, key in keys.items() for i in items if key in i.instruction} == \
            set(TEMPLATES)
    assert not {i.instruction for i in train} & {i.instruction for i in test}


def test_the_held_out_numbers():
    assert len(set(HELD_OUT_NUMBERS)) == 18 == round(0.2 * 90)
    assert all(10 <= n <= 99 for n in HELD_OUT_NUMBERS)
    # Every digit is still seen in training, in both places of a two-digit number.
    seen = [n for n in range(10, 100) if n not in HELD_OUT_NUMBERS]
    assert {n // 10 for n in seen} == set(range(1, 10)) and {n % 10 for n in seen} == set(range(10))


def test_longest_match_cuts_each_instruction_into_its_words():
    tokenizer = Tokenizer(INSTRUCTION_WORDS)
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for item in code_items(rng, 1500, split):
            assert tokenizer.tokenize(item.instruction_text) == list(item.instruction)


def test_the_longest_items():
    # All numbers of two digits make the longest items; k of 第k个 always has one.
    longest = [make_item(template, [99] * max(program.NUMBER_COUNTS[template]),
                         np.random.default_rng(seed))
               for template in TEMPLATES for seed in range(20)]
    assert max(len(i.instruction) for i in longest) == ITEM_MAX_INSTRUCTION_WORDS == 21
    assert max(len(i.program) for i in longest) == ITEM_MAX_PROGRAM_TOKENS == 20
    assert max(len(i.instruction) + len(i.program) for i in longest) == 37


def test_the_examples_of_the_task():
    rng = np.random.default_rng(0)
    buy = make_item("buy", [3, 5], rng)
    assert program_text(buy.program) == "a = 3; a = a + 5; print(a)" and buy.output == "8"
    assert buy.instruction_text.endswith("有3个" + buy.instruction[4] + "，又买了5个，打印一共有几个。")
    listed = make_item("sum", [2, 5, 9], rng)
    assert listed.instruction_text == "把2、5、9放进列表，打印它们的和。"
    assert program_text(listed.program) == "xs = [2, 5, 9]; print(sum(xs))"
    assert listed.output == "16"


def test_code_items_is_reproducible_and_checks_its_arguments():
    assert code_items(np.random.default_rng(5), 10) == code_items(np.random.default_rng(5), 10)
    assert code_items(np.random.default_rng(5), 0) == []
    with pytest.raises(TypeError, match="rng"):
        code_items(5, 10)
    with pytest.raises(ValueError, match="n must be"):
        code_items(np.random.default_rng(0), -1)
    with pytest.raises(ValueError, match="split"):
        code_items(np.random.default_rng(0), 1, "dev")
    with pytest.raises(ValueError, match="numbers must be 2"):
        make_item("buy", [1, 2, 3], np.random.default_rng(0))
    with pytest.raises(ValueError, match="template"):
        make_item("loop", [1, 2], np.random.default_rng(0))

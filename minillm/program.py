"""A tiny programming language, its interpreter, and the code-generation task (代码生成).

The tutorial's capability table has a row for code generation: from a Chinese instruction a
model writes a program, and the program is judged by RUNNING it and comparing what it prints
with the expected output (pass@1: one program per instruction, right or wrong). The judge is
the interpreter below; programs are never handed to Python's eval or exec.

A program is a tuple of tokens, what a model emits; ``program_text`` renders it for people:

    ("a", "=", "3", ";", "a", "=", "a", "+", "5", ";", "print", "(", "a", ")")
    a = 3; a = a + 5; print(a)                                              prints 8

The grammar; the parser has one function for each rule:

    program    = statement { ";" statement }
    statement  = NAME "=" expression  |  "print" "(" expression ")"
    expression = term { ("+" | "-") term }          left to right: 7 - 4 - 2 is 1
    term       = factor { "*" factor }              * before + and -: 7 + 4 * 2 is 15
    factor     = atom { "[" expression "]" }        indexing from 0: [2, 5, 9][1] is 5
    atom       = NUMBER | NAME | "(" expression ")" | "[" [ expression { "," expression } ] "]"
               | ("len" | "sum") "(" expression ")"
    NUMBER     = DIGIT { DIGIT }     each digit is a token of its own: 37 is "3" "7"
    NAME       = a | b | c | n | x | y | xs | ys

Values are integers and lists of integers. + - * take two integers; indexing takes a list and
an integer in [0, len); len and sum take a list. print writes its value on a line of its own (a
list as [2, 5, 9]); ``run`` returns the lines joined by "\\n", without a final one.

Limits, so that any input runs in bounded time and memory: at most 200 tokens, a number
literal of at most 6 digits (and no leading 0), brackets nested at most 20 deep, every value
within ±10^12. Anything outside the language raises ProgramError, naming the problem and the
token (counted from 0) where it is.

The task: a Chinese instruction (words of INSTRUCTION_WORDS; every digit is a word of its own,
as in programs) -> its canonical program -> the output of running it. The templates:

    buy        小明有3个苹果，又买了5个，打印一共有几个。        a = 3; a = a + 5; print(a)
    eat        小明有9个苹果，吃了4个，打印还剩几个。            a = 9; a = a - 4; print(a)
    boxes      每盒有6个鸡蛋，小红买了4盒，打印一共有几个鸡蛋。  a = 6; b = 4; print(a * b)
    calculate  计算7乘4再减2，打印结果。                         x = 7 * 4 - 2; print(x)
               计算7加4再乘2，打印结果。                         x = (7 + 4) * 2; print(x)
    index      把2、5、9放进列表，打印第2个。                    xs = [2, 5, 9]; print(xs[1])
    sum        把2、5、9放进列表，打印它们的和。                 xs = [2, 5, 9]; print(sum(xs))
    count      把2、5、9放进列表，打印有几个数。                 xs = [2, 5, 9]; print(len(xs))
    together   小明有3本书，小红有5本书，打印他们一共有几本。    a = 3; b = 5; print(a + b)
    more       小明有8本书，小红有5本书，打印小明比小红多几本。  a = 8; b = 5; print(a - b)

Numbers are drawn uniformly from 0-99 (eat and more take the larger first, so nothing goes
below 0; a calculation may); lists hold 2 or 3 numbers. HELD_OUT_NUMBERS, 18 of 10-99 (20%),
never appear in a "train" instruction, and every "test" instruction holds at least one of
them: a test instruction is new, and so is one of its whole numbers, though its digits are
not. At most 21 instruction words (more, with two 2-digit numbers) and 20 program tokens
(index and count, three 2-digit numbers); at most 37 in all (index and more).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------------------------
# The language's tokens and limits.

DIGITS = tuple("0123456789")
NAMES = ("a", "b", "c", "n", "x", "y", "xs", "ys")
KEYWORDS = ("print", "len", "sum")
SYMBOLS = ("=", ";", "(", ")", "[", "]", ",", "+", "-", "*")
PROGRAM_TOKENS = DIGITS + NAMES + KEYWORDS + SYMBOLS

MAX_TOKENS = 200  # tokens in a program
MAX_DIGITS = 6  # digits in a number literal
MAX_NESTING = 20  # brackets ( [ inside one another
MAX_VALUE = 10**12  # every value v has |v| <= MAX_VALUE

OPENERS, CLOSERS = ("(", "["), (")", "]")


class ProgramError(ValueError):
    """A program outside the language; ``position`` is the token (from 0) where it is, or
    for tokenize_program the character of the text."""

    def __init__(self, problem, position, unit="token"):
        super().__init__(f"{problem} at {unit} {position}")
        self.position = position


# ----------------------------------------------------------------------------------------------
# Text <-> tokens


def tokenize_program(text):
    """Program text -> tokens: each digit is a token, a run of letters is a name or keyword,
    each symbol is a token; spaces only separate. tokenize_program(program_text(t)) == t."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}: {text!r}")
    tokens, i = [], 0
    while i < len(text):
        start = i
        if text[i].isspace():
            i += 1
            continue
        if "a" <= text[i] <= "z":
            while i < len(text) and "a" <= text[i] <= "z":
                i += 1
        else:
            i += 1
        token = text[start:i]
        if token not in PROGRAM_TOKENS:
            raise ProgramError(f"unknown word {token!r}", start, unit="character")
        tokens.append(token)
    return tuple(tokens)


def _joined(left, right):
    """True where program_text writes two tokens without a space: the digits of a number,
    inside brackets, before , and ;, and a call's or an index's opening bracket."""
    return ((left in DIGITS and right in DIGITS) or left in OPENERS
            or right in CLOSERS + (",", ";")
            or (right == "(" and left in KEYWORDS)
            or (right == "[" and (left in NAMES or left in DIGITS or left in CLOSERS)))


def program_text(tokens):
    """Tokens -> readable text: ``a = 3; a = a + 5; print(a)``, ``xs = [2, 5, 9]``. Two
    letters-or-digits tokens are never joined (except digits of one number), so the text
    cuts back into the same tokens."""
    tokens = _checked_tokens(tokens)
    pieces = []
    for position, token in enumerate(tokens):
        if position > 0 and not _joined(tokens[position - 1], token):
            pieces.append(" ")
        pieces.append(token)
    return "".join(pieces)


def _checked_tokens(tokens):
    """tokens as a tuple, each one a token of the language (else ProgramError, naming it)."""
    if isinstance(tokens, str) or not isinstance(tokens, (tuple, list)):
        raise TypeError(f"tokens must be a tuple or list of token strings (tokenize_program "
                        f"makes one from text), got {type(tokens).__name__}: {tokens!r}")
    for position, token in enumerate(tokens):
        if not isinstance(token, str) or token not in PROGRAM_TOKENS:
            raise ProgramError(f"unknown token {token!r}", position)
    return tuple(tokens)


# ----------------------------------------------------------------------------------------------
# The parser: tokens -> a syntax tree


@dataclass(frozen=True)
class Node:
    """A node of the syntax tree: its kind ("number", "name", "list", "index", "len", "sum",
    "+", "-", "*", "assign", "print"), the token it is reported at, the number or name it
    holds, and its sub-expressions."""

    kind: str
    position: int
    value: int | str | None = None
    parts: tuple = ()


class _Parser:
    """Recursive descent: one method per grammar rule, each reading from ``position`` on."""

    def __init__(self, tokens):
        self.tokens = tokens
        self.position = 0
        self.nesting = 0

    def peek(self):
        if self.position < len(self.tokens):
            return self.tokens[self.position]
        return None  # the end of the program

    def found(self):
        token = self.peek()
        return "the end of the program" if token is None else repr(token)

    def expect(self, token):
        if self.peek() != token:
            raise ProgramError(f"expected {token!r} but found {self.found()}", self.position)
        self.position += 1

    def open(self, bracket):
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise ProgramError(f"brackets nested more than {MAX_NESTING} deep", self.position)
        self.expect(bracket)

    def close(self, bracket):
        self.expect(bracket)
        self.nesting -= 1

    # program = statement { ";" statement }
    def program(self):
        statements = [self.statement()]
        while self.peek() == ";":
            self.position += 1
            statements.append(self.statement())
        if self.peek() in CLOSERS:
            raise ProgramError(f"unmatched {self.peek()!r}", self.position)
        if self.peek() is not None:
            raise ProgramError(f"expected ';' or the end of the program but found "
                               f"{self.found()}", self.position)
        return statements

    # statement = NAME "=" expression | "print" "(" expression ")"
    def statement(self):
        start, token = self.position, self.peek()
        if token in NAMES:
            self.position += 1
            self.expect("=")
            return Node("assign", start, token, (self.expression(),))
        if token == "print":
            self.position += 1
            self.open("(")
            value = self.expression()
            self.close(")")
            return Node("print", start, parts=(value,))
        raise ProgramError(f"expected a statement (a name and '=', or print) but found "
                           f"{self.found()}", start)

    # expression = term { ("+" | "-") term }
    def expression(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            operator = self.peek()
            node_position = self.position
            self.position += 1
            value = Node(operator, node_position, parts=(value, self.term()))
        return value

    # term = factor { "*" factor }
    def term(self):
        value = self.factor()
        while self.peek() == "*":
            node_position = self.position
            self.position += 1
            value = Node("*", node_position, parts=(value, self.factor()))
        return value

    # factor = atom { "[" expression "]" }
    def factor(self):
        value = self.atom()
        while self.peek() == "[":
            node_position = self.position
            self.open("[")
            index = self.expression()
            self.close("]")
            value = Node("index", node_position, parts=(value, index))
        return value

    # atom = NUMBER | NAME | "(" expression ")" | "[" [ expression { "," expression } ] "]"
    #      | ("len" | "sum") "(" expression ")"
    def atom(self):
        start, token = self.position, self.peek()
        if token in DIGITS:
            return self.number()
        if token in NAMES:
            self.position += 1
            return Node("name", start, token)
        if token == "(":
            self.open("(")
            value = self.expression()
            self.close(")")
            return value
        if token == "[":
            self.open("[")
            elements = []
            if self.peek() != "]":
                elements.append(self.expression())
                while self.peek() == ",":
                    self.position += 1
                    elements.append(self.expression())
            if self.peek() != "]":
                raise ProgramError(f"expected ',' or ']' but found {self.found()}",
                                   self.position)
            self.close("]")
            return Node("list", start, parts=tuple(elements))
        if token in ("len", "sum"):
            self.position += 1
            self.open("(")
            value = self.expression()
            self.close(")")
            return Node(token, start, parts=(value,))
        raise ProgramError(f"expected an expression (a number, a name, '(', '[', len or sum) "
                           f"but found {self.found()}", start)

    # NUMBER = DIGIT { DIGIT }
    def number(self):
        start = self.position
        while self.peek() in DIGITS:
            self.position += 1
        literal = "".join(self.tokens[start:self.position])
        if len(literal) > MAX_DIGITS:
            raise ProgramError(f"number literal {literal} has more than {MAX_DIGITS} digits",
                               start)
        if len(literal) > 1 and literal[0] == "0":
            raise ProgramError(f"number literal {literal} starts with 0", start)
        return Node("number", start, int(literal))


def parse(tokens):
    """Tokens -> the list of statements (syntax trees); ProgramError if outside the grammar."""
    tokens = _checked_tokens(tokens)
    if not tokens:
        raise ProgramError("empty program: no statement", 0)
    if len(tokens) > MAX_TOKENS:
        raise ProgramError(f"program of {len(tokens)} tokens is longer than {MAX_TOKENS}",
                           MAX_TOKENS)
    return _Parser(tokens).program()


# ----------------------------------------------------------------------------------------------
# The evaluator: syntax trees -> values and printed lines


def _kind(value):
    return "a list" if isinstance(value, tuple) else "a number"


def _bounded(value, node):
    if abs(value) > MAX_VALUE:
        raise ProgramError(f"value {value} is too large (beyond ±{MAX_VALUE})", node.position)
    return value


def evaluate(node, names):
    """The value of an expression: an int, or a tuple of ints for a list. ``names`` maps each
    assigned name to its value."""
    if node.kind == "number":
        return node.value
    if node.kind == "name":
        if node.value not in names:
            raise ProgramError(f"undefined name {node.value!r}", node.position)
        return names[node.value]
    values = [evaluate(part, names) for part in node.parts]
    if node.kind == "list":
        for part, value in zip(node.parts, values):
            if isinstance(value, tuple):
                raise ProgramError("a list holds numbers, not lists", part.position)
        return tuple(values)
    if node.kind in ("+", "-", "*"):
        left, right = values
        if isinstance(left, tuple) or isinstance(right, tuple):
            raise ProgramError(f"{node.kind!r} needs two numbers, got {_kind(left)} and "
                               f"{_kind(right)}", node.position)
        if node.kind == "+":
            return _bounded(left + right, node)
        if node.kind == "-":
            return _bounded(left - right, node)
        return _bounded(left * right, node)
    if node.kind == "index":
        sequence, index = values
        if not isinstance(sequence, tuple) or isinstance(index, tuple):
            raise ProgramError(f"indexing needs a list and a number, got {_kind(sequence)} "
                               f"and {_kind(index)}", node.position)
        if not 0 <= index < len(sequence):
            raise ProgramError(f"index {index} is out of range for a list of "
                               f"{len(sequence)} numbers", node.position)
        return sequence[index]
    (sequence,) = values  # len or sum
    if not isinstance(sequence, tuple):
        raise ProgramError(f"{node.kind} needs a list, got a number", node.position)
    if node.kind == "len":
        return len(sequence)
    return _bounded(sum(sequence), node)


def value_text(value):
    """How print writes a value: 8, -3, [2, 5, 9]."""
    if isinstance(value, tuple):
        return "[" + ", ".join(str(element) for element in value) + "]"
    return str(value)


def run(tokens):
    """Run a program: the lines it prints, joined by "\\n". ProgramError for anything outside
    the language (the message names the problem and the token)."""
    names, lines = {}, []
    for statement in parse(tokens):
        value = evaluate(statement.parts[0], names)
        if statement.kind == "assign":
            names[statement.value] = value
        else:
            lines.append(value_text(value))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# The task: instruction -> program -> output

HELD_OUT_NUMBERS = (13, 17, 24, 29, 31, 38, 42, 46, 53, 57, 64, 68, 71, 75, 82, 86, 93, 97)
TRAIN_NUMBERS = tuple(n for n in range(100) if n not in HELD_OUT_NUMBERS)
ALL_NUMBERS = tuple(range(100))

PEOPLE = ("小明", "小红", "小刚")
ITEMS = ("苹果", "橘子", "鸡蛋")  # counted with 个
OPERATIONS = {"加": "+", "减": "-", "乘": "*"}

# Each template: (instruction, program), words separated by spaces, {slots} filled per item.
TEMPLATES = {
    "buy": ("{person} 有 {A} 个 {item} ， 又 买了 {B} 个 ， 打印 一共 有 几个 。",
            "a = {A} ; a = a + {B} ; print ( a )"),
    "eat": ("{person} 有 {A} 个 {item} ， 吃了 {B} 个 ， 打印 还剩 几个 。",
            "a = {A} ; a = a - {B} ; print ( a )"),
    "boxes": ("每 盒 有 {A} 个 {item} ， {person} 买了 {B} 盒 ， 打印 一共 有 几个 {item} 。",
              "a = {A} ; b = {B} ; print ( a * b )"),
    "calculate": ("计算 {A} {op1} {B} 再 {op2} {C} ， 打印 结果 。",
                  "x = {expression} ; print ( x )"),
    "index": ("把 {numbers} 放进 列表 ， 打印 第 {k} 个 。",
              "xs = [ {list} ] ; print ( xs [ {index} ] )"),
    "sum": ("把 {numbers} 放进 列表 ， 打印 它们 的 和 。",
            "xs = [ {list} ] ; print ( sum ( xs ) )"),
    "count": ("把 {numbers} 放进 列表 ， 打印 有 几个 数 。",
              "xs = [ {list} ] ; print ( len ( xs ) )"),
    "together": ("{person} 有 {A} 本 书 ， {other} 有 {B} 本 书 ， 打印 他们 一共 有 几本 。",
                 "a = {A} ; b = {B} ; print ( a + b )"),
    "more": ("{person} 有 {A} 本 书 ， {other} 有 {B} 本 书 ， 打印 {person} 比 {other} 多 几本 。",
             "a = {A} ; b = {B} ; print ( a - b )"),
}
LIST_TEMPLATES = ("index", "sum", "count")
LIST_LENGTHS = (2, 3)
# How many numbers an item of each template says (a list template: one of LIST_LENGTHS).
NUMBER_COUNTS = {"buy": (2,), "eat": (2,), "boxes": (2,), "calculate": (3,),
                 "index": LIST_LENGTHS, "sum": LIST_LENGTHS, "count": LIST_LENGTHS,
                 "together": (2,), "more": (2,)}
SPLITS = ("train", "test")


def _template_words():
    words = set(PEOPLE) | set(ITEMS) | set(OPERATIONS) | set(DIGITS) | {"、"}
    for instruction, _ in TEMPLATES.values():
        words.update(w for w in instruction.split() if not w.startswith("{"))
    return tuple(sorted(words))


INSTRUCTION_WORDS = _template_words()  # the lexicon; longest match over it cuts instructions
ITEM_MAX_INSTRUCTION_WORDS = 21  # the longest instruction of any item (more)
ITEM_MAX_PROGRAM_TOKENS = 20  # the longest program of any item (index and count)


@dataclass(frozen=True)
class CodeItem:
    """One code-generation item: the instruction's words, its canonical program's tokens, and
    what running the program prints."""

    instruction: tuple
    program: tuple
    output: str

    @property
    def instruction_text(self):
        return "".join(self.instruction)


def digits(number):
    """A number as tokens: 37 -> ("3", "7")."""
    return tuple(str(number))


def _fill(pattern, slots):
    """'a = {A} ; print ( a )' with slots {'A': ('3', '7')} -> ('a', '=', '3', '7', ';', ...)."""
    tokens = []
    for piece in pattern.split():
        if piece.startswith("{"):
            tokens.extend(slots[piece[1:-1]])
        else:
            tokens.append(piece)
    return tuple(tokens)


def _calculation(a, op1, b, op2, c):
    """The program's expression for 'a op1 b, then op2 c': parenthesised where * would
    otherwise bind first (7加4再乘2 is (7 + 4) * 2)."""
    inner = (*digits(a), OPERATIONS[op1], *digits(b))
    if OPERATIONS[op2] == "*" and OPERATIONS[op1] != "*":
        inner = ("(", *inner, ")")
    return (*inner, OPERATIONS[op2], *digits(c))


def _slots(template, numbers, rng):
    """The slot fillers of one item of ``template`` whose numbers are ``numbers`` (in the order
    the instruction says them; as many as the template takes)."""
    person, other = (PEOPLE[i] for i in rng.permutation(len(PEOPLE))[:2])
    item = ITEMS[rng.integers(len(ITEMS))]
    if template in LIST_TEMPLATES:
        said, written = list(digits(numbers[0])), list(digits(numbers[0]))
        for number in numbers[1:]:
            said += ["、", *digits(number)]  # 2、5、9
            written += [",", *digits(number)]  # 2 , 5 , 9
        k = int(rng.integers(1, len(numbers) + 1))  # 第k个, counted from 1
        return {"numbers": said, "list": written, "k": digits(k), "index": digits(k - 1)}
    if template == "calculate":
        op1, op2 = (list(OPERATIONS)[i] for i in rng.integers(len(OPERATIONS), size=2))
        a, b, c = numbers
        return {"A": digits(a), "B": digits(b), "C": digits(c), "op1": (op1,), "op2": (op2,),
                "expression": _calculation(a, op1, b, op2, c)}
    return {"person": (person,), "other": (other,), "item": (item,),
            **{name: digits(n) for name, n in zip("AB", numbers)}}


def _numbers(template, pool, rng):
    """The numbers of one item, drawn uniformly from ``pool``: eat and more larger first."""
    counts = NUMBER_COUNTS[template]
    size = counts[rng.integers(len(counts))]
    numbers = [pool[i] for i in rng.integers(len(pool), size=size)]
    if template in ("eat", "more"):
        numbers.sort(reverse=True)
    return numbers


def make_item(template, numbers, rng):
    """The item of ``template`` with these numbers, in the order its instruction says them
    (people, items, operations and the index drawn by rng); its output is what run prints
    for its program."""
    if template not in TEMPLATES:
        raise ValueError(f"template must be one of {sorted(TEMPLATES)}, got {template!r}")
    counts = NUMBER_COUNTS[template]
    if len(numbers) not in counts or not all(n in ALL_NUMBERS for n in numbers):
        raise ValueError(f"numbers must be {' or '.join(map(str, counts))} integers in 0-99 "
                         f"for template {template!r}, got {numbers!r}")
    instruction_pattern, program_pattern = TEMPLATES[template]
    slots = _slots(template, numbers, rng)
    program = _fill(program_pattern, slots)
    return CodeItem(_fill(instruction_pattern, slots), program, run(program))


def code_items(rng, n, split="train"):
    """n items, each of a template drawn uniformly. "train" items use no held-out number;
    "test" items use at least one (drawn from 0-99 until one is there)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    templates = list(TEMPLATES)
    items = []
    for _ in range(n):
        template = templates[rng.integers(len(templates))]
        if split == "train":
            numbers = _numbers(template, TRAIN_NUMBERS, rng)
        else:
            numbers = _numbers(template, ALL_NUMBERS, rng)
            while not any(number in HELD_OUT_NUMBERS for number in numbers):
                numbers = _numbers(template, ALL_NUMBERS, rng)
        items.append(make_item(template, numbers, rng))
    return items

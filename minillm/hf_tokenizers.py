"""Hugging Face tokenizers: GPT-2's and BART's byte-level BPE and BERT's WordPiece, read from a
model folder; and minillm's own tokenizer written as a ``tokenizer.json`` that transformers loads.

    from minillm.hf_tokenizers import load_tokenizer
    tok = load_tokenizer("gpt2/")            # a folder saved by transformers, or downloaded
    ids = tok.encode("Hello world")          # transformers' encode(text, add_special_tokens=False)
    tok.encode("Hello world", add_special_tokens=True)  # BART's <s> .. </s>, BERT's [CLS] .. [SEP]
    tok.decode(ids)                          # "Hello world"
    tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id, tok.mask_id, tok.cls_id, tok.sep_id   # or None

A text becomes ids in the steps Hugging Face's tokenizers library takes:

    1. added tokens   the special tokens (<|endoftext|>, <mask>, [MASK], ...) written in the text
                      are cut out first and become their ids (split_on_added_tokens)
    2. normalize      BERT only: clean, space out CJK characters, strip accents, lower-case
    3. pre-tokenize   cut the rest into words: GPT-2's pattern (gpt2_split) or BERT's
                      whitespace-and-punctuation split (bert_split)
    4. model          each word into tokens: byte-pair merges by rank (bpe) or greedy
                      longest-match-first WordPiece (wordpiece)
    5. post-process   only with add_special_tokens=True: BART's <s> X </s>, BERT's [CLS] X [SEP]

GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners", §2.2) runs BPE
(Sennrich et al. 2016) on **bytes**: the text's UTF-8 bytes, each shown as one printable
character (bytes_to_unicode), so the 256 bytes are the base symbols and no text is ever unknown.
Its pattern keeps merges within one kind of character: letters, digits, other symbols and
whitespace are never one token, and a space sticks to the word after it ("Ġworld"). BART (Lewis
et al. 2020) uses GPT-2's tokenizer unchanged. BERT (Devlin et al. 2019) lower-cases and strips
accents (the uncased models), cuts at whitespace and punctuation and around every CJK character,
and then takes, from the start of each word, the longest vocabulary entry; pieces after the first
carry the prefix ## ("playing" -> play ##ing). A word with a position where nothing matches, or
longer than max_input_chars_per_word (100) characters, is one [UNK].

Which files decide, as in transformers: a folder's ``tokenizer_config.json`` names the class
(GPT2Tokenizer, BartTokenizer or RobertaTokenizer, BertTokenizer; without it, ``config.json``'s
model_type), and that class fixes the steps, with the settings the config gives
(do_lower_case, strip_accents, tokenize_chinese_chars, add_prefix_space; for GPT-2 without a
tokenizer.json, add_bos_token and add_eos_token) or the class's defaults. The vocabulary (and
merges) come from ``tokenizer.json`` if there is one, else from ``vocab.json`` + ``merges.txt``
(GPT-2, BART) or ``vocab.txt`` (BERT); the special tokens from ``tokenizer_config.json`` and
``special_tokens_map.json``, or the class's defaults. A folder with only a ``tokenizer.json``
(class PreTrainedTokenizerFast) follows that file's steps, if they are among the ones above.

Characters are classed (letter, number, punctuation, mark, control) by Python's unicodedata:
Unicode 14.0 in Python 3.11. tokenizers has its own tables, of other Unicode versions, and the
two disagree on some rarely used characters: compared code point by code point with tokenizers
0.23, GPT-2's pattern agrees on every character Unicode 14.0 assigns (not on 9,392 that later
versions assigned), and BERT's normalizer and pre-tokenizer differ on about 560 (marks, format characters and punctuation that recent Unicode
versions added or re-classed), where the two can cut a text differently.

A file that is too large, malformed, or asks for what is not implemented here raises
``TokenizerFileError`` (a ValueError), one line naming the file and the field. Sizes are checked
before reading (MAX_TOKENIZER_BYTES, MAX_CONFIG_BYTES).

The other way, ``minillm_tokenizer_json(tokenizer)`` writes minillm's longest-match tokenizer
(tokenizer.py) as a tokenizer.json for transformers' PreTrainedTokenizerFast: see that function.
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass

import numpy as np

from . import safetensors
from .files import loads_json, read_bytes, show
from .tokenizer import SPECIAL_TOKENS

# The largest tokenizer.json, vocab.json, merges.txt or vocab.txt read: GPT-2's tokenizer.json
# is 1.4 MB, BERT's vocab.txt 0.2 MB; 32 MiB leaves room for vocabularies 20 times larger.
MAX_TOKENIZER_BYTES = 32 << 20
# The largest tokenizer_config.json, special_tokens_map.json or config.json read.
MAX_CONFIG_BYTES = 1 << 20


class TokenizerFileError(ValueError):
    """A tokenizer file that cannot be read: the message names the file and the field."""


# ----------------------------------------------------------------------------------------------
# GPT-2: bytes as characters, the pre-tokenization pattern, merges by rank


def bytes_to_unicode():
    """GPT-2's map from each of the 256 byte values to one printable character.

    Bytes that are printable Latin-1 characters ('!'..'~', '¡'..'¬', '®'..'ÿ': 188 of them) stand
    for themselves; the other 68 (controls, the space, DEL, NBSP, the soft hyphen) are given the
    characters from U+0100 on, in byte order. So the space 0x20 is 'Ġ' (U+0120) and the newline
    0x0A is 'Ċ': every token of a byte-level vocabulary is a readable string.
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable}
    table.update({b: chr(0x100 + k) for k, b in enumerate(others)})
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {ch: b for b, ch in BYTE_TO_CHAR.items()}

# Unicode's White_Space property: what \s matches in the regex engine of tokenizers (Oniguruma)
# and what Rust's char::is_whitespace tests. Python's str.isspace also holds U+001C..U+001F, which
# these do not.
WHITE_SPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                        "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
# GPT-2's pattern starts with these English contractions, tried in this order (case-sensitive).
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def char_kind(ch):
    """The class of a character in GPT-2's pattern: "L" a letter (\\p{L}), "N" a number (\\p{N}),
    "S" whitespace (\\s), "O" anything else."""
    if ch in WHITE_SPACE:
        return "S"
    category = unicodedata.category(ch)[0]
    return category if category in "LN" else "O"


def gpt2_split(text):
    """Text -> GPT-2's pre-tokens: the matches, left to right, of GPT-2's pattern

        's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

    The alternatives are tried in this order at each position and the first that matches wins.
    Python's re has no \\p{L}, so the pattern is written out as code, one alternative per step.

        "Hello  world's 12€"  ->  "Hello" | " " | " world" | "'s" | " 12" | "€"
    """
    pieces, i, n = [], 0, len(text)
    while i < n:
        end = _gpt2_match_end(text, i)
        pieces.append(text[i:end])
        i = end
    return pieces


def _gpt2_match_end(text, i):
    """Where the match of GPT-2's pattern that starts at ``i`` ends."""
    n = len(text)
    for c in CONTRACTIONS:  # 's|'t|'re|'ve|'m|'ll|'d
        if text.startswith(c, i):
            return i + len(c)
    # ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': an optional space, then a run of one kind
    start = i + 1 if text[i] == " " and i + 1 < n else i
    kind = char_kind(text[start])
    if kind != "S":
        end = start + 1
        while end < n and char_kind(text[end]) == kind:
            end += 1
        return end
    # '\s+(?!\S)': whitespace up to the end of the text, or up to (not including) the last
    # whitespace character before a non-space, which then starts the next piece (" world").
    end = i + 1
    while end < n and char_kind(text[end]) == "S":
        end += 1
    if end == n or end - 1 > i:
        return end if end == n else end - 1
    return end  # '\s+': one whitespace character alone before a non-space


def bpe(word, ranks):
    """One pre-token's symbols after byte-pair merging (Sennrich et al. 2016, as GPT-2 applies it).

    ``word`` is a string of base symbols (one character each); ``ranks`` maps a pair of symbols to
    the rank of its merge (its line in merges.txt: the earlier learned, the lower). Repeatedly:
    among the adjacent pairs, take the one of lowest rank and merge every occurrence of it, left
    to right; stop when no adjacent pair has a rank.

        "Ġlower", ranks {(Ġ,l): 0, (o,w): 1, (Ġl,ow): 2, (e,r): 3}
        Ġ l o w e r -> Ġl o w e r -> Ġl ow e r -> Ġlow e r -> Ġlow er
    """
    symbols = list(word)
    while len(symbols) > 1:
        best, best_rank = None, None
        for pair in zip(symbols, symbols[1:]):
            rank = ranks.get(pair)
            if rank is not None and (best_rank is None or rank < best_rank):
                best, best_rank = pair, rank
        if best is None:
            break
        merged, k = [], 0
        while k < len(symbols):
            if k + 1 < len(symbols) and (symbols[k], symbols[k + 1]) == best:
                merged.append(symbols[k] + symbols[k + 1])
                k += 2
            else:
                merged.append(symbols[k])
                k += 1
        symbols = merged
    return symbols


# ----------------------------------------------------------------------------------------------
# BERT: the basic tokenizer (normalize, split) and WordPiece

# The CJK Unified Ideographs blocks that BERT spaces out, as tokenizers' BertNormalizer lists them:
# U+4E00..9FFF, Extensions A to E, the compatibility ideographs and their supplement. Extension E
# starts at U+2B920 there, where BERT's tokenization.py has U+2B820: transformers, which runs
# tokenizers, leaves U+2B820..2B91F unspaced, and so does minillm. No kana, no Hangul.
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# The categories BERT's clean_text drops: controls, formats, private use, surrogates.
CONTROL = frozenset(("Cc", "Cf", "Co", "Cs"))


def is_cjk(ch):
    """True for a CJK ideograph, which BERT makes a word of its own."""
    cp = ord(ch)
    if cp < 0x3400:  # below every range: most text stops here
        return False
    for low, high in CJK_RANGES:
        if low <= cp <= high:
            return True
    return False


def is_bert_punctuation(ch):
    """BERT's punctuation: every ASCII non-letter, non-digit, non-space printable ($, +, <, ^, `
    and | included, though Unicode calls them symbols) and every character of Unicode category P."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def bert_normalize(text, clean_text=True, handle_chinese_chars=True, strip_accents=True,
                   lowercase=True):
    """BERT's normalizer, its steps in the order tokenizers' BertNormalizer takes them.

    clean_text             drop NUL, U+FFFD and the control characters (categories Cc, Cf,
                           Co, Cs; not Cn, the unassigned) but tab, newline and carriage
                           return, which become " " as all whitespace does
    handle_chinese_chars   a space before and after every CJK ideograph
    strip_accents          NFD, then drop the combining marks (category Mn): é -> e
    lowercase              each character lower-cased on its own (Σ -> σ even at a word's end)
    """
    if clean_text:
        kept = []
        for ch in text:
            if ch in "\t\n\r":
                kept.append(" ")
            elif ch == "\x00" or ch == "\ufffd" or unicodedata.category(ch) in CONTROL:
                continue  # a control character, even one that is also whitespace (\x0b, \x85)
            else:
                kept.append(" " if ch in WHITE_SPACE else ch)
        text = "".join(kept)
    if handle_chinese_chars:
        text = "".join(f" {ch} " if is_cjk(ch) else ch for ch in text)
    if strip_accents:
        text = "".join(ch for ch in unicodedata.normalize("NFD", text)
                       if unicodedata.category(ch) != "Mn")
    if lowercase:
        text = "".join(ch.lower() for ch in text)
    return text


def bert_split(text):
    """BERT's pre-tokenizer: words cut at whitespace (dropped) and punctuation (each character a
    word of its own). "Hello, world!" -> "Hello" | "," | "world" | "!" """
    words, current = [], []
    for ch in text:
        if ch in WHITE_SPACE or is_bert_punctuation(ch):
            if current:
                words.append("".join(current))
                current = []
            if ch not in WHITE_SPACE:
                words.append(ch)
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    return words


def wordpiece(word, vocab, unk_token="[UNK]", prefix="##", max_chars=100):
    """One word -> its WordPiece tokens: greedy longest-match-first (BERT's WordpieceTokenizer).

    From the word's start take the longest piece that is in ``vocab``, then from where it ended
    the longest ``prefix`` + piece, and so on. If at some position no piece matches, or the word
    has more than ``max_chars`` characters, the whole word is ``[unk_token]``.

        "unaffable" -> un | ##aff | ##able
    """
    if len(word) > max_chars:
        return [unk_token]
    tokens, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else prefix + word[start:end]
            if piece in vocab:
                tokens.append(piece)
                start = end
                break
        else:
            return [unk_token]
    return tokens


# ----------------------------------------------------------------------------------------------
# Added tokens: the special tokens in a text


@dataclass(frozen=True)
class AddedToken:
    """A token matched in the raw text before anything else (tokenizer.json's added_tokens).
    ``lstrip``/``rstrip``: the match also swallows the whitespace before/after it (BART's <mask>);
    ``normalized``: matched in the normalized text rather than the raw text."""

    content: str
    id: int
    special: bool = True
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = False


def split_on_added_tokens(text, tokens):
    """Text -> a list of plain strings and AddedTokens, in order: the added tokens found in
    ``text`` (a dict content -> AddedToken), the leftmost first and, of those starting at the same
    place, the longest; the text between them as strings (never empty ones).

        "hello <mask> world", <mask> with lstrip  ->  ["hello", <mask>, " world"]
    """
    lengths = sorted({len(c) for c in tokens}, reverse=True)
    firsts = {c[0] for c in tokens}
    out, done, i = [], 0, 0  # text[:done] is in out; a match is looked for at i
    while i < len(text):
        match = None
        if text[i] in firsts:  # (a quick test first: most characters start no token)
            match = next((tokens[text[i:i + n]] for n in lengths if text[i:i + n] in tokens), None)
        if match is None:
            i += 1
            continue
        start, stop = i, i + len(match.content)
        if match.lstrip:
            while start > done and text[start - 1] in WHITE_SPACE:
                start -= 1
        if match.rstrip:
            while stop < len(text) and text[stop] in WHITE_SPACE:
                stop += 1
        if start > done:
            out.append(text[done:start])
        out.append(match)
        done = i = stop
    if done < len(text):
        out.append(text[done:])
    return out


# ----------------------------------------------------------------------------------------------
# The tokenizer

SPECIAL_NAMES = ("bos", "eos", "unk", "pad", "mask", "cls", "sep")


class HFTokenizer:
    """A Hugging Face tokenizer, run by minillm. Made by load_tokenizer.

    ``model`` is "bpe" (byte-level, GPT-2 and BART) or "wordpiece" (BERT). Attributes: ``vocab``
    (token -> id), ``id_to_token`` (id -> token, the added tokens included), the special ids
    ``bos_id``, ``eos_id``, ``unk_id``, ``pad_id``, ``mask_id``, ``cls_id``, ``sep_id`` (None
    where the tokenizer has no such token) and ``special_tokens`` (name -> string).
    """

    def __init__(self, *, model, vocab, merges=(), unk_token=None, added=(), specials=None,
                 normalizer=None, add_prefix_space=False, prefix="##", max_chars=100,
                 wrap=((), ()), decoder=None, clean_up_spaces=False, name="tokenizer"):
        self.model = model
        self.vocab = dict(vocab)
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.unk_token = unk_token
        self.added = {t.content: t for t in added}
        # matched in the raw text, and in the normalized text (tokenize, step 1)
        self._raw_added = {c: t for c, t in self.added.items() if not t.normalized}
        self._normalized_added = {c: t for c, t in self.added.items() if t.normalized}
        self.normalizer = normalizer  # None, or the keyword arguments of bert_normalize
        self.add_prefix_space = add_prefix_space
        self.prefix, self.max_chars = prefix, max_chars
        self.wrap = (list(wrap[0]), list(wrap[1]))  # the ids before and after a sequence
        self.decoder = decoder  # "byte_level", "wordpiece" or None (tokens joined by spaces)
        self.clean_up_spaces = clean_up_spaces
        self.name = name
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.id_to_token.update({t.id: t.content for t in added})
        self.special_tokens = dict(specials or {})
        for key in SPECIAL_NAMES:
            token = self.special_tokens.get(key)
            setattr(self, key + "_id", None if token is None else self.token_id(token))
        self.special_ids = frozenset(t.id for t in added if t.special)

    def __len__(self):
        """The number of ids: one more than the largest."""
        return max(self.id_to_token, default=-1) + 1

    def __repr__(self):
        return f"HFTokenizer({self.name!r}, {self.model}, {len(self)} ids)"

    def token_id(self, token):
        """The id of a token string (an added token's or the vocabulary's)."""
        added = self.added.get(token)
        return added.id if added is not None else self.vocab[token]

    def is_special(self, token_id):
        """True for the ids of the special added tokens (<s>, [CLS], <|endoftext|>, ...)."""
        return token_id in self.special_ids

    # ------------------------------------------------------------------------------------------

    def tokenize(self, text):
        """Text -> token strings (steps 1 to 4 of the module docstring)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}: {text!r}")
        tokens = []
        for part in split_on_added_tokens(text, self._raw_added):
            if isinstance(part, AddedToken):
                tokens.append(part.content)
                continue
            if self.normalizer is not None:
                part = bert_normalize(part, **self.normalizer)
            for piece in split_on_added_tokens(part, self._normalized_added):
                if isinstance(piece, AddedToken):
                    tokens.append(piece.content)
                else:
                    tokens.extend(self._model_tokens(piece))
        return tokens

    def _model_tokens(self, text):
        """Steps 3 and 4 on a piece of text between added tokens."""
        if self.model == "bpe":
            if self.add_prefix_space and not text.startswith(" "):
                text = " " + text
            out = []
            for word in gpt2_split(text):
                chars = "".join(BYTE_TO_CHAR[b] for b in word.encode("utf-8"))
                for symbol in bpe(chars, self.ranks):
                    if symbol in self.vocab:
                        out.append(symbol)
                    elif self.unk_token is not None:
                        out.append(self.unk_token)
                    # else: a symbol with no id is dropped, as tokenizers does (BPE without unk)
            return out
        out = []
        for word in bert_split(text):
            out.extend(wordpiece(word, self.vocab, self.unk_token, self.prefix, self.max_chars))
        return out

    def encode(self, text, add_special_tokens=False):
        """Text -> token ids. ``add_special_tokens``: with the tokens the architecture puts around
        a sequence (BART <s> ... </s>, BERT [CLS] ... [SEP]), as transformers' tokenizer(text)."""
        ids = [self.token_id(t) for t in self.tokenize(text)]
        if add_special_tokens:
            ids = self.wrap[0] + ids + self.wrap[1]
        return ids

    def decode(self, ids, skip_special_tokens=False):
        """Token ids -> text, as the tokenizer's decoder makes it: byte-level tokens back to bytes
        and UTF-8 (an incomplete character as U+FFFD); WordPiece tokens joined by spaces, the ##
        pieces glued to the word before them."""
        if isinstance(ids, (str, bytes)):
            raise TypeError(f"ids must be a sequence of token ids, got a {type(ids).__name__}")
        tokens = []
        for k, i in enumerate(ids):
            if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
                raise TypeError(f"ids must hold integers, got ids[{k}] = {i!r}")
            if int(i) not in self.id_to_token:
                raise ValueError(f"ids[{k}] = {int(i)} is not an id of this tokenizer")
            if not (skip_special_tokens and self.is_special(int(i))):
                tokens.append(self.id_to_token[int(i)])
        if self.decoder == "byte_level":
            data = b"".join(_token_bytes(t) for t in tokens)
            text = data.decode("utf-8", errors="replace")
        elif self.decoder == "wordpiece":
            text = "".join(_wordpiece_join(t, k, self.prefix) for k, t in enumerate(tokens))
        else:
            text = " ".join(tokens)
        if self.clean_up_spaces and self.model != "bpe":  # transformers skips it for BPE
            text = clean_up_tokenization(text)
        return text


def _token_bytes(token):
    """A byte-level token's bytes; a token outside the byte alphabet (an added token such as
    <|endoftext|> is inside it; one with a space is not) stands for its own UTF-8."""
    if all(ch in CHAR_TO_BYTE for ch in token):
        return bytes(CHAR_TO_BYTE[ch] for ch in token)
    return token.encode("utf-8")


# tokenizers' WordPiece decoder tidies each token so joined (its "cleanup"): no space before . ? ! ,
WORDPIECE_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                     (" n't", "n't"), (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"),
                     (" 've", "'ve"), (" 're", "'re"))


def _wordpiece_join(token, k, prefix):
    """The k-th token as the WordPiece decoder writes it: a ## piece glued on, any other token
    after a space (not the first), then the cleanup."""
    if k > 0:
        token = token[len(prefix):] if token.startswith(prefix) else " " + token
    for dirty, clean in WORDPIECE_CLEANUP:
        token = token.replace(dirty, clean)
    return token


def clean_up_tokenization(text):
    """transformers' clean_up_tokenization_spaces: the spaces of a WordPiece decoding taken out
    before punctuation and English contractions."""
    for dirty, clean in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                         (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"),
                         (" 're", "'re")):
        text = text.replace(dirty, clean)
    return text


# ----------------------------------------------------------------------------------------------
# Reading a folder

# transformers' tokenizer classes for the three architectures, and model_type -> architecture.
TOKENIZER_CLASSES = {"GPT2Tokenizer": "gpt2", "BartTokenizer": "bart", "RobertaTokenizer": "bart",
                     "BertTokenizer": "bert"}
GENERIC_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")
MODEL_TYPES = {"gpt2": "gpt2", "bart": "bart", "roberta": "bart", "bert": "bert"}
# Each class's special tokens when the folder names none (transformers' defaults).
DEFAULT_SPECIALS = {
    "gpt2": {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "unk": "<|endoftext|>"},
    "bart": {"bos": "<s>", "eos": "</s>", "sep": "</s>", "cls": "<s>", "unk": "<unk>",
             "pad": "<pad>", "mask": "<mask>"},
    "bert": {"unk": "[UNK]", "sep": "[SEP]", "pad": "[PAD]", "cls": "[CLS]", "mask": "[MASK]"},
}


class _Folder:
    """The files of a tokenizer folder, read on demand: only regular files, never more than a
    stated size, JSON strictly; every failure a TokenizerFileError naming the file."""

    def __init__(self, folder):
        self.folder = os.fsdecode(folder)
        if not os.path.isdir(self.folder):
            raise TokenizerFileError(f"tokenizer folder {self.folder!r} is not a folder")

    def path(self, name):
        return os.path.join(self.folder, name)

    def has(self, name):
        return os.path.lexists(self.path(name))

    def text(self, name, small=False):
        """The file's UTF-8 text: a configuration file (``small``) of at most MAX_CONFIG_BYTES,
        a vocabulary of at most MAX_TOKENIZER_BYTES."""
        path = self.path(name)
        try:
            data = read_bytes(path, "tokenizer file",
                              MAX_CONFIG_BYTES if small else MAX_TOKENIZER_BYTES)
        except TokenizerFileError:
            raise
        except ValueError as err:  # too large, a FIFO, a folder
            raise TokenizerFileError(str(err)) from None
        except OSError as err:
            raise TokenizerFileError(f"cannot read {path}: {err.strerror or err}") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise TokenizerFileError(f"{path} is not UTF-8 (byte {err.start})") from None

    def json(self, name, small=False):
        """The JSON object in the file, or None if there is no such file."""
        if not self.has(name):
            return None
        path = self.path(name)
        try:
            value = loads_json(self.text(name, small), path)
        except TokenizerFileError:
            raise
        except ValueError as err:
            raise TokenizerFileError(str(err)) from None
        if not isinstance(value, dict):
            raise TokenizerFileError(f"{path} holds a JSON {type(value).__name__}, not an object")
        return value


def _field(obj, key, types, path, where="", default=None):
    """obj[key] if it is one of ``types`` (a type or a tuple of them), ``default`` if obj has no
    such key; else a TokenizerFileError naming ``path`` and the field."""
    if key not in obj:
        return default
    value = obj[key]
    types = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise TokenizerFileError(f"{path}: {where}{key} is {show(value)}, not a {names}")
    return value


def _read_vocab(vocab, path, where):
    """A JSON token -> id object, checked: ids are distinct non-negative integers."""
    if not isinstance(vocab, dict):
        raise TokenizerFileError(f"{path}: {where} is a {type(vocab).__name__}, not an object of "
                                 "token -> id")
    seen = {}
    for token, i in vocab.items():
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise TokenizerFileError(f"{path}: {where}[{show(token)}] is {show(i)}, not an id "
                                     "(a non-negative integer)")
        if i in seen:
            raise TokenizerFileError(f"{path}: {where} gives the id {i} to both {show(seen[i])} "
                                     f"and {show(token)}")
        seen[i] = token
    return vocab


def _read_merges(merges, vocab, path, where):
    """tokenizer.json's list of merges ("a b" strings or [a, b] pairs) -> a list of (a, b)."""
    if not isinstance(merges, list):
        raise TokenizerFileError(f"{path}: {where} is a {type(merges).__name__}, not a list")
    pairs = []
    for k, m in enumerate(merges):
        pair = m.split(" ") if isinstance(m, str) else m
        if not (isinstance(pair, list) and len(pair) == 2 and all(
                isinstance(p, str) and p for p in pair)):
            raise TokenizerFileError(f"{path}: {where}[{k}] is {show(m)}, not a pair of tokens")
        pairs.append((pair[0], pair[1]))
    _check_merges(pairs, vocab, [f"{path}: {where}[{k}]" for k in range(len(pairs))])
    return pairs


def _check_merges(pairs, vocab, places):
    """Each merge's two parts and their merge are in the vocabulary (as tokenizers requires)."""
    for (a, b), place in zip(pairs, places):
        for token in (a, b, a + b):
            if token not in vocab:
                raise TokenizerFileError(f"{place} ({show(a + ' ' + b)}) needs {show(token)}, "
                                         "which is not in the vocabulary")


def _merges_txt(text, vocab, path):
    """merges.txt: an optional "#version" first line, then one merge "a b" per line, in rank
    order (as GPT-2's encoder.py reads it)."""
    lines = _lines(text)
    first = 1 if lines and lines[0].startswith("#version") else 0
    pairs, places = [], []
    for n in range(first, len(lines)):
        pair = lines[n].split(" ")
        if len(pair) != 2 or not all(pair):
            raise TokenizerFileError(f"{path} line {n + 1}: {show(lines[n])} is not two tokens "
                                     "separated by one space")
        pairs.append((pair[0], pair[1]))
        places.append(f"{path} line {n + 1}")
    _check_merges(pairs, vocab, places)
    return pairs


def _vocab_txt(text):
    """vocab.txt: one token per line, its id the line's number from 0 (a token written twice
    keeps the id of its last line, as transformers reads it)."""
    return {token: i for i, token in enumerate(_lines(text))}


def _lines(text):
    """The lines of a text file as Python's text mode reads them (\\n, \\r\\n or \\r ends a line),
    without their ends."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _special_value(value, path, key):
    """A special token as tokenizer_config.json or special_tokens_map.json gives it: a string, an
    object with "content" (an AddedToken), or null. -> (content or None, flags dict)."""
    if value is None or isinstance(value, str):
        return value, {}
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"], {f: bool(value.get(f, False)) for f in ("lstrip", "rstrip")}
    raise TokenizerFileError(f"{path}: {key} is {show(value)}, not a token (a string, or an "
                             "object with a \"content\" string)")


def _read_added(entries, path, where):
    """Added tokens: tokenizer.json's added_tokens (a list of objects, each with its "id") or
    tokenizer_config.json's added_tokens_decoder (an object id -> token)
    -> {content: AddedToken}."""
    if isinstance(entries, dict):
        items = [(f"{where}[{show(key)}]", key, entry) for key, entry in entries.items()]
    else:
        items = [(f"{where}[{k}]", e.get("id") if isinstance(e, dict) else None, e)
                 for k, e in enumerate(entries)]
    added = {}
    for place, token_id, entry in items:
        if not isinstance(entry, dict):
            raise TokenizerFileError(f"{path}: {place} is {show(entry)}, not an object")
        if isinstance(token_id, str) and token_id.isdigit():  # added_tokens_decoder's keys
            token_id = int(token_id)
        if isinstance(token_id, bool) or not isinstance(token_id, int) or token_id < 0:
            raise TokenizerFileError(f"{path}: {place}.id is {show(token_id)}, not an id")
        content = _field(entry, "content", str, path, place + ".")
        if not content:
            raise TokenizerFileError(f"{path}: {place}.content is missing or empty")
        if _field(entry, "single_word", bool, path, place + ".", False):
            raise TokenizerFileError(f"{path}: {place}.single_word is true ({show(content)}), "
                                     "which minillm does not implement")
        flags = {f: _field(entry, f, bool, path, place + ".", False)
                 for f in ("special", "lstrip", "rstrip", "normalized")}
        added[content] = AddedToken(content, token_id, **flags)
    return added


def _named_specials(defaults, sources, added, vocab):
    """The special tokens by name ("bos", "eos", ...): the class's ``defaults``, replaced by what
    ``sources`` name (pairs (path, dict): tokenizer_config.json, then special_tokens_map.json).
    A named token that is not an added token yet becomes one, special, as transformers makes it;
    ``added`` (content -> AddedToken) grows in place. -> {name: content}"""
    specials = {}
    for key in SPECIAL_NAMES:
        content, flags, source = defaults.get(key), {}, None
        for path, obj in sources:
            if key + "_token" in obj:
                content, flags = _special_value(obj[key + "_token"], path, key + "_token")
                source = f"{path}: {key}_token"
        if content is None:
            continue
        if content not in added:
            if content not in vocab:
                if source is None:
                    continue  # a default the vocabulary lacks: the tokenizer has no such token
                raise TokenizerFileError(f"{source} is {show(content)}, which is not in the "
                                         "vocabulary")
            added[content] = AddedToken(content, vocab[content], special=True, **flags)
        specials[key] = content
    return specials


def _architecture(folder, config, tokenizer_json):
    """"gpt2", "bart" or "bert" from tokenizer_config.json's tokenizer_class or config.json's
    model_type; None for a generic tokenizer.json (PreTrainedTokenizerFast)."""
    path = folder.path("tokenizer_config.json")
    name = _field(config, "tokenizer_class", (str, type(None)), path)
    if name is not None:
        base = name[:-len("Fast")] if name.endswith("Fast") else name
        if base in TOKENIZER_CLASSES:
            return TOKENIZER_CLASSES[base]
        if name in GENERIC_CLASSES and tokenizer_json is not None:
            return None
        raise TokenizerFileError(f"{path}: tokenizer_class {name!r} is not supported: minillm "
                                 "reads GPT2Tokenizer, BartTokenizer, RobertaTokenizer, "
                                 "BertTokenizer and PreTrainedTokenizerFast (with tokenizer.json)")
    model_config = folder.json("config.json", small=True) or {}
    model_type = _field(model_config, "model_type", str, folder.path("config.json"))
    if model_type in MODEL_TYPES:
        return MODEL_TYPES[model_type]
    if tokenizer_json is not None:
        return None
    raise TokenizerFileError(f"{folder.folder}: no tokenizer_config.json tokenizer_class nor "
                             "config.json model_type says which tokenizer this is (gpt2, bart or "
                             f"bert); config.json's model_type is {show(model_type)}")


def load_tokenizer(folder):
    """The tokenizer of a Hugging Face folder (see the module docstring for which files decide).

    Raises TokenizerFileError (a ValueError) naming the file and field of anything it cannot use.
    """
    folder = _Folder(folder)
    tj = folder.json("tokenizer.json")
    tj_path = folder.path("tokenizer.json")
    config = folder.json("tokenizer_config.json", small=True) or {}
    config_path = folder.path("tokenizer_config.json")
    special_map = folder.json("special_tokens_map.json", small=True) or {}
    arch = _architecture(folder, config, tj)
    if arch is None:
        return _from_tokenizer_json(tj, tj_path, config, config_path, special_map, folder)

    # The vocabulary and merges: tokenizer.json's model, else the vocabulary files.
    model = "wordpiece" if arch == "bert" else "bpe"
    if tj is not None:
        section = _field(tj, "model", dict, tj_path, default={})
        expected = {"bpe": "BPE", "wordpiece": "WordPiece"}[model]
        if section.get("type", expected) != expected:
            raise TokenizerFileError(f"{tj_path}: model.type is {show(section.get('type'))}, but "
                                     f"a {arch} tokenizer's model is {expected}")
        vocab = _read_vocab(section.get("vocab"), tj_path, "model.vocab")
        merges = (_read_merges(section.get("merges", []), vocab, tj_path, "model.merges")
                  if model == "bpe" else [])
        added_source = _field(tj, "added_tokens", list, tj_path, default=[])
        added_path, added_where = tj_path, "added_tokens"
    elif model == "bpe":
        for name in ("vocab.json", "merges.txt"):
            if not folder.has(name):
                raise TokenizerFileError(f"{folder.folder} has neither tokenizer.json nor "
                                         f"{name}: a {arch} tokenizer needs tokenizer.json, or "
                                         "vocab.json and merges.txt")
        vocab = _read_vocab(folder.json("vocab.json"), folder.path("vocab.json"), "the vocabulary")
        merges = _merges_txt(folder.text("merges.txt"), vocab, folder.path("merges.txt"))
        added_source, added_path, added_where = [], None, None
    else:
        if not folder.has("vocab.txt"):
            raise TokenizerFileError(f"{folder.folder} has neither tokenizer.json nor vocab.txt: "
                                     "a bert tokenizer needs one of them")
        vocab, merges = _vocab_txt(folder.text("vocab.txt")), []
        added_source, added_path, added_where = [], None, None

    # The added tokens: tokenizer_config.json's added_tokens_decoder (as transformers saves
    # them), else tokenizer.json's added_tokens; then every named special token not among them.
    decoder_entries = _field(config, "added_tokens_decoder", dict, config_path)
    if decoder_entries is not None:
        added_source, added_path, added_where = decoder_entries, config_path, "added_tokens_decoder"
    added = _read_added(added_source, added_path, added_where)
    specials = _named_specials(DEFAULT_SPECIALS[arch], [(config_path, config), (
        folder.path("special_tokens_map.json"), special_map)], added, vocab)

    # The class's steps, with the config's settings or the class's defaults.
    settings = {}
    for key, default in (("do_lower_case", True), ("tokenize_chinese_chars", True),
                         ("add_prefix_space", False), ("add_bos_token", False),
                         ("add_eos_token", False)):
        settings[key] = _field(config, key, bool, config_path, default=default)
    strip_accents = _field(config, "strip_accents", (bool, type(None)), config_path)
    clean_up = _field(config, "clean_up_tokenization_spaces", bool, config_path, default=False)

    added_tokens = list(added.values())
    ids_of = {t.content: t.id for t in added_tokens}
    if arch == "bert":
        lower = settings["do_lower_case"]
        normalizer = {"clean_text": True, "lowercase": lower,
                      "handle_chinese_chars": settings["tokenize_chinese_chars"],
                      "strip_accents": lower if strip_accents is None else strip_accents}
        wrap = _wrap_ids(specials, ids_of, "cls", "sep")
        if "unk" not in specials:
            raise TokenizerFileError(f"{folder.folder}: the vocabulary has no [UNK], the token "
                                     "WordPiece gives a word it cannot cut")
        return HFTokenizer(model="wordpiece", vocab=vocab, unk_token=specials["unk"],
                           added=added_tokens, specials=specials, normalizer=normalizer,
                           wrap=wrap, decoder="wordpiece", clean_up_spaces=clean_up,
                           name=folder.folder)
    if arch == "bart":
        wrap = _wrap_ids(specials, ids_of, "cls", "sep")
    elif tj is None:  # GPT-2's template as transformers writes it from the config: by default
        wrap = _wrap_ids(specials, ids_of, "bos" if settings["add_bos_token"] else None,  # none
                         "eos" if settings["add_eos_token"] else None)
    else:  # tokenizer.json's template (transformers 5 then ignores add_bos_token, add_eos_token)
        wrap = _post_processor(tj.get("post_processor"), tj_path, ids_of)
    return HFTokenizer(model="bpe", vocab=vocab, merges=merges, added=added_tokens,
                       specials=specials, add_prefix_space=settings["add_prefix_space"],
                       wrap=wrap, decoder="byte_level", clean_up_spaces=clean_up,
                       name=folder.folder)


def _wrap_ids(specials, ids_of, before, after):
    """([id of specials[before]], [id of specials[after]]) (an empty list for None or a name the
    tokenizer lacks): BART's <s> X </s>, BERT's [CLS] X [SEP]."""
    return ([ids_of[specials[before]]] if before in specials else [],
            [ids_of[specials[after]]] if after in specials else [])


def _post_processor(post, path, ids_of, where="post_processor"):
    """tokenizer.json's post_processor -> (ids before, ids after) a single sequence."""
    if post is None:
        return [], []
    if not isinstance(post, dict):
        raise TokenizerFileError(f"{path}: {where} is {show(post)}, not an object")
    kind = post.get("type")
    if kind == "ByteLevel":  # offsets only
        return [], []
    if kind in ("RobertaProcessing", "BertProcessing"):
        ends = []
        for key in ("cls", "sep"):
            entry = post.get(key)
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], int)):
                raise TokenizerFileError(f"{path}: {where}.{key} is {show(entry)}, not a "
                                         "[token, id] pair")
            ends.append([entry[1]])
        return ends[0], ends[1]
    if kind == "TemplateProcessing":
        single = post.get("single")
        table = post.get("special_tokens", {})
        before, after, seen = [], [], False
        if not isinstance(single, list) or not isinstance(table, dict):
            raise TokenizerFileError(f"{path}: {where}.single is {show(single)}, not a template")
        for k, item in enumerate(single):
            if isinstance(item, dict) and "Sequence" in item:
                seen = True
                continue
            name = item.get("SpecialToken", {}).get("id") if isinstance(item, dict) else None
            ids = table.get(name, {}).get("ids") if isinstance(table.get(name), dict) else None
            if not (isinstance(ids, list) and all(isinstance(i, int) for i in ids)):
                raise TokenizerFileError(f"{path}: {where}.single[{k}] is {show(item)}, not a "
                                         "sequence or a special token of special_tokens")
            (after if seen else before).extend(ids)
        return before, after
    if kind == "Sequence":
        before, after = [], []
        for k, p in enumerate(post.get("processors") or []):
            b, a = _post_processor(p, path, ids_of, f"{where}.processors[{k}]")
            before, after = before + b, after + a
        return before, after
    raise TokenizerFileError(f"{path}: {where}.type {show(kind)} is not supported: minillm reads "
                             "ByteLevel, RobertaProcessing, BertProcessing, TemplateProcessing")


def _from_tokenizer_json(tj, path, config, config_path, special_map, folder):
    """A tokenizer that tokenizer.json alone describes (class PreTrainedTokenizerFast)."""
    normalizer = tj.get("normalizer")
    pre = tj.get("pre_tokenizer")
    model = _field(tj, "model", dict, path, default={})
    decoder = tj.get("decoder")
    kind = model.get("type")
    if kind == "BPE":
        if not (isinstance(pre, dict) and pre.get("type") == "ByteLevel") or normalizer is not None:
            raise TokenizerFileError(f"{path}: a BPE model is read only with GPT-2's steps (no "
                                     "normalizer, pre_tokenizer ByteLevel)")
        for key, fine in (("dropout", (None, 0, 0.0)), ("continuing_subword_prefix", (None, "")),
                          ("end_of_word_suffix", (None, "")), ("byte_fallback", (None, False))):
            if model.get(key) not in fine:
                raise TokenizerFileError(f"{path}: model.{key} is {show(model.get(key))}, which "
                                         "minillm does not implement")
        vocab = _read_vocab(model.get("vocab"), path, "model.vocab")
        merges = _read_merges(model.get("merges", []), vocab, path, "model.merges")
        settings = {"model": "bpe", "merges": merges, "decoder": "byte_level",
                    "add_prefix_space": bool(pre.get("add_prefix_space", False)),
                    "unk_token": _field(model, "unk_token", (str, type(None)), path, "model.")}
    elif kind == "WordPiece":
        if not (isinstance(pre, dict) and pre.get("type") == "BertPreTokenizer"):
            raise TokenizerFileError(f"{path}: a WordPiece model is read only with BERT's steps "
                                     "(pre_tokenizer BertPreTokenizer)")
        norm = None
        if normalizer is not None:
            if not (isinstance(normalizer, dict) and normalizer.get("type") == "BertNormalizer"):
                raise TokenizerFileError(f"{path}: normalizer {show(normalizer)} is not supported:"
                                         " minillm reads BertNormalizer")
            lower = _field(normalizer, "lowercase", bool, path, "normalizer.", True)
            strip = _field(normalizer, "strip_accents", (bool, type(None)), path, "normalizer.")
            norm = {"clean_text": _field(normalizer, "clean_text", bool, path, "normalizer.", True),
                    "handle_chinese_chars": _field(normalizer, "handle_chinese_chars", bool, path,
                                                   "normalizer.", True),
                    "strip_accents": lower if strip is None else strip, "lowercase": lower}
        vocab = _read_vocab(model.get("vocab"), path, "model.vocab")
        settings = {"model": "wordpiece", "normalizer": norm, "decoder": "wordpiece",
                    "unk_token": _field(model, "unk_token", str, path, "model.", "[UNK]"),
                    "prefix": _field(model, "continuing_subword_prefix", str, path, "model.", "##"),
                    "max_chars": _field(model, "max_input_chars_per_word", int, path, "model.",
                                        100)}
    else:
        raise TokenizerFileError(f"{path}: model.type {show(kind)} is not supported: minillm "
                                 "reads BPE (GPT-2, BART) and WordPiece (BERT)")
    if isinstance(decoder, dict) and decoder.get("type") == "WordPiece":
        settings["prefix"] = _field(decoder, "prefix", str, path, "decoder.", "##")
    added = _read_added(_field(tj, "added_tokens", list, path, default=[]), path, "added_tokens")
    unk = settings["unk_token"]
    if unk is not None and unk not in vocab and unk not in added:
        raise TokenizerFileError(f"{path}: model.unk_token {show(unk)} is not in the vocabulary")
    specials = _named_specials({}, [(config_path, config), (
        folder.path("special_tokens_map.json"), special_map)], added, vocab)
    ids_of = {t.content: t.id for t in added.values()}
    wrap = _post_processor(tj.get("post_processor"), path, ids_of)
    clean_up = _field(config, "clean_up_tokenization_spaces", bool, config_path, default=False)
    return HFTokenizer(vocab=vocab, added=list(added.values()), specials=specials, wrap=wrap,
                       clean_up_spaces=clean_up, name=folder.folder, **settings)


# ----------------------------------------------------------------------------------------------
# minillm's tokenizer as a tokenizer.json


def longest_match_pattern(tokenizer):
    """The regular expression that cuts a text as minillm's longest match does: every ordinary
    token, longest first, then any one character. The regex engine of tokenizers (Oniguruma, like
    Perl) tries the alternatives in order and takes the first that matches, so at each position
    it takes the longest token there, or one character. Characters other than letters and digits
    are written \\x{...}, so that no token is read as regex syntax."""
    words = sorted(tokenizer.vocab[tokenizer.first_ordinary_id:], key=lambda w: (-len(w), w))
    escaped = ["".join(ch if ch.isalnum() else f"\\x{{{ord(ch):x}}}" for ch in w) for w in words]
    return "|".join(escaped + [r"[\s\S]"])


def minillm_tokenizer_json(tokenizer):
    """minillm's Tokenizer as a tokenizer.json (a dict) that transformers' PreTrainedTokenizerFast
    and AutoTokenizer load, giving minillm's ids (Tokenizer.encode) for any text.

    The mapping. minillm cuts a text by longest match over its vocabulary, one unknown character
    as [UNK]. In tokenizers' terms:

        added_tokens    the specials and sentinels ([PAD] ... [MASK], <extra_id_k>), special
                        tokens, cut out of the raw text first: minillm's longest match takes
                        them at the same places (but see below)
        pre_tokenizer   Split, the pattern longest_match_pattern(tokenizer), each match a piece:
                        exactly minillm's longest match
        model           WordLevel: each piece its id, an unknown character [UNK]
        decoder         Fuse: the tokens joined with nothing between them, as Tokenizer.decode

    Why not WordPiece without the ## prefix (greedy longest-match-first is minillm's longest match):
    WordPiece makes a whole word [UNK] when one of its characters is unknown (minillm: that
    character only), and with no pre-tokenizer the word is the whole text, searched in time
    quadratic in its length.

    One case differs: a lexicon word that runs into a special token's text (the word "x[" in
    "x[MASK]"), where minillm takes the word and transformers the special token.
    straddling_words(tokenizer) lists such words; the grammar's vocabulary has none, and a text
    without special tokens' text is never cut differently.
    """
    added = [{"id": i, "content": tokenizer.vocab[i], "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}
             for i in range(tokenizer.first_ordinary_id)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": longest_match_pattern(tokenizer)},
                          "behavior": "Isolated", "invert": False},
        "post_processor": None,
        "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": dict(tokenizer.id_of), "unk_token": "[UNK]"},
    }


def minillm_tokenizer_config(tokenizer):
    """The tokenizer_config.json beside minillm_tokenizer_json: the class, and minillm's special
    tokens under transformers' names (the sentinels as extra special tokens)."""
    names = {"[PAD]": "pad_token", "[UNK]": "unk_token", "[BOS]": "bos_token",
             "[EOS]": "eos_token", "[CLS]": "cls_token", "[SEP]": "sep_token",
             "[MASK]": "mask_token"}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}
    config.update({names[s]: s for s in SPECIAL_TOKENS})
    config["extra_special_tokens"] = tokenizer.vocab[len(SPECIAL_TOKENS):
                                                     tokenizer.first_ordinary_id]
    return config


# What save_minillm_tokenizer writes.
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def save_minillm_tokenizer(tokenizer, folder):
    """Write tokenizer.json and tokenizer_config.json for ``tokenizer`` into ``folder``."""
    os.makedirs(folder, exist_ok=True)
    for name, obj in zip(HF_TOKENIZER_FILES, (minillm_tokenizer_json(tokenizer),
                                               minillm_tokenizer_config(tokenizer))):
        text = json.dumps(obj, indent=2, ensure_ascii=False)
        safetensors.write_atomically(os.path.join(folder, name), [text.encode("utf-8")])


def straddling_words(tokenizer):
    """The ordinary tokens with which minillm and transformers can cut a text differently (see
    minillm_tokenizer_json): those that, placed at some position of a text, would cover the
    start of a special token's text there without starting with it ("x[" in "x[MASK]"), or
    that start with a special token's text and go on ("[MASK]x"). Sorted."""
    reserved = tokenizer.vocab[:tokenizer.first_ordinary_id]
    out = set()
    for word in tokenizer.vocab[tokenizer.first_ordinary_id:]:
        for special in reserved:
            # a special text starting at word[j] agrees with the word as far as both go
            if any(special.startswith(word[j:j + len(special)]) for j in range(1, len(word))):
                out.add(word)
            if len(word) > len(special) and word.startswith(special):
                out.add(word)
    return sorted(out)

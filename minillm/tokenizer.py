"""A word tokenizer: longest match over a lexicon, one character when no word matches.

The tutorial speaks of words (词): in 今天天气很好，我们去 → 公园, the words 今天, 天气 and 公园 are
single tokens. Chinese has no spaces, so text is cut by **longest match**: at each position take
the longest lexicon word that starts there; if none does, take the single character.

    今天天气很好，我们去   ->   今天 | 天气 | 很好 | ， | 我们 | 去

The vocabulary, in id order:

    0..6     [PAD] [UNK] [BOS] [EOS] [CLS] [SEP] [MASK]     special tokens
    7..      <extra_id_0> <extra_id_1> ...                  T5's sentinels (n_sentinels of them)
    then     the lexicon's words and every character in them, sorted: the ordinary tokens

Special and sentinel strings written literally in a text (今天[MASK]很好) are matched as those
tokens by the same longest match. A character the vocabulary does not know becomes [UNK]; it is
never an error. For any text made of known characters, ``decode(encode(text)) == text``.
"""

from __future__ import annotations

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, BOS_ID, EOS_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))
# T5's sentinels in a new vocabulary: a packed sequence of L tokens has S = round(0.15·L / 3)
# noise spans, and 20 cover L up to 409 tokens, that is, sources up to n_ctx = 369
# (corruption/t5.py::longest_inputs_for_sentinels; data.packed_length refuses a longer one).
N_SENTINELS = 20
# from_text's defaults: a character pair seen 3 times is more likely a word than a coincidence,
# and 200 pairs are enough words for a small corpus without crowding out its characters.
MIN_COUNT = 3
MAX_WORDS = 200


def pad(text, width):
    """``text`` left-aligned in ``width`` terminal columns. A Chinese character takes two
    columns, so it counts twice; tables of words then line up for the eye."""
    wide = sum(1 for ch in text if ord(ch) > 0x2E7F)  # CJK and full-width forms start here
    return f"{text:<{max(width - wide, 0)}}"


def right_pad(rows, fill):
    """Rows of token ids (lists of any lengths) -> (N, T) int64 array, each row followed by
    ``fill`` up to the longest (T), and the (N, T) attention mask: 1 on the rows' own tokens, 0
    on the padding. The one place where a batch is padded."""
    N, T = len(rows), max((len(r) for r in rows), default=0)
    out = np.full((N, T), fill, dtype=np.int64)
    mask = np.zeros((N, T), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return out, mask


def sentinel(k):
    """The string of the k-th sentinel, ``<extra_id_k>`` as in T5's vocabulary."""
    return f"<extra_id_{k}>"


class Tokenizer:
    """Longest-match word tokenizer over a lexicon, with a single-character fallback.

    Attributes: ``vocab`` (id -> string), ``id_of`` (string -> id), ``n_sentinels``,
    ``first_ordinary_id`` (the ids below it are specials and sentinels), ``special_ids`` (an
    int array of those: the ids BERT's masking never selects) and ``ordinary_ids`` (an int
    array of the other ids: the words BERT's random replacement draws from).
    """

    def __init__(self, words, n_sentinels=N_SENTINELS, extra_chars=""):
        if isinstance(words, str):
            raise TypeError("words must be an iterable of strings, not one string; "
                            f"got {words[:20]!r}")
        words = list(words)
        for w in words:
            if not isinstance(w, str) or not w:
                raise ValueError(f"every lexicon word must be a non-empty string, got {w!r}")
        if isinstance(n_sentinels, bool) or not isinstance(n_sentinels, int) or n_sentinels < 0:
            raise ValueError(f"n_sentinels must be a non-negative integer, got {n_sentinels!r}")
        if not isinstance(extra_chars, str):
            raise TypeError(f"extra_chars must be a str, got {type(extra_chars).__name__}: "
                            f"{extra_chars!r}")
        self.n_sentinels = n_sentinels
        reserved = list(SPECIAL_TOKENS) + [sentinel(k) for k in range(n_sentinels)]
        chars = {ch for w in words for ch in w} | set(extra_chars)
        ordinary = sorted((set(words) | chars) - set(reserved))
        self.vocab = reserved + ordinary  # id -> string
        self.id_of = {s: i for i, s in enumerate(self.vocab)}  # string -> id
        self.first_ordinary_id = len(reserved)
        self.special_ids = np.arange(self.first_ordinary_id)
        self.ordinary_ids = np.arange(self.first_ordinary_id, len(self.vocab))
        # Longest match tries only the lengths some token has, longest first (13, 12, 6, ..., 1
        # for the default vocabulary): a handful of dict look-ups per position.
        self._lengths = sorted({len(s) for s in self.vocab}, reverse=True)
        self.max_len = self._lengths[0]

    def __len__(self):
        return len(self.vocab)

    def sentinel_id(self, k):
        """The id of ``<extra_id_k>``: len(SPECIAL_TOKENS) + k."""
        is_int = isinstance(k, (int, np.integer)) and not isinstance(k, bool)
        if not (is_int and 0 <= k < self.n_sentinels):
            raise ValueError(f"sentinel index k must be an integer in [0, {self.n_sentinels}), "
                             f"got {k!r}")
        return len(SPECIAL_TOKENS) + int(k)

    def is_special(self, token_id):
        """True for the special tokens and the sentinels."""
        return 0 <= token_id < self.first_ordinary_id

    # ------------------------------------------------------------------------------------------

    def tokenize(self, text, unknown=None):
        """Text -> list of token strings, by longest match (unknown characters as [UNK]).
        ``unknown``, a list, receives each character that became [UNK], in text order: the
        command line names them in a warning."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}: {text!r}")
        tokens, i, n = [], 0, len(text)
        while i < n:
            for length in self._lengths:
                piece = text[i : i + length]
                if len(piece) == length and piece in self.id_of:
                    tokens.append(piece)
                    i += length
                    break
            else:  # not even the single character is known
                tokens.append("[UNK]")
                if unknown is not None:
                    unknown.append(text[i])
                i += 1
        return tokens

    def encode(self, text, add_bos=False, add_eos=False, unknown=None):
        """Text -> list of token ids, optionally with [BOS] in front and [EOS] at the end
        (``unknown`` as in tokenize)."""
        ids = [self.id_of[t] for t in self.tokenize(text, unknown)]
        return ([BOS_ID] if add_bos else []) + ids + ([EOS_ID] if add_eos else [])

    def decode(self, ids, skip_special=False):
        """Token ids -> text: the token strings joined. ``skip_special`` drops special tokens
        and sentinels."""
        if isinstance(ids, (str, bytes)):
            raise TypeError(f"ids must be a sequence of token ids, got a {type(ids).__name__}: "
                            f"{ids!r}")
        out = []
        for k, i in enumerate(ids):
            if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
                raise TypeError(f"ids must hold integers, got ids[{k}] = {i!r}")
            if not 0 <= i < len(self.vocab):
                raise ValueError(f"ids[{k}] = {int(i)} is outside the vocabulary "
                                 f"[0, {len(self.vocab)})")
            if skip_special and self.is_special(i):
                continue
            out.append(self.vocab[i])
        return "".join(out)

    # ------------------------------------------------------------------------------------------

    def to_dict(self):
        """A JSON-serialisable description, from which from_dict rebuilds the same tokenizer:
        ``{"ordinary": [the ordinary tokens in id order], "n_sentinels": int}``."""
        return {"ordinary": self.vocab[self.first_ordinary_id:], "n_sentinels": self.n_sentinels}

    @classmethod
    def from_dict(cls, d):
        """The tokenizer that ``to_dict`` described (a checkpoint carries its vocabulary)."""
        if not isinstance(d, dict):
            raise TypeError(f"d must be a dict from Tokenizer.to_dict, got {type(d).__name__}")
        missing = [key for key in ("ordinary", "n_sentinels") if key not in d]
        if missing:
            raise ValueError(f"tokenizer description d lacks the keys {missing}; "
                             f"it has {sorted(d)}")
        tok = cls(d["ordinary"], n_sentinels=d["n_sentinels"])
        if tok.vocab[tok.first_ordinary_id:] != list(d["ordinary"]):
            raise ValueError("tokenizer description d['ordinary'] does not rebuild the same "
                             "vocabulary (it must be sorted, without duplicates, and hold every "
                             "character of its words)")
        return tok

    @classmethod
    def from_text(cls, text, max_words=MAX_WORDS, min_count=MIN_COUNT, n_sentinels=N_SENTINELS):
        """A vocabulary for a user's text: every distinct character, plus up to ``max_words``
        of the most frequent character pairs seen at least ``min_count`` times (a crude stand-in
        for words, so that frequent two-character words like 天气 become one token).

        Deterministic: pairs are ranked by count, ties broken by the pair's string. Pairs are
        counted within a line, and a pair holding whitespace is never a word. Only pairs:
        longer strings would learn straddles such as 天天气 from 今天天气, which longest match
        would then prefer to the word 天气. Line breaks are not tokens (one document per line).
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        for name, value, low in (("max_words", max_words, 0), ("min_count", min_count, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        counts = {}
        for line in text.splitlines():
            for a, b in zip(line, line[1:]):
                if not (a.isspace() or b.isspace()):
                    counts[a + b] = counts.get(a + b, 0) + 1
        frequent = sorted((p for p, c in counts.items() if c >= min_count),
                          key=lambda p: (-counts[p], p))[:max_words]
        chars = sorted(set(text) - {"\n", "\r"})
        return cls(chars + frequent, n_sentinels=n_sentinels)

    @classmethod
    def from_file(cls, path, **kwargs):
        """``from_text`` on the documents of a UTF-8 file (see corpus.read_text_corpus)."""
        from .corpus import read_text_corpus

        return cls.from_text("\n".join(read_text_corpus(path)), **kwargs)

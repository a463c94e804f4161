"""Pictures whose content is known: small RGB images drawn from the grammar's slots.

GPT-4's 多模态融合 (the tutorial's last generation) reads images beside words. For "the model
reads the image" to be a measured fact, the content of every image must be known exactly, as
the grammar's sentences are. So minillm draws its own pictures: a kind-A sentence of the grammar
(今天天气很好，我们去公园玩。) is drawn with its true probability, and a 16×16 picture shows three
of its slots:

    rows 0..5   the sky: the weather (the predicate)
                    很好  a blue sky and a yellow sun
                    不错  a blue sky, a yellow sun and a white cloud
                    不好  a grey sky, a dark cloud and rain
                    很热  an orange sky and a red sun
    rows 6..15  the ground: the place, and the people
                    公园  green grass and a dark-green tree
                    海边  the sea (blue) above the sand
                    学校, 商店, 图书馆   a grey street with a red, purple or brown building
                people: one figure (a black head over a white body) for 我 or 小明,
                        2 to 4 of them for 我们 or 他们

Every shape has a random position, its colour a random jitter, every pixel a little noise, so
no two pictures are alike. Jitter and noise are bounded (uniform), small beside the distance
between any two colours of one band, so ``classify`` below (a hand-written classifier: the
nearest colour of each pixel, counted) recovers every slot of every picture: the task is well
posed. What the picture cannot show (the time, 天气 or 阳光, the activity, 我 or 小明) the caption
still says, drawn from the grammar: a model can only learn its distribution.

Each picture has its true caption (the sentence) and question–answer pairs:

    图里天气怎么样？  ->  很好          他们在哪里？  ->  公园          图里有多少人？  ->  一个人 / 几个人
    图里有什么？      ->  the caption, 今天天气很好，我们去公园玩。

``write_png`` writes a picture as a PNG file with the standard library's zlib.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .grammar import default_grammar

SIZE = 16  # pictures are SIZE × SIZE pixels, RGB
SKY_ROWS = 6  # rows 0..5 are the sky, 6..15 the ground

# The colours (RGB in [0, 1]) of the two bands. Within one band any two are at least 0.35 apart
# (Euclidean; tests/test_pictures.py checks it), and a drawn pixel is at most
# sqrt(3) · (JITTER + NOISE) = 0.139 from its colour: the nearest colour is always its own.
SKY_COLOURS = {
    "clear sky": (0.40, 0.65, 0.95), "grey sky": (0.55, 0.55, 0.60), "hot sky": (1.00, 0.55, 0.30),
    "sun": (1.00, 0.90, 0.10), "red sun": (0.85, 0.10, 0.05), "cloud": (0.95, 0.95, 0.95),
    "dark cloud": (0.25, 0.25, 0.30), "rain": (0.10, 0.20, 0.80),
}
GROUND_COLOURS = {
    "grass": (0.25, 0.70, 0.25), "tree": (0.05, 0.35, 0.05), "sea": (0.10, 0.35, 0.80),
    "sand": (0.92, 0.85, 0.55), "street": (0.45, 0.45, 0.45), "学校": (0.85, 0.15, 0.15),
    "商店": (0.70, 0.25, 0.85), "图书馆": (0.50, 0.30, 0.00), "head": (0.00, 0.00, 0.00),
    "body": (1.00, 1.00, 1.00),
}
# Each shape's colour moves by up to JITTER in each channel (one draw per shape), each pixel by
# up to NOISE more (one draw per pixel and channel); then the picture is clipped to [0, 1].
JITTER = 0.05
NOISE = 0.03

# The sky and the buildings of each slot value.
SKY_OF = {"很好": "clear sky", "不错": "clear sky", "不好": "grey sky", "很热": "hot sky"}
BUILDINGS = ("学校", "商店", "图书馆")
# The people slot: how many figures the picture shows for each person of the grammar.
ONE, SEVERAL = "一个人", "几个人"
PEOPLE_OF = {"我": ONE, "小明": ONE, "我们": SEVERAL, "他们": SEVERAL}
MOST_PEOPLE = 4  # "several" is 2 .. MOST_PEOPLE figures, uniformly

# The questions, one per slot; the caption's own question (its answer: the whole caption); the
# words they add to the grammar's tokenizer.
QUESTIONS = {"weather": "图里天气怎么样？", "place": "他们在哪里？", "people": "图里有多少人？"}
CAPTION_QUESTION = "图里有什么？"
CAPTION_WORDS = ("图里", "怎么样", "在", "有", "什么", "多少", "人", ONE, SEVERAL)
SLOTS = tuple(QUESTIONS)


def slots_of(sentence):
    """What the picture of a kind-A sentence shows: {"weather": 很好/不错/不好/很热, "place":
    公园/海边/学校/商店/图书馆, "people": 一个人/几个人}."""
    return {"weather": sentence.predicate, "place": sentence.place,
            "people": PEOPLE_OF[sentence.person]}


@dataclass(frozen=True, eq=False)
class Picture:
    """One picture: ``image`` (SIZE, SIZE, 3) floats in [0, 1], the kind-A ``sentence`` of the
    grammar it shows (its true caption), and ``n_people``, the number of figures drawn."""

    image: np.ndarray
    sentence: object  # grammar.Sentence, kind A
    n_people: int

    @property
    def caption(self):
        return self.sentence.text

    @property
    def slots(self):
        """What the picture shows: slots_of(its sentence)."""
        return slots_of(self.sentence)

    def questions(self):
        """The (question, answer) pairs of the picture, one per slot, in SLOTS order."""
        return [(QUESTIONS[slot], answer) for slot, answer in self.slots.items()]


def slot_priors():
    """P(value) of each slot under the grammar, given kind A (what a picture shows), exactly:
    Σ of P(s) over the kind-A sentences s with that value, over Σ of P(s) over all of them.
    -> {slot: {value: probability}}."""
    grammar = default_grammar()
    priors = {slot: {} for slot in SLOTS}
    total = 0.0
    for sentence, p in zip(grammar.sentences, grammar.probs):
        if sentence.kind != "A":
            continue
        total += float(p)
        for slot, value in slots_of(sentence).items():
            priors[slot][value] = priors[slot].get(value, 0.0) + float(p)
    return {slot: {v: p / total for v, p in values.items()} for slot, values in priors.items()}


def caption_tokenizer():
    """The grammar's tokenizer with the words of the questions and answers added."""
    return default_grammar().tokenizer(extra_words=CAPTION_WORDS)


# ----------------------------------------------------------------------------------------------
# Drawing


def _paint(image, rows, cols, colour, rng):
    """Fill image[rows, cols] with ``colour`` moved by one jitter draw (uniform ±JITTER)."""
    image[rows, cols] = np.asarray(colour) + rng.uniform(-JITTER, JITTER, size=3)


def draw_picture(sentence, rng, n_people=None):
    """The picture of a kind-A sentence: its weather, its place, its people (see the module
    docstring), at random positions, with colour jitter and noise. -> Picture.

    ``n_people`` is drawn (1 for 我 and 小明; 2 .. MOST_PEOPLE, uniform, for 我们 and 他们)
    unless given; given, it must be one of those counts, or the picture would contradict its
    answer."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
    if getattr(sentence, "kind", None) != "A":
        raise ValueError(f"sentence must be a kind-A grammar Sentence (it has a weather, a place "
                         f"and a person), got {sentence!r}")
    low, high = (1, 1) if PEOPLE_OF[sentence.person] == ONE else (2, MOST_PEOPLE)
    if n_people is None:
        n_people = 1 if low == high else int(rng.integers(low, high + 1))
    elif (isinstance(n_people, bool) or not isinstance(n_people, (int, np.integer))
          or not low <= n_people <= high):
        raise ValueError(f"n_people must be an integer from {low} to {high} for "
                         f"{sentence.person} (its answer is {PEOPLE_OF[sentence.person]}), "
                         f"got {n_people!r}")
    image = np.zeros((SIZE, SIZE, 3))  # (H, W, 3)
    sky, ground = np.s_[:SKY_ROWS], np.s_[SKY_ROWS:]
    weather, place = sentence.predicate, sentence.place
    # The sky.
    _paint(image, sky, np.s_[:], SKY_COLOURS[SKY_OF[weather]], rng)
    if weather in ("很好", "不错"):  # a 2×2 sun; 不错 adds a 2×4 cloud, drawn over it
        r, c = rng.integers(0, SKY_ROWS - 1), rng.integers(0, SIZE - 1)
        _paint(image, np.s_[r:r + 2], np.s_[c:c + 2], SKY_COLOURS["sun"], rng)
        if weather == "不错":
            r, c = rng.integers(0, SKY_ROWS - 1), rng.integers(0, SIZE - 3)
            _paint(image, np.s_[r:r + 2], np.s_[c:c + 4], SKY_COLOURS["cloud"], rng)
    elif weather == "不好":  # a 2×6 dark cloud at the top, rain in 3 columns below it
        c = rng.integers(0, SIZE - 5)
        _paint(image, np.s_[0:2], np.s_[c:c + 6], SKY_COLOURS["dark cloud"], rng)
        for col in rng.choice(SIZE, size=3, replace=False):
            _paint(image, np.s_[2:SKY_ROWS], col, SKY_COLOURS["rain"], rng)
    else:  # 很热: a 3×3 red sun
        r, c = rng.integers(0, SKY_ROWS - 2), rng.integers(0, SIZE - 2)
        _paint(image, np.s_[r:r + 3], np.s_[c:c + 3], SKY_COLOURS["red sun"], rng)
    # The ground.
    if place == "公园":  # grass and a 3×3 tree
        _paint(image, ground, np.s_[:], GROUND_COLOURS["grass"], rng)
        r, c = rng.integers(SKY_ROWS, SIZE - 5), rng.integers(0, SIZE - 2)
        _paint(image, np.s_[r:r + 3], np.s_[c:c + 3], GROUND_COLOURS["tree"], rng)
    elif place == "海边":  # 2 to 4 rows of sea, then sand
        shore = SKY_ROWS + rng.integers(2, 5)
        _paint(image, np.s_[SKY_ROWS:shore], np.s_[:], GROUND_COLOURS["sea"], rng)
        _paint(image, np.s_[shore:], np.s_[:], GROUND_COLOURS["sand"], rng)
    else:  # a street and a building 4 to 6 wide, 4 to 7 high, standing on the bottom row
        _paint(image, ground, np.s_[:], GROUND_COLOURS["street"], rng)
        w, h = rng.integers(4, 7), rng.integers(4, 8)
        c = rng.integers(0, SIZE - w + 1)
        _paint(image, np.s_[SIZE - h:], np.s_[c:c + w], GROUND_COLOURS[place], rng)
    # The people: a black head over a 2-pixel white body, in columns at least 2 apart.
    columns = 2 * rng.choice(SIZE // 2, size=n_people, replace=False) + rng.integers(0, 2)
    for col in columns:
        r = rng.integers(SKY_ROWS, SIZE - 2)
        _paint(image, r, col, GROUND_COLOURS["head"], rng)
        _paint(image, np.s_[r + 1:r + 3], col, GROUND_COLOURS["body"], rng)
    image += rng.uniform(-NOISE, NOISE, size=image.shape)
    return Picture(np.clip(image, 0.0, 1.0), sentence, n_people)


def sample_kind_a(rng, n):
    """n kind-A sentences, each with its probability under the grammar given kind A: the grammar
    draws sentences and those of other kinds are dropped (rejection sampling keeps the
    conditional distribution exactly)."""
    grammar, out = default_grammar(), []
    while len(out) < n:
        out += [s for s in grammar.sample(rng, 2 * (n - len(out))) if s.kind == "A"]
    return out[:n]


def sample_pictures(rng, n):
    """n pictures of n kind-A sentences drawn from the grammar (sample_kind_a)."""
    return [draw_picture(s, rng) for s in sample_kind_a(rng, n)]


def picture_text(picture, rng):
    """One text about a picture, a question followed by its answer, each of the four equally
    likely: 图里有什么？ and the caption, or one of the slots' questions (图里天气怎么样？很好)."""
    pairs = [(CAPTION_QUESTION, picture.caption), *picture.questions()]
    question, answer = pairs[rng.integers(0, len(pairs))]
    return question + answer


class PictureData:
    """What ``train --objective caption`` trains on: fresh pictures every step, each with one
    text (picture_text), encoded. ``sample`` returns (None, [(image, ids), ...]). The text-only
    baseline (``--fusion none``) trains on the same examples: its model never reads the image."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.floor = None
        self.name = "pictures drawn from the grammar, each with its caption or a question and answer"

    def sample(self, rng, n):
        examples = []
        for picture in sample_pictures(rng, n):
            ids = self.tokenizer.encode(picture_text(picture, rng))
            examples.append((picture.image, ids))
        return None, examples


# ----------------------------------------------------------------------------------------------
# The hand-written classifier


def nearest_colour(pixels, colours):
    """The name of the nearest colour of ``colours`` ({name: RGB}) for every pixel.
    pixels (..., 3) -> names (...), an array of strings."""
    names = list(colours)
    table = np.array([colours[n] for n in names])  # (K, 3)
    distance = np.linalg.norm(pixels[..., None, :] - table, axis=-1)  # (..., K)
    return np.array(names)[distance.argmin(axis=-1)]


def classify(image):
    """The slots a picture shows, read back by hand: each pixel takes the name of its nearest
    colour (sky colours in the sky, ground colours on the ground), and

        weather   the sky colour most pixels have: grey -> 不好, orange -> 很热; blue -> 不错 if
                  any pixel is a cloud, else 很好
        place     grass -> 公园, sea -> 海边, else the building colour with the most pixels
        people    the number of heads: 1 -> 一个人, more -> 几个人

    image (SIZE, SIZE, 3) -> {"weather": ..., "place": ..., "people": ...}, and the head count.
    """
    image = np.asarray(image)
    if image.shape != (SIZE, SIZE, 3):
        raise ValueError(f"image must have shape {(SIZE, SIZE, 3)}, got {image.shape}")
    sky = nearest_colour(image[:SKY_ROWS], SKY_COLOURS)  # (6, 16)
    ground = nearest_colour(image[SKY_ROWS:], GROUND_COLOURS)  # (10, 16)
    kinds = {name: int((sky == name).sum()) for name in ("clear sky", "grey sky", "hot sky")}
    kind = max(kinds, key=kinds.get)
    if kind == "grey sky":
        weather = "不好"
    elif kind == "hot sky":
        weather = "很热"
    else:
        weather = "不错" if (sky == "cloud").any() else "很好"
    if (ground == "grass").any():
        place = "公园"
    elif (ground == "sea").any():
        place = "海边"
    else:
        counts = {building: int((ground == building).sum()) for building in BUILDINGS}
        place = max(counts, key=counts.get)
    heads = int((ground == "head").sum())
    return {"weather": weather, "place": place, "people": ONE if heads == 1 else SEVERAL}, heads


# ----------------------------------------------------------------------------------------------
# The picture in a terminal


def terminal_blocks(image):
    """The picture as text for a terminal: each pixel two spaces on its colour (the 24-bit
    background colour escape ESC[48;2;R;G;Bm), each row a line, the colour reset at its end."""
    pixels = np.round(np.clip(np.asarray(image), 0.0, 1.0) * 255).astype(int)  # (H, W, 3)
    lines = []
    for row in pixels:
        cells = "".join(f"\x1b[48;2;{r};{g};{b}m  " for r, g, b in row)
        lines.append(cells + "\x1b[0m")
    return "\n".join(lines)


def enlarged(image, k):
    """Each pixel as a k×k square: (H, W, 3) -> (kH, kW, 3), so that a 16×16 picture is seen."""
    return np.repeat(np.repeat(np.asarray(image), k, axis=0), k, axis=1)


# ----------------------------------------------------------------------------------------------
# PNG, with the standard library's zlib


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # the first 8 bytes of every PNG file (PNG spec, 5.2)


def _png_chunk(kind, data):
    """One PNG chunk: length (4 bytes, big-endian) | type | data | CRC-32 of type and data."""
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_bytes(image):
    """A PNG file (8-bit RGB, no interlace) of an image (H, W, 3) in [0, 1], as bytes.

    A PNG is the 8-byte signature and three chunks, each length | type | data | CRC-32 of
    type and data: IHDR (width, height, bit depth 8, colour type 2 = RGB), IDAT (the rows, each
    behind the filter byte 0 = none, compressed by zlib), IEND.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("image must be finite: a NaN or an infinity has no colour")
    H, W, _ = image.shape
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)  # (H, W, 3)
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(H))
    header = struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw))
            + _png_chunk(b"IEND", b""))


def write_png(path, image):
    """Write ``png_bytes(image)`` to ``path``."""
    with open(path, "wb") as f:
        f.write(png_bytes(image))

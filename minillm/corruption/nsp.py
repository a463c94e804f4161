"""BERT's next sentence prediction: ``[CLS] A [SEP] B [SEP]`` pairs, B the true next sentence
or, half of the time, a random one.
"""

from __future__ import annotations

import numpy as np

from ..tokenizer import CLS_ID, PAD_ID, SEP_ID, right_pad
from .checks import check_int, check_probability

# next_sentence_label values. Google BERT's convention: 1 means B is random (bert#125).
IS_NEXT = 0
IS_RANDOM = 1


def make_nsp_pairs(documents, rng, a_sentences=1, random_next_prob=0.5):
    """Sentence pairs ``[CLS] A [SEP] B [SEP]`` for BERT's next sentence prediction.

    documents: a list of documents, each a list of sentences, each a list of token ids.
    For every document d and every run of ``a_sentences`` consecutive sentences that has a
    sentence after it, one example is made: A is the run, and B is
      - the sentence right after A (label IS_NEXT = 0), or, with probability random_next_prob,
      - a sentence drawn uniformly from a document drawn uniformly among the *other* non-empty
        documents (label IS_RANDOM = 1; Google's convention, "1 means random").
    A random B never comes from A's document: Google tries up to 10 random documents and can end
    up inside A's own (NVIDIA/DeepLearningExamples#421); here the draw is from the others only,
    and a corpus with fewer than two non-empty documents is an error.

    Simplification relative to Google's create_instances_from_document: Google packs sentences
    into chunks of a (sometimes random) target length, splits each chunk at a random sentence
    boundary into A and B, fills a random B to the target length and truncates long pairs. Here
    A and B are whole sentences and nothing is truncated. Every example has a true next
    sentence, so the rate of random B is random_next_prob exactly in expectation (Google's is
    above 0.5, because a one-sentence chunk always gets a random B).

    Returns a dict of arrays, N examples padded to the longest, T = max(|A| + |B|) + 3:
      input_ids (N, T)             [CLS] A [SEP] B [SEP], then [PAD]
      token_type_ids (N, T)        0 for [CLS] A [SEP], 1 for B [SEP], 0 for padding
      attention_mask (N, T)        1 for tokens, 0 for padding
      next_sentence_label (N,)     IS_NEXT or IS_RANDOM
      a_source, b_source (N, 2)    (document, sentence) of A's first sentence and of B
    """
    check_int("a_sentences", a_sentences, 1)
    check_probability("random_next_prob", random_next_prob)
    for d, document in enumerate(documents):
        for s, sentence in enumerate(document):
            if len(sentence) == 0:
                raise ValueError(
                    f"every sentence must hold at least one token, got documents[{d}][{s}] = []"
                )
    non_empty = [d for d, document in enumerate(documents) if len(document) > 0]
    if len(non_empty) < 2:
        raise ValueError(
            "documents must hold at least two non-empty documents, so that a random B can come "
            f"from another document than A; got {len(non_empty)} non-empty of "
            f"len(documents)={len(documents)}"
        )

    rows, types, labels, a_source, b_source = [], [], [], [], []
    for d, document in enumerate(documents):
        others = [o for o in non_empty if o != d]
        for s in range(len(document) - a_sentences):
            a = [token for sentence in document[s : s + a_sentences] for token in sentence]
            if rng.random() < random_next_prob:
                b_doc = others[rng.integers(len(others))]
                b_sent = int(rng.integers(len(documents[b_doc])))
                label = IS_RANDOM
            else:
                b_doc, b_sent, label = d, s + a_sentences, IS_NEXT
            b = list(documents[b_doc][b_sent])
            rows.append([CLS_ID, *a, SEP_ID, *b, SEP_ID])
            types.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
            labels.append(label)
            a_source.append((d, s))
            b_source.append((b_doc, b_sent))
    if not rows:
        raise ValueError(
            f"no document has a_sentences + 1 = {a_sentences + 1} consecutive sentences, "
            "so no pair can be made"
        )

    N = len(rows)
    input_ids, attention_mask = right_pad(rows, PAD_ID)  # (N, T)
    token_type_ids, _ = right_pad(types, 0)  # (N, T)
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "next_sentence_label": np.array(labels, dtype=np.int64),
        "a_source": np.array(a_source, dtype=np.int64).reshape(N, 2),
        "b_source": np.array(b_source, dtype=np.int64).reshape(N, 2),
    }

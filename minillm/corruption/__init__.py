"""Corruption: how each pre-training objective turns a text into a puzzle, as pure functions.

Token ids and an ``rng`` go in; the corrupted ids, what the model must predict, and a record of
what was done come out. No model and no training settings are involved, so each algorithm's
statistics and invariants are tested on its own (tests/test_mlm_corruption.py,
tests/test_seq2seq_corruption.py), and the objectives in ../objectives/ only batch them.

    bert.py       mask_tokens: 15% of the words, 80% [MASK] / 10% random / 10% kept (BERT);
                  StaticMasker and DynamicMasker (BERT's fixed copies, RoBERTa's fresh masks)
    spanbert.py   span_mask: whole spans, lengths from a clipped geometric law (SpanBERT)
    nsp.py        make_nsp_pairs: [CLS] A [SEP] B [SEP], B next or random (BERT's NSP)
    t5.py         span_corruption: spans cut out, one sentinel each (T5)
    bart.py       text_infilling and permute_sentences (BART)
    checks.py     the argument checks they share
"""

"""Argument checks shared by the corruption functions: each names the argument at fault."""

from __future__ import annotations

import numpy as np


def check_probability(name, value):
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be a probability in [0, 1], got {name}={value!r}")


def check_replacement(mask_prob, random_prob):
    check_probability("mask_prob", mask_prob)
    check_probability("random_prob", random_prob)
    if mask_prob + random_prob > 1.0 + 1e-12:  # the rest, 1 - mask_prob - random_prob, is "kept"
        raise ValueError(
            "mask_prob + random_prob must be at most 1 (the rest is the kept share), got "
            f"mask_prob={mask_prob!r} + random_prob={random_prob!r} = {mask_prob + random_prob!r}"
        )


def check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {name}={value!r}")


def as_int_array(name, a, ndims):
    a = np.asarray(a)
    if a.size == 0:
        a = a.astype(np.int64)  # np.asarray([]) is float64
    if a.ndim not in ndims:
        dims = " or ".join(map(str, ndims))
        raise ValueError(f"{name} must have {dims} dimension(s), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer token ids, got dtype {a.dtype}")
    return a


def check_vocabulary(ordinary_ids, special_ids):
    """-> (ordinary_ids, special_ids) as 1-D int arrays (special_ids may be None: every id not
    in ordinary_ids); ordinary_ids non-empty and not special."""
    ordinary_ids = as_int_array("ordinary_ids", ordinary_ids, (1,))
    if ordinary_ids.size == 0:
        raise ValueError(
            "ordinary_ids must hold at least one word id (random replacements are drawn from it), "
            "got ordinary_ids=[]"
        )
    if special_ids is None:
        return ordinary_ids, None
    special_ids = as_int_array("special_ids", special_ids, (1,))
    both = np.intersect1d(ordinary_ids, special_ids)
    if both.size:
        raise ValueError(
            f"ordinary_ids must not contain special ids, got {both.tolist()} in both "
            "ordinary_ids and special_ids"
        )
    return ordinary_ids, special_ids


def as_rows(ids, attention_mask):
    """(T,) or (B, T) -> (B, T) arrays and whether to return (T,) again."""
    ids = as_int_array("ids", ids, (1, 2))
    one_row = ids.ndim == 1
    if one_row:
        ids = ids[None, :]  # (1, T)
    if attention_mask is not None:
        attention_mask = np.asarray(attention_mask)
        if one_row:
            attention_mask = attention_mask[None, :]
        if attention_mask.shape != ids.shape:
            raise ValueError(
                f"attention_mask must have the shape of ids {ids.shape}, got {attention_mask.shape}"
            )
    return ids, attention_mask, one_row


def as_given(info, inputs, labels, one_row):
    """Undo as_rows: a (T,) input gets (T,) outputs, and per-row info becomes one value."""
    if not one_row:
        return inputs, labels, info
    info = {k: (v[0] if isinstance(v, np.ndarray) else v) for k, v in info.items()}
    return inputs[0], labels[0], info


def as_ids(ids):
    """Any sequence of token ids -> a 1-D int64 array holding at least one id."""
    a = np.asarray(ids)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"ids must be a non-empty 1-D sequence of token ids, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"ids must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def check_open_unit(name, value):
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")

"""How to train: TrainConfig, the one home of the training options and of the rules between
them (OptionError renders a broken rule in field names from Python, in flag names on the
command line)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .objectives import get_objective
from .options import OptionError

# Objectives whose examples come from the grammar's text-to-text tasks (总结/翻译/问), which
# plain text does not have (TrainConfig.check_data refuses them, and nsp, with a text file).
TASK_OBJECTIVES = ("tasks", "mix")
# Objectives that corrupt text as T5 does: packed into long sequences first (packed_length).
PACKED_OBJECTIVES = ("t5", "mix")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. The defaults train the demo's tiny GPT on the built-in grammar."""

    steps: int = 300  # optimizer steps
    batch_size: int = 32  # sequences per step
    lr: float = 3e-3  # peak learning rate, reached at the end of warm-up
    min_lr: float = 3e-4  # learning rate at the last step (cosine decay ends here)
    warmup: int = 30  # steps of linear warm-up from 0
    weight_decay: float = 0.1  # AdamW's decoupled decay of matrices
    clip: float = 1.0  # cap on the global gradient norm (of the mean loss's gradient)
    seed: int = 0  # one seed for the initial parameters and for the data
    log_every: int = 25  # steps between progress lines
    dtype: str = "float32"  # parameter dtype: float32 for speed, float64 for exactness
    objective: str = "clm"  # clm (GPT); mlm, span (BERT); t5, bart, tasks, mix (encoder-decoder)
    masking: str = "dynamic"  # mlm/span: a new mask each time (RoBERTa) or one per example (BERT)
    pool: int = 0  # train on a fixed pool of this many sentences (0: a fresh draw every step)
    nsp: bool = False  # mlm: train next-sentence prediction too, on two-sentence documents
    # xlnet: predict the last 1/K of each factorization order (Yang et al. 2019, K = 6)
    plm_k: int = 6

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("warmup", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("lr", "min_lr", "weight_decay", "clip"):
            value = getattr(self, name)
            try:
                ok = not isinstance(value, bool) and math.isfinite(float(value)) and value >= 0
            except (TypeError, ValueError, OverflowError):  # a string; an int beyond float
                ok = False
            if not ok:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        get_objective(self.objective)  # names the objective if it is unknown
        if self.masking not in ("dynamic", "static"):
            raise ValueError(f"masking must be 'dynamic' or 'static', got {self.masking!r}")
        if not isinstance(self.pool, int) or self.pool < 0:
            raise ValueError(f"pool must be a non-negative integer, got {self.pool!r}")
        if isinstance(self.plm_k, bool) or not isinstance(self.plm_k, int) or self.plm_k < 1:
            raise ValueError(f"plm_k must be a positive integer, got {self.plm_k!r}")
        # The rules between options are OptionErrors: the CLI reports them in its flags.
        if self.plm_k != 6 and self.objective != "xlnet":
            raise OptionError("{plm_k} needs {objective:xlnet}, got {objective}",
                              plm_k=self.plm_k, objective=self.objective)
        if self.nsp and self.objective != "mlm":
            raise OptionError("{nsp} needs {objective:mlm}, got {objective}", nsp=True,
                              objective=self.objective)
        if self.nsp and (self.masking != "dynamic" or self.pool):
            raise OptionError("{nsp} goes with {masking:dynamic} and {pool:0}, got {masking} "
                              "and {pool}", nsp=True, masking=self.masking, pool=self.pool)
        if self.masking == "static" and self.pool == 0:
            raise OptionError("{masking} masks each sentence once for the whole run, so it needs "
                              "a fixed set of them: add {pool:N} (say {pool:2000})",
                              masking=self.masking, pool=self.pool)

    def check_data(self, data):
        """Refuse a text file (``data``, its name; None for the grammar) to the objectives that
        build their examples from the grammar's structure. make_data calls it, and the CLI does
        before it reads the file."""
        if data is not None and self.objective in TASK_OBJECTIVES:
            raise OptionError("{objective} trains on the grammar's text-to-text tasks (总结/翻译/问), "
                              "which a text file does not have; drop {data} or use {objective:t5} "
                              "or {objective:bart}", objective=self.objective, data=data)
        if data is not None and self.objective == "caption":
            raise OptionError("{objective} trains on pictures drawn from the grammar with their "
                              "captions (pictures.py), which a text file does not have; drop "
                              "{data}", objective=self.objective, data=data)
        if data is not None and self.nsp:
            raise OptionError("{nsp} trains on the grammar's two-sentence documents; it cannot "
                              "read {data}", nsp=True, data=data)

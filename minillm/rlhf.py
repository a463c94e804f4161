"""InstructGPT's supervised fine-tuning and reward model, and DPO, each loss a forward/backward
pair (tutorial: 第四代 InstructGPT：RLHF + 语言模型; the PPO half is in ppo.py).

A prompt x and a response y are one row of token ids, as task_formats.py writes a task for
a GPT:

    [BOS] x_1 .. x_n [SEP] y_1 .. y_m [EOS]

The losses, with their sources:

    SFT    L = −Σ_{t ∈ response} log π(y_t | x, y_<t)             (Ouyang et al. 2022, §3.5;
           the prompt's targets carry IGNORE_INDEX, as DPO's reference code masks them)
    RM     r(x, y) = w · h_last + b,  h_last the GPT's final hidden state at [EOS]
           L = −Σ_pairs weight · log σ(r(x, y_w) − r(x, y_l))    (InstructGPT Eq. 1)
    DPO    Δ = (log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))
           L = −mean_pairs log σ(β Δ)                              (Rafailov et al. 2023, Eq. 7)

with log π(y|x) = Σ_{t ∈ response} log π(y_t | x, y_<t), a sum over the response's tokens
(both reference codes sum; a mean per token would be another objective).
"""

from __future__ import annotations

import math

import numpy as np

from .layers import IGNORE_INDEX, cross_entropy_backward, cross_entropy_forward, \
    linear_backward, linear_forward
from .models import INIT_STD, check_finite, gpt_backward, gpt_forward
from .objectives import clm
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, SEP_ID, right_pad


def log_sigmoid(x):
    """log σ(x) = −log(1 + e^{−x}), without overflow for large |x|."""
    return -np.logaddexp(0.0, -x)


def sigmoid(x):
    """σ(x) = 1 / (1 + e^{−x}) = exp(log σ(x))."""
    return np.exp(log_sigmoid(x))


def check_same_shape(**arrays):
    """Arrays that a formula combines element by element must have one shape (numpy would
    broadcast a (1,) or (B, 1) silently): a ValueError naming them and their shapes."""
    shapes = {name: np.shape(a) for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"{', '.join(shapes)} must have one shape, got "
                         f"{', '.join(f'{n} {s}' for n, s in shapes.items())}")


def check_beta(beta):
    """β, the KL coefficient: a finite number > 0."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta < math.inf:
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")


def _check_indices(name, idx, n):
    """Indices into n responses: integers in [0, n) (numpy would read −1 as the last one)."""
    if not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"{name} must hold indices of the {n} rewards, in [0, {n}), got "
                         f"{idx.tolist()!r}")


# ----------------------------------------------------------------------------------------------
# Batches: [BOS] prompt [SEP] response [EOS]


def _check_pairs(prompts, responses):
    if len(prompts) == 0 or len(prompts) != len(responses):
        raise ValueError(f"prompts and responses must be two equally long, non-empty lists, got "
                         f"{len(prompts)} prompts and {len(responses)} responses")


def sft_batch(prompts, responses):
    """Lists of prompt ids and response ids -> a next-token batch whose loss is on the response.

    clm.make_batch of ``x [SEP] y``: the model reads [BOS] x [SEP] y and is asked for
    x [SEP] y [EOS]; the first n + 1 targets (x and [SEP]) become IGNORE_INDEX, so the loss is

        L_SFT = −Σ_{t ∈ response} log π(y_t | x, y_<t)      (y_{m+1} = [EOS])

    Returns inputs, targets, attention_mask (B, T) as clm.make_batch does.
    """
    _check_pairs(prompts, responses)
    batch = clm.make_batch([[*x, SEP_ID, *y] for x, y in zip(prompts, responses)])
    for b, x in enumerate(prompts):
        batch["targets"][b, : len(x) + 1] = IGNORE_INDEX  # x_1 .. x_n and [SEP]: not asked for
    return batch


def sft_loss_and_grads(params, cfg, batch):
    """L_SFT = −Σ_{t ∈ response} log π(y_t | x, y_<t) on an sft_batch, and dL/dθ.

    This is clm's loss (cross-entropy skips the ignored prompt targets): the prompt is read,
    never predicted. Returns (L, n_response_tokens, grads)."""
    return clm.loss_and_grads(params, cfg, batch, reduction="sum")


def sequence_batch(prompts, responses):
    """Whole rows [BOS] x [SEP] y [EOS] for the reward model: ids and attention_mask (B, T),
    and ``last`` (B,), the position of each row's [EOS], where the reward is read."""
    _check_pairs(prompts, responses)
    rows = [[BOS_ID, *x, SEP_ID, *y, EOS_ID] for x, y in zip(prompts, responses)]
    ids, mask = right_pad(rows, PAD_ID)  # (B, T)
    return {"ids": ids, "attention_mask": mask, "last": mask.sum(axis=1) - 1}


# ----------------------------------------------------------------------------------------------
# log π(y_t | ...) of given tokens, and its backward


def token_logprobs_forward(logits, targets):
    """log π(y_t | y_<t) = logits_t[y_t] − log Σ_v exp(logits_t[v]) at every position whose
    target is not IGNORE_INDEX (0 elsewhere): cross_entropy_forward's per-position terms.

    logits (B, T, V), targets (B, T) -> logp (B, T), cache.
    """
    _, cache = cross_entropy_forward(logits, targets, reduction="sum")
    return cache["logp_target"], cache  # (B, T)


def token_logprobs_backward(dlogp, cache):
    """dlogp (B, T) -> dlogits (B, T, V).

    ∂ log π(y_t) / ∂ logits_t = onehot(y_t) − softmax(logits_t); cross_entropy_backward(1)
    gives its negative, softmax − onehot (0 at ignored positions), row by row.
    """
    dce = cross_entropy_backward(1.0, cache)  # (B, T, V) = softmax − onehot
    return -dlogp[..., None] * dce


def sequence_logprobs(params, cfg, batch):
    """log π(y|x) = Σ_{t ∈ response} log π(y_t | x, y_<t) for every row of an sft_batch.

    -> logps (B,), cache (for sequence_logprobs_backward)."""
    logits, model_cache = gpt_forward(params, cfg, batch["inputs"], batch["attention_mask"])
    logp, lp_cache = token_logprobs_forward(check_finite(logits), batch["targets"])  # (B, T)
    return logp.sum(axis=1), {"model": model_cache, "logp": lp_cache}


def sequence_logprobs_backward(dlogps, cache):
    """dlogps (B,) -> grads: every response token of row b receives dlogps[b] (the sum's
    gradient); the prompt's tokens receive nothing (their logp is 0, not a term)."""
    keep = cache["logp"]["keep"].reshape(cache["logp"]["logp_target"].shape)  # (B, T)
    dlogp = dlogps[:, None] * keep  # (B, T)
    dlogits = token_logprobs_backward(dlogp, cache["logp"])  # (B, T, V)
    return gpt_backward(dlogits, cache["model"])


# ----------------------------------------------------------------------------------------------
# Scalar heads on the final hidden states: the reward model's and the value function's


def scalar_head_shapes(cfg, name):
    """The head's parameters: ``{name}.w`` (C, 1), ``{name}.b`` (1,)."""
    return {f"{name}.w": (cfg.n_embd, 1), f"{name}.b": (1,)}


def add_scalar_head(params, cfg, name, rng):
    """A copy of ``params`` with a new scalar head: w ~ N(0, INIT_STD), b = 0 (GPT-2's
    initialisation of a linear layer), in the parameters' dtype."""
    dtype = params["wte"].dtype
    out = dict(params)
    out[f"{name}.w"] = rng.normal(0.0, INIT_STD, size=(cfg.n_embd, 1)).astype(dtype)
    out[f"{name}.b"] = np.zeros(1, dtype=dtype)
    return out


def gpt_without(params, name):
    """The GPT's own parameters: ``params`` without the head ``name`` (which must be there)."""
    if f"{name}.w" not in params or f"{name}.b" not in params:
        raise ValueError(f"params must hold the scalar head {name!r} ({name}.w, {name}.b: "
                         f"add_scalar_head), got none")
    return {k: v for k, v in params.items() if not k.startswith(name + ".")}


def reward_forward(params, cfg, batch, name="rm"):
    """r(x, y) = w · h_last + b: the reward model reads the GPT's final hidden state (after
    ln_f) at the row's last token, [EOS]  (InstructGPT §3.5: a scalar head on the GPT).

    batch from sequence_batch -> r (B,), cache.
    """
    logits, model_cache = gpt_forward(gpt_without(params, name), cfg, batch["ids"],
                                      batch["attention_mask"])
    h = model_cache["h"]  # (B, T, C)
    rows = np.arange(h.shape[0])
    h_last = h[rows, batch["last"]]  # (B, C)
    r, head_cache = linear_forward(h_last, params[f"{name}.w"], params[f"{name}.b"])  # (B, 1)
    cache = {"model": model_cache, "head": head_cache, "last": batch["last"], "name": name,
             "logits_shape": logits.shape}
    return r[:, 0], cache


def reward_backward(dr, cache):
    """dr (B,) -> grads of the GPT and the head.

    In the forward pass r = h_last w + b, so dw = h_last^T dr, db = Σ dr and dh_last = dr w^T;
    h_last = h[b, last_b], so dh is dh_last at those positions and 0 elsewhere; then the GPT's
    backward, with no gradient from its output layer (dlogits = 0).
    """
    name = cache["name"]
    dh_last, dw, db = linear_backward(dr[:, None], cache["head"])  # (B, C), (C, 1), (1,)
    h = cache["model"]["h"]
    dh = np.zeros_like(h)  # (B, T, C)
    dh[np.arange(h.shape[0]), cache["last"]] = dh_last
    dlogits = np.zeros(cache["logits_shape"], dtype=h.dtype)  # the output layer is not used
    grads = gpt_backward(dlogits, cache["model"], dh_head=dh)
    grads[f"{name}.w"], grads[f"{name}.b"] = dw, db
    return grads


# ----------------------------------------------------------------------------------------------
# The reward model's pairwise loss


def pairwise_loss_forward(r, chosen, rejected, weights=None):
    """L = −Σ_p weight_p · log σ(r[chosen_p] − r[rejected_p])   (InstructGPT Eq. 1).

    r (N,) rewards of N responses; chosen, rejected (P,) indices into r of each pair's
    preferred and other response; weights (P,) default 1/P (the mean over pairs).
    k_choose_2_pairs gives InstructGPT's weights 1/(prompts · C(K, 2)).
    -> L (a float), cache. At equal rewards L = log 2 whatever the weights (if they sum to 1).
    """
    chosen, rejected = np.asarray(chosen), np.asarray(rejected)
    if chosen.shape != rejected.shape or chosen.ndim != 1 or chosen.size == 0:
        raise ValueError(f"chosen and rejected must be two equally long, non-empty index "
                         f"lists, got shapes {chosen.shape} and {rejected.shape}")
    _check_indices("chosen", chosen, len(r))
    _check_indices("rejected", rejected, len(r))
    weights = np.full(chosen.shape, 1.0 / chosen.size) if weights is None else weights
    check_same_shape(chosen=chosen, weights=weights)
    margin = r[chosen] - r[rejected]  # (P,)
    L = -np.sum(weights * log_sigmoid(margin))
    cache = {"margin": margin, "weights": weights, "chosen": chosen, "rejected": rejected,
             "n": r.shape[0]}
    return float(L), cache


def pairwise_loss_backward(dL, cache):
    """dL (scalar) -> dr (N,).

    ∂/∂m [−log σ(m)] = −σ(−m), with m = r_w − r_l: each pair adds −weight·σ(−m) to its chosen
    reward's gradient and +weight·σ(−m) to its rejected one's (np.add.at: a response in
    several pairs collects them all).
    """
    g = dL * cache["weights"] * sigmoid(-cache["margin"])  # (P,)
    dr = np.zeros(cache["n"], dtype=cache["margin"].dtype)
    np.add.at(dr, cache["chosen"], -g)
    np.add.at(dr, cache["rejected"], g)
    return dr


def k_choose_2_pairs(rankings):
    """InstructGPT's comparisons (§3.5): each prompt's K ranked responses give all C(K, 2)
    pairs, weighted 1/C(K, 2) within the prompt and averaged over prompts.

    rankings: a list of lists of response indices, best first (one list per prompt, K ≥ 2).
    -> chosen (P,), rejected (P,), weights (P,) for pairwise_loss_forward.
    """
    chosen, rejected, weights = [], [], []
    for order in rankings:
        K = len(order)
        if K < 2:
            raise ValueError(f"a ranking needs at least 2 responses, got {order!r}")
        for i in range(K):
            for j in range(i + 1, K):
                chosen.append(order[i])
                rejected.append(order[j])
                weights.append(1.0 / (math.comb(K, 2) * len(rankings)))
    return np.array(chosen), np.array(rejected), np.array(weights)


def pairwise_accuracy(r, chosen, rejected):
    """The share of pairs the rewards order as the labeler did: mean of [r_w > r_l]."""
    return float(np.mean(np.asarray(r)[chosen] > np.asarray(r)[rejected]))


# ----------------------------------------------------------------------------------------------
# DPO


def dpo_loss_forward(logp_w, logp_l, ref_w, ref_l, beta, weights=None):
    """L = −Σ_p weight_p log σ(β Δ_p),  Δ = (log π(y_w|x) − log π_ref(y_w|x))
                                          − (log π(y_l|x) − log π_ref(y_l|x))   (DPO, Eq. 7).

    logp_w, logp_l (P,): the policy's sequence log-probabilities of the chosen and the rejected
    responses; ref_w, ref_l (P,): the reference model's (constants). β > 0. weights (P,)
    default 1/P: the mean over pairs (an expectation over comparisons passes their
    probabilities). -> L (a float), cache. At π = π_ref, L = log 2 (weights summing to 1).
    """
    check_beta(beta)
    check_same_shape(logp_w=logp_w, logp_l=logp_l, ref_w=ref_w, ref_l=ref_l)
    delta = (logp_w - ref_w) - (logp_l - ref_l)  # (P,)
    weights = np.full(delta.shape, 1.0 / delta.shape[0]) if weights is None else weights
    check_same_shape(logp_w=logp_w, weights=weights)
    L = -np.sum(weights * log_sigmoid(beta * delta))
    return float(L), {"delta": delta, "beta": beta, "weights": weights}


def dpo_loss_backward(dL, cache):
    """dL (scalar) -> (dlogp_w, dlogp_l), each (P,).

    ∂L/∂Δ_p = −weight_p β σ(−β Δ_p), and Δ = logp_w − logp_l + constants, so
    dlogp_w = −weight β σ(−βΔ) and dlogp_l = +weight β σ(−βΔ); σ(−βΔ) = σ(r̂_l − r̂_w) is the
    weight of DPO's §4 gradient (r̂ = β log π/π_ref, the implicit reward).
    """
    delta, beta = cache["delta"], cache["beta"]
    ddelta = -dL * cache["weights"] * beta * sigmoid(-beta * delta)  # (P,)
    return ddelta, -ddelta


def dpo_loss_and_grads(params, cfg, batch, ref_logps, chosen, rejected, beta, weights=None):
    """The DPO loss on pairs of rows of one sft_batch, and dL/dθ: a row may be in several
    pairs (InstructGPT's K-choose-2 pairs of a prompt's ranked responses, k_choose_2_pairs).

    ref_logps (N,): the reference model's log π_ref(y|x) of the N rows (constants); chosen,
    rejected (P,): row indices. -> (L, grads)."""
    logps, cache = sequence_logprobs(params, cfg, batch)  # (N,)
    L, dpo_cache = dpo_loss_forward(logps[chosen], logps[rejected], ref_logps[chosen],
                                    ref_logps[rejected], beta, weights)
    d_w, d_l = dpo_loss_backward(1.0, dpo_cache)  # (P,) each
    dlogps = np.zeros_like(logps)  # (N,): a row in several pairs collects every pair's part
    np.add.at(dlogps, chosen, d_w)
    np.add.at(dlogps, rejected, d_l)
    return L, sequence_logprobs_backward(dlogps, cache)


def optimal_policy(pi_ref, reward, beta):
    """π*(y) = π_ref(y) exp(r(y)/β) / Z,  Z = Σ_y π_ref(y) exp(r(y)/β)   (DPO, Eq. 4): the
    maximiser of E_π[r] − β KL(π ‖ π_ref) and the minimiser of the DPO loss on Bradley–Terry
    comparisons with that r. pi_ref (N,) > 0, reward (N,) -> (N,)."""
    check_beta(beta)
    pi_ref, reward = np.asarray(pi_ref, dtype=float), np.asarray(reward, dtype=float)
    if pi_ref.ndim != 1 or not np.all(pi_ref > 0):
        raise ValueError(f"pi_ref must be a 1-D array of probabilities > 0, got {pi_ref!r}")
    check_same_shape(pi_ref=pi_ref, reward=reward)
    logits = np.log(pi_ref) + reward / beta  # (N,)
    e = np.exp(logits - logits.max())
    return e / e.sum()

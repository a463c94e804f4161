"""InstructGPT's reinforcement learning: the KL penalty per token, GAE, and PPO's clipped losses
(tutorial: 第四代 InstructGPT：RLHF + 语言模型; the SFT, reward model and DPO are in rlhf.py).

The objective (InstructGPT Eq. 2, without the pre-training term):

    maximise  E_{y ~ π}[ r_θ(x, y) − β log(π(y|x) / π_SFT(y|x)) ]

and how the reference codes spend it per token (openai/lm-human-preferences, TRL's PPOTrainer):

    kl_t = log π_old(y_t | s_t) − log π_SFT(y_t | s_t)        at the sampled tokens
    r_t  = −β kl_t,   plus the reward model's score at the response's last token
    δ_t  = r_t + γ V_{t+1} − V_t,   A_t = δ_t + γ λ A_{t+1}   (GAE, Schulman et al. 2016)
    R_t  = A_t + V_t                                           (the value function's target)
    ρ_t  = π(y_t | s_t) / π_old(y_t | s_t)
    L_pg = mean_t max(−A_t ρ_t, −A_t clip(ρ_t, 1 − ε, 1 + ε))  (PPO, Schulman et al. 2017)
    L_vf = ½ mean_t max((V_t − R_t)², (clip(V_t, V_old − ε_v, V_old + ε_v) − R_t)²)

The value loss is clipped, as both reference codes do (cliprange_value 0.2). Means are over the
response's tokens (``mask``), as TRL takes them. Arrays are (B, T): B responses, T positions.
"""

from __future__ import annotations

import numpy as np

from .layers import linear_backward, linear_forward
from .models import check_finite, gpt_backward, gpt_forward
from .rlhf import check_same_shape, gpt_without, token_logprobs_backward, \
    token_logprobs_forward

# InstructGPT's settings (Ouyang et al. 2022, App. C.4): β = 0.02, ε = 0.2, γ = 1; GAE's
# λ = 0.95 and the value clip 0.2 are lm-human-preferences' and TRL's defaults.
BETA, CLIP, GAMMA, LAM, CLIP_VALUE = 0.02, 0.2, 1.0, 0.95, 0.2
# The value loss's weight in L = L_pg + c_vf L_vf (both reference codes' vf_coef).
VF_COEF = 0.1
# The variance floor of whitening: TRL's and lm-human-preferences' 1e-8.
WHITEN_EPS = 1e-8


def _check_in(name, value, low, high):
    """A number in [low, high], or a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")


def _masked_mean(x, mask):
    """Σ mask·x / Σ mask: the mean over the response's tokens."""
    return np.sum(x * mask) / np.sum(mask)


# ----------------------------------------------------------------------------------------------
# The KL penalty


def kl_penalty_forward(logp, logp_ref, mask, beta=BETA):
    """P = β Σ_t mask_t (log π(y_t | s_t) − log π_SFT(y_t | s_t)): β times the per-token KL
    estimate kl_t, summed over the response: β log(π(y|x) / π_SFT(y|x)) of Eq. 2 for one
    sample per row. Its mean under y ~ π is β KL(π ‖ π_SFT).

    logp, logp_ref, mask (B, T) -> P (a float, summed over rows), kl (B, T), cache.
    """
    _check_in("beta", beta, 0.0, np.inf)  # β = 0: no penalty
    if beta == np.inf:  # ∞ · 0 at the tokens where π = π_SFT: NaN
        raise ValueError(f"beta must be finite, got {beta!r}")
    check_same_shape(logp=logp, logp_ref=logp_ref, mask=mask)
    kl = (logp - logp_ref) * mask  # (B, T)
    return float(beta * kl.sum()), kl, {"mask": mask, "beta": beta}


def kl_penalty_backward(dP, cache):
    """dP (scalar) -> dlogp (B, T) = dP β mask (π_SFT is a constant)."""
    return dP * cache["beta"] * cache["mask"]


def per_token_rewards(score, kl, mask, beta=BETA):
    """r_t = −β kl_t, and r_last += score at each row's last response token (TRL's convention).

    score (B,) the reward model's, kl and mask (B, T) -> r (B, T). Summed over t:
    score − β log(π_old/π_SFT)(y|x), the bracket of InstructGPT's Eq. 2.
    """
    rewards = -beta * kl * mask  # (B, T)
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)  # (B,) last 1 of each row
    rewards[np.arange(mask.shape[0]), last] += score
    return rewards


# ----------------------------------------------------------------------------------------------
# Generalised advantage estimation


def gae(rewards, values, mask, gamma=GAMMA, lam=LAM):
    """A_t = δ_t + γ λ A_{t+1},  δ_t = r_t + γ V_{t+1} − V_t,  V and A after the last response
    token := 0  (Schulman et al. 2016, Eqs. 11–16); R_t = A_t + V_t.

    rewards, values, mask (B, T), the mask 1 on a contiguous run of response tokens ->
    advantages (B, T), returns (B, T), both 0 outside the mask. Not whitened.
    """
    _check_in("gamma", gamma, 0.0, 1.0)
    _check_in("lam", lam, 0.0, 1.0)
    check_same_shape(rewards=rewards, values=values, mask=mask)
    B, T = rewards.shape
    advantages = np.zeros_like(rewards)  # (B, T)
    next_value = np.zeros(B, dtype=rewards.dtype)  # V_{t+1}
    next_advantage = np.zeros(B, dtype=rewards.dtype)  # A_{t+1}
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
        advantages[:, t] = (delta + gamma * lam * next_advantage) * mask[:, t]
        next_value = values[:, t] * mask[:, t]
        next_advantage = advantages[:, t]
    returns = (advantages + values) * mask
    return advantages, returns


# ----------------------------------------------------------------------------------------------
# PPO's clipped surrogate


def ppo_policy_loss_forward(logp, logp_old, advantages, mask, clip=CLIP):
    """L_pg = mean_t max(−A_t ρ_t, −A_t clip(ρ_t, 1 − ε, 1 + ε)),  ρ_t = exp(logp − logp_old)
    (Schulman et al. 2017, Eq. 7, as a loss to minimise).

    logp (B, T) the policy's log-probs of the sampled tokens; logp_old, advantages (B, T)
    from the rollout (constants); mask (B, T). -> L (a float), cache. The cache's clip_frac
    is the share of tokens whose ratio lies strictly outside [1 − ε, 1 + ε].
    """
    _check_in("clip", clip, 0.0, 1.0)
    check_same_shape(logp=logp, logp_old=logp_old, advantages=advantages, mask=mask)
    ratio = np.exp(logp - logp_old)  # (B, T)
    unclipped = -advantages * ratio  # (B, T)
    clipped = -advantages * np.clip(ratio, 1.0 - clip, 1.0 + clip)  # (B, T)
    L = _masked_mean(np.maximum(unclipped, clipped), mask)
    cache = {"ratio": ratio, "advantages": advantages, "mask": mask,
             "use_unclipped": unclipped >= clipped,
             "clip_frac": float(_masked_mean(np.abs(ratio - 1.0) > clip, mask))}
    return float(L), cache


def ppo_policy_loss_backward(dL, cache):
    """dL (scalar) -> dlogp (B, T).

    Where the unclipped term is the max, ∂(−A ρ)/∂logp = −A ρ. Where the clipped one is
    strictly larger, ρ lies outside [1 − ε, 1 + ε] on the side where clipping holds it, and
    the gradient is 0. At a tie (inside the range, or ρ exactly at 1 ± ε) the unclipped
    term's derivative is taken: at the boundary that is the one-sided derivative from inside
    the range (the left one at 1 + ε, the right one at 1 − ε).
    """
    mask = cache["mask"]
    grad = -cache["advantages"] * cache["ratio"] * cache["use_unclipped"]  # (B, T)
    return dL * grad * mask / np.sum(mask)


# ----------------------------------------------------------------------------------------------
# The value function: a scalar head at every position, and its clipped loss


def value_head_forward(h, w, b):
    """V_t = w · h_t + b at every position: h (B, T, C), w (C, 1), b (1,) -> V (B, T), cache."""
    v, cache = linear_forward(h, w, b)  # (B, T, 1)
    return v[..., 0], cache


def value_head_backward(dv, cache):
    """dv (B, T) -> dh (B, T, C), dw (C, 1), db (1,)."""
    return linear_backward(dv[..., None], cache)


def value_loss_forward(values, values_old, returns, mask, clip_value=CLIP_VALUE):
    """L_vf = ½ mean_t max((V_t − R_t)², (V_clip,t − R_t)²),
    V_clip = clip(V, V_old − ε_v, V_old + ε_v)   (lm-human-preferences and TRL's PPOTrainer).

    values (B, T) the value head's now; values_old, returns (B, T) from the rollout; mask.
    -> L (a float), cache.
    """
    _check_in("clip_value", clip_value, 0.0, np.inf)
    check_same_shape(values=values, values_old=values_old, returns=returns, mask=mask)
    values_clipped = np.clip(values, values_old - clip_value, values_old + clip_value)
    loss_unclipped = (values - returns) ** 2  # (B, T)
    loss_clipped = (values_clipped - returns) ** 2  # (B, T)
    L = 0.5 * _masked_mean(np.maximum(loss_unclipped, loss_clipped), mask)
    cache = {"values": values, "returns": returns, "mask": mask,
             "use_unclipped": loss_unclipped >= loss_clipped}
    return float(L), cache


def value_loss_backward(dL, cache):
    """dL (scalar) -> dvalues (B, T).

    Where the unclipped square is the max, ∂/∂V ½(V − R)² = V − R. Where the clipped one is
    strictly larger, V lies outside the clip range (inside it, V_clip = V and the two tie), so
    V_clip does not move with V: 0. Ties take the unclipped derivative, as ppo_policy_loss.
    """
    mask = cache["mask"]
    grad = (cache["values"] - cache["returns"]) * cache["use_unclipped"]  # (B, T)
    return dL * grad * mask / np.sum(mask)


# ----------------------------------------------------------------------------------------------
# One PPO loss on a GPT whose value head shares the trunk


def whiten(x, mask):
    """(x − mean) / sqrt(var + 1e-8) over the masked entries (TRL whitens the advantages so;
    the mean and the biased variance over the response tokens). 0 outside the mask."""
    mean = _masked_mean(x, mask)
    var = _masked_mean((x - mean) ** 2, mask)
    return (x - mean) / np.sqrt(var + WHITEN_EPS) * mask


def ppo_loss_and_grads(params, cfg, batch, rollout, clip=CLIP, clip_value=CLIP_VALUE,
                       vf_coef=VF_COEF, name="v"):
    """L = L_pg + c_vf L_vf on a GPT with the value head ``name`` on its final hidden states
    (the trunk shared, as TRL's model with a value head), and dL/dθ for every parameter.

    batch: an sft_batch of the rollout's prompts and responses (its targets mark the
    response); rollout: logp_old, values_old, advantages, returns (B, T) from the rollout.
    The two heads read the same h: the output layer's gradient and the value head's add in
    gpt_backward. -> (L, stats {pg_loss, vf_loss, clip_frac}, grads).
    """
    logits, cache = gpt_forward(gpt_without(params, name), cfg, batch["inputs"],
                                batch["attention_mask"])
    logp, lp_cache = token_logprobs_forward(check_finite(logits), batch["targets"])  # (B, T)
    values, head_cache = value_head_forward(cache["h"], params[f"{name}.w"],
                                            params[f"{name}.b"])  # (B, T)
    mask = lp_cache["keep"].reshape(logp.shape).astype(logp.dtype)  # the response's tokens
    pg, pg_cache = ppo_policy_loss_forward(logp, rollout["logp_old"], rollout["advantages"],
                                           mask, clip)
    vf, vf_cache = value_loss_forward(values, rollout["values_old"], rollout["returns"], mask,
                                      clip_value)
    # Backward, in reverse: L = pg + c_vf vf.
    dlogits = token_logprobs_backward(ppo_policy_loss_backward(1.0, pg_cache), lp_cache)
    dh, dw, db = value_head_backward(value_loss_backward(vf_coef, vf_cache), head_cache)
    grads = gpt_backward(dlogits, cache, dh_head=dh)
    grads[f"{name}.w"], grads[f"{name}.b"] = dw, db
    stats = {"pg_loss": pg, "vf_loss": vf, "clip_frac": pg_cache["clip_frac"]}
    return pg + vf_coef * vf, stats, grads

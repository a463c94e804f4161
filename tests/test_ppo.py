"""The KL penalty, GAE, PPO's clipped policy loss and the clipped value loss (minillm/ppo.py)."""

import numpy as np
import pytest

from minillm import ppo, rlhf
from minillm.gradcheck import STEP, check_grads, key_bias_zeros
from minillm.layers import log_softmax
from minillm.models import GPTConfig, gpt_forward, gpt_init
from minillm.tokenizer import BOS_ID

RTOL, ATOL = 1e-5, 1e-8


# ----------------------------------------------------------------------------------------------
# The KL penalty


def test_per_token_kl_estimator_has_the_exact_kl_as_its_mean_by_enumeration():
    """Two random GPTs π and π_SFT over a 5-token vocabulary, responses of two tokens after
    [BOS]. The estimator Σ_t (log π(y_t) − log π_SFT(y_t)), averaged over all 25 responses
    with their probabilities under π, must equal the exact KL(π ‖ π_SFT) by the chain rule:
    KL of the first tokens' distributions plus the π-weighted KL of the second's."""
    cfg = GPTConfig(vocab_size=5, n_ctx=3, n_embd=4, n_head=2, n_layer=1)
    rng = np.random.default_rng(0)
    pi, ref = ({k: v + 0.5 * rng.normal(size=v.shape) for k, v in
                gpt_init(cfg, rng, np.float64).items()} for _ in range(2))
    V = cfg.vocab_size
    first, second = np.repeat(np.arange(V), V), np.tile(np.arange(V), V)  # all 25 responses
    inputs = np.stack([np.full(V * V, BOS_ID), first], axis=1)  # (25, 2): [BOS] y_1
    targets = np.stack([first, second], axis=1)  # (25, 2): y_1 y_2
    mask = np.ones((V * V, 2))
    logits, _ = gpt_forward(pi, cfg, inputs)
    ref_logits, _ = gpt_forward(ref, cfg, inputs)
    logp, _ = rlhf.token_logprobs_forward(logits, targets)
    logp_ref, _ = rlhf.token_logprobs_forward(ref_logits, targets)
    _, kl, _ = ppo.kl_penalty_forward(logp, logp_ref, mask, beta=1.0)
    prob = np.exp(logp.sum(axis=1))  # π(y_1 y_2)
    assert prob.sum() == pytest.approx(1.0, rel=1e-12)
    estimator_mean = np.sum(prob * kl.sum(axis=1))

    def kl_full(lp, lq):  # KL of two distributions given as log-probabilities
        return np.sum(np.exp(lp) * (lp - lq), axis=-1)

    lp, lq = log_softmax(logits), log_softmax(ref_logits)  # (25, 2, V)
    p_first = np.exp(lp[0, 0])  # (V,) π(y_1), the same in every row
    # row k*V starts with y_1 = k: lp[::V, 1] (V, V) are the second token's distributions
    exact = kl_full(lp[0, 0], lq[0, 0]) + np.sum(p_first * kl_full(lp[::V, 1], lq[::V, 1]))
    assert exact > 0.01
    assert estimator_mean == pytest.approx(exact, rel=1e-10)


def test_kl_penalty_gradient_through_the_logits_matches_central_differences():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 4, 6))
    targets = rng.integers(0, 6, size=(2, 4))
    mask = np.array([[0, 1, 1, 1], [0, 0, 1, 0]], dtype=float)  # response tokens only
    logp_ref = rng.normal(size=(2, 4)) - 2.0

    def penalty():
        return ppo.kl_penalty_forward(rlhf.token_logprobs_forward(logits, targets)[0], logp_ref,
                                      mask, beta=0.3)[0]

    logp, lp_cache = rlhf.token_logprobs_forward(logits, targets)
    _, kl, cache = ppo.kl_penalty_forward(logp, logp_ref, mask, beta=0.3)
    np.testing.assert_array_equal(kl[mask == 0], 0.0)
    dlogits = rlhf.token_logprobs_backward(ppo.kl_penalty_backward(1.0, cache), lp_cache)
    check_grads(penalty, {"logits": logits}, {"logits": dlogits}, zero={"logits": mask == 0})


def test_per_token_rewards_sum_to_the_score_minus_the_kl_term_and_score_the_last_token():
    kl = np.array([[0.0, 0.5, -0.2, 0.0], [0.0, 0.1, 0.3, 0.4]])
    mask = np.array([[0, 1, 1, 0], [0, 1, 1, 1]], dtype=float)
    score = np.array([1.5, -2.0])
    r = ppo.per_token_rewards(score, kl, mask, beta=0.1)
    np.testing.assert_allclose(r, [[0, -0.05, 0.02 + 1.5, 0], [0, -0.01, -0.03, -0.04 - 2.0]],
                               rtol=1e-14, atol=1e-15)
    # at π = π_SFT every kl_t is 0 and the rewards sum to the score exactly (history.md §4.7)
    np.testing.assert_array_equal(ppo.per_token_rewards(score, 0 * kl, mask).sum(axis=1), score)


# ----------------------------------------------------------------------------------------------
# GAE


def test_gae_on_a_hand_computed_three_step_case():
    """γ = 0.9, λ = 0.8, r = (0, 0, 1), V = (0.5, 0.2, 0.4), V after the end 0:
    δ_2 = 1 − 0.4 = 0.6                          A_2 = 0.6
    δ_1 = 0.9·0.4 − 0.2 = 0.16                   A_1 = 0.16 + 0.72·0.6 = 0.592
    δ_0 = 0.9·0.2 − 0.5 = −0.32                  A_0 = −0.32 + 0.72·0.592 = 0.10624
    R = A + V = (0.60624, 0.792, 1.0).
    Row 1 is the same response after one prompt position (mask 0): its two last steps.
    Row 2 ends after two steps; its padding (r 9, V 7) must not leak in:
    δ_1 = 1 − 0.2 = 0.8, A_1 = 0.8; A_0 = −0.32 + 0.72·0.8 = 0.256."""
    rewards = np.array([[0.0, 0.0, 1.0], [5.0, 0.0, 1.0], [0.0, 1.0, 9.0]])
    values = np.array([[0.5, 0.2, 0.4], [3.0, 0.2, 0.4], [0.5, 0.2, 7.0]])
    mask = np.array([[1, 1, 1], [0, 1, 1], [1, 1, 0]], dtype=float)
    A, R = ppo.gae(rewards, values, mask, gamma=0.9, lam=0.8)
    np.testing.assert_allclose(A, [[0.10624, 0.592, 0.6], [0, 0.592, 0.6], [0.256, 0.8, 0]],
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(R, [[0.60624, 0.792, 1.0], [0, 0.792, 1.0], [0.756, 1.0, 0]],
                               rtol=1e-12, atol=1e-15)


def test_gae_with_gamma_and_lambda_1_is_the_return_to_go_minus_the_value():
    rng = np.random.default_rng(2)
    rewards, values = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    A, R = ppo.gae(rewards, values, np.ones((2, 5)), gamma=1.0, lam=1.0)
    to_go = np.cumsum(rewards[:, ::-1], axis=1)[:, ::-1]
    np.testing.assert_allclose(A, to_go - values, rtol=1e-12)
    np.testing.assert_allclose(R, to_go, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# PPO's clipped policy loss


def _ratios_away_from_the_boundary(rng, shape, clip, margin=1e-3):
    """log π_old and log π with ratios spread over [0.5, 1.6], none within ``margin`` of
    1 ± ε (where the central difference would straddle the kink)."""
    logp_old = rng.normal(size=shape) - 1.0
    ratio = rng.uniform(0.5, 1.6, size=shape)
    for edge in (1 - clip, 1 + clip):
        near = np.abs(ratio - edge) < margin
        ratio[near] = edge + 2 * margin
    return logp_old + np.log(ratio), logp_old


def test_ppo_policy_loss_gradient_matches_central_differences_on_both_branches():
    rng = np.random.default_rng(3)
    logp, logp_old = _ratios_away_from_the_boundary(rng, (3, 6), ppo.CLIP)
    advantages = rng.normal(size=(3, 6))
    mask = np.ones((3, 6))
    mask[2, 4:] = 0
    L, cache = ppo.ppo_policy_loss_forward(logp, logp_old, advantages, mask)
    assert (~cache["use_unclipped"]).any() and cache["use_unclipped"].any()  # both branches
    assert 0 < cache["clip_frac"] < 1
    dlogp = ppo.ppo_policy_loss_backward(1.0, cache)
    flat = ~cache["use_unclipped"] | (mask == 0)  # clipped or not a response token: 0
    check_grads(lambda: ppo.ppo_policy_loss_forward(logp, logp_old, advantages, mask)[0],
                {"logp": logp}, {"logp": dlogp}, zero={"logp": flat})


def test_ppo_policy_loss_gradient_through_the_logits_matches_central_differences():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 3, 5))
    targets = rng.integers(0, 5, size=(2, 3))
    logp_now, _ = rlhf.token_logprobs_forward(logits, targets)
    logp_old = logp_now + rng.choice([-0.5, -0.05, 0.05, 0.5], size=(2, 3))  # some clipped
    advantages = rng.normal(size=(2, 3))
    mask = np.ones((2, 3))

    def loss():
        logp, _ = rlhf.token_logprobs_forward(logits, targets)
        return ppo.ppo_policy_loss_forward(logp, logp_old, advantages, mask)[0]

    logp, lp_cache = rlhf.token_logprobs_forward(logits, targets)
    _, cache = ppo.ppo_policy_loss_forward(logp, logp_old, advantages, mask)
    dlogits = rlhf.token_logprobs_backward(ppo.ppo_policy_loss_backward(1.0, cache), lp_cache)
    check_grads(loss, {"logits": logits}, {"logits": dlogits})


@pytest.mark.parametrize("side", ["upper", "lower"])
def test_ppo_policy_loss_at_the_clip_boundary_takes_the_derivative_from_inside(side):
    """ρ exactly 1 + ε with A > 0 (the term is −A min(ρ, 1 + ε)), or exactly 1 − ε with A < 0
    (the term is −A max(ρ, 1 − ε)): the loss has a kink there. The backward gives the one-sided
    derivative from inside [1 − ε, 1 + ε], −A ρ: the left one at 1 + ε, the right one at
    1 − ε; from outside the derivative is 0. ε = 0.25 makes exp(log(1 ± ε)) exactly 1 ± ε."""
    eps = 0.25
    ratio, A, inside = (1 + eps, 1.0, -1) if side == "upper" else (1 - eps, -1.0, +1)
    logp_old = np.zeros((1, 1))
    logp = np.log(np.full((1, 1), ratio))
    assert np.exp(logp - logp_old)[0, 0] == ratio  # exactly at the boundary
    adv, mask = np.full((1, 1), A), np.ones((1, 1))

    def f(x):
        return ppo.ppo_policy_loss_forward(np.full((1, 1), x), logp_old, adv, mask, clip=eps)[0]

    _, cache = ppo.ppo_policy_loss_forward(logp, logp_old, adv, mask, clip=eps)
    analytic = ppo.ppo_policy_loss_backward(1.0, cache)[0, 0]
    x, h = logp[0, 0], STEP
    from_inside = (f(x) - f(x + inside * h)) / (-inside * h)
    from_outside = (f(x - inside * h) - f(x)) / (-inside * h)
    assert analytic == pytest.approx(-A * ratio, rel=1e-12)
    assert analytic == pytest.approx(from_inside, rel=1e-5)
    assert from_outside == pytest.approx(0.0, abs=1e-9)
    assert cache["clip_frac"] == 0.0  # exactly at 1 ± ε is not outside the range


# ----------------------------------------------------------------------------------------------
# The value function


def test_value_loss_gradient_matches_central_differences_on_both_branches():
    rng = np.random.default_rng(5)
    values_old = rng.normal(size=(3, 5))
    step = rng.choice([-0.6, -0.1, 0.1, 0.6], size=(3, 5)) + rng.uniform(-0.05, 0.05, (3, 5))
    values = values_old + step  # some inside the clip range (0.2), some outside
    returns = values_old + rng.normal(size=(3, 5))
    mask = np.ones((3, 5))
    mask[1, 3:] = 0
    _, cache = ppo.value_loss_forward(values, values_old, returns, mask)
    assert (~cache["use_unclipped"]).any() and cache["use_unclipped"].any()
    dvalues = ppo.value_loss_backward(1.0, cache)
    check_grads(lambda: ppo.value_loss_forward(values, values_old, returns, mask)[0],
                {"values": values}, {"values": dvalues},
                zero={"values": ~cache["use_unclipped"] | (mask == 0)})


def test_value_loss_at_the_clip_boundary_takes_the_derivative_from_inside():
    """V exactly V_old + ε_v with the return above it: beyond the boundary the clipped square
    (V_clip − R)² is the larger and does not move (derivative 0); inside, both squares are
    (V − R)² (derivative V − R). The backward takes the inside one, as ppo_policy_loss."""
    eps, R = 0.25, 1.0
    v_old, ret, mask = np.zeros((1, 1)), np.full((1, 1), R), np.ones((1, 1))

    def f(v):
        return ppo.value_loss_forward(np.full((1, 1), v), v_old, ret, mask, clip_value=eps)[0]

    v, h = eps, STEP
    _, cache = ppo.value_loss_forward(np.full((1, 1), v), v_old, ret, mask, clip_value=eps)
    analytic = ppo.value_loss_backward(1.0, cache)[0, 0]
    assert analytic == pytest.approx(v - R, rel=1e-12)
    assert analytic == pytest.approx((f(v) - f(v - h)) / h, rel=1e-5)  # from inside
    assert (f(v + h) - f(v)) / h == pytest.approx(0.0, abs=1e-9)  # from outside


def test_value_head_gradient_matches_central_differences():
    rng = np.random.default_rng(6)
    h, w, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 1)), rng.normal(size=(1,))
    upstream = rng.normal(size=(2, 3))
    v, cache = ppo.value_head_forward(h, w, b)
    np.testing.assert_allclose(v, h @ w[:, 0] + b[0], rtol=1e-14)
    dh, dw, db = ppo.value_head_backward(upstream, cache)
    check_grads(lambda: np.sum(ppo.value_head_forward(h, w, b)[0] * upstream),
                {"h": h, "w": w, "b": b}, {"h": dh, "w": dw, "b": db})


def test_bad_settings_are_refused_by_name():
    x, mask = np.zeros((1, 2)), np.ones((1, 2))
    with pytest.raises(ValueError, match="clip"):
        ppo.ppo_policy_loss_forward(x, x, x, mask, clip=1.5)
    with pytest.raises(ValueError, match="lam"):
        ppo.gae(x, x, mask, lam=-0.1)
    with pytest.raises(ValueError, match="gamma"):
        ppo.gae(x, x, mask, gamma=2)
    with pytest.raises(ValueError, match="beta"):
        ppo.kl_penalty_forward(x, x, mask, beta=-1.0)
    with pytest.raises(ValueError, match="clip_value"):
        ppo.value_loss_forward(x, x, x, mask, clip_value=-0.2)


# ----------------------------------------------------------------------------------------------
# The whole PPO loss on a GPT with a value head


def test_whiten_gives_mean_0_and_variance_1_over_the_mask_and_0_outside():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 4)) * 3 + 2
    mask = np.array([[1, 1, 1, 0], [0, 1, 1, 1], [1, 1, 0, 0]], dtype=float)
    w = ppo.whiten(x, mask)
    on = mask == 1
    assert w[on].mean() == pytest.approx(0.0, abs=1e-12)
    assert w[on].var() == pytest.approx(x[on].var() / (x[on].var() + 1e-8), rel=1e-12)
    assert np.all(w[~on] == 0.0)


def test_ppo_loss_gradient_through_a_gpt_with_a_value_head_matches_central_differences():
    """L_pg + c_vf L_vf, the trunk shared by the output layer and the value head. The rollout's
    old log-probs and values are moved away from the current ones so that some ratios and
    values are clipped, none within 1e-3 of a kink."""
    cfg = GPTConfig(vocab_size=11, n_ctx=9, n_embd=8, n_head=2, n_layer=1)
    rng = np.random.default_rng(8)
    params = {k: v + 0.3 * rng.normal(size=v.shape)
              for k, v in gpt_init(cfg, rng, np.float64).items()}
    params = rlhf.add_scalar_head(params, cfg, "v", rng)
    params["v.w"] += rng.normal(size=params["v.w"].shape)
    batch = rlhf.sft_batch([[7, 8], [9], [7, 8, 10]], [[10], [8, 9, 7], [9, 9]])
    shape = batch["targets"].shape
    logits, cache = gpt_forward(rlhf.gpt_without(params, "v"), cfg, batch["inputs"],
                                batch["attention_mask"])
    logp, _ = rlhf.token_logprobs_forward(logits, batch["targets"])
    values, _ = ppo.value_head_forward(cache["h"], params["v.w"], params["v.b"])
    rollout = {"logp_old": logp + rng.choice([-0.5, -0.1, 0.1, 0.5], size=shape),
               "values_old": values + rng.choice([-0.5, -0.1, 0.1, 0.5], size=shape),
               "advantages": rng.normal(size=shape), "returns": values + rng.normal(size=shape)}
    ratio = np.exp(logp - rollout["logp_old"])
    assert np.abs(np.abs(ratio - 1) - ppo.CLIP).min() > 1e-3
    assert np.abs(np.abs(values - rollout["values_old"]) - ppo.CLIP_VALUE).min() > 1e-3
    L, stats, grads = ppo.ppo_loss_and_grads(params, cfg, batch, rollout)
    assert 0 < stats["clip_frac"] < 1
    assert L == pytest.approx(stats["pg_loss"] + ppo.VF_COEF * stats["vf_loss"], rel=1e-14)
    zero = {**key_bias_zeros(params, cfg.n_embd), "wpe": np.s_[shape[1]:]}
    check_grads(lambda: ppo.ppo_loss_and_grads(params, cfg, batch, rollout)[0], params, grads,
                zero)


def test_mismatched_shapes_and_an_infinite_beta_are_refused_by_name():
    """Found in review: β = ∞ passed the check and gave NaN; a values array of another shape
    reached numpy's IndexError."""
    x, mask = np.zeros((2, 3)), np.ones((2, 3))
    with pytest.raises(ValueError, match="beta"):
        ppo.kl_penalty_forward(x, x, mask, beta=np.inf)
    with pytest.raises(ValueError, match="values"):
        ppo.gae(x, np.zeros((3, 2)), mask)
    with pytest.raises(ValueError, match="advantages"):
        ppo.ppo_policy_loss_forward(x, x, np.zeros((2, 1)), mask)
    with pytest.raises(ValueError, match="returns"):
        ppo.value_loss_forward(x, x, np.zeros(3), mask)
    with pytest.raises(ValueError, match="logp_ref"):
        ppo.kl_penalty_forward(x, np.zeros(3), mask)

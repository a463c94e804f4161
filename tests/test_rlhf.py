"""SFT on the response only, the reward model and its pairwise loss, DPO (minillm/rlhf.py)."""

import math

import numpy as np
import pytest

from minillm import rlhf
from minillm.gradcheck import check_grads, key_bias_zeros, numerical_gradient
from minillm.layers import IGNORE_INDEX, cross_entropy_backward, cross_entropy_forward, log_softmax
from minillm.models import GPTConfig, gpt_forward, gpt_init
from minillm.objectives import clm
from minillm.tokenizer import EOS_ID, PAD_ID, SEP_ID

TINY = GPTConfig(vocab_size=11, n_ctx=9, n_embd=8, n_head=2, n_layer=1)
# Ordinary token ids of the tiny vocabulary (0..6 are the special tokens).
A, B, C, D = 7, 8, 9, 10
PROMPTS = [[A, B], [C], [A, B, D]]
RESPONSES = [[D], [B, C, A], [C, C]]


def random_params(seed, cfg=TINY):
    """float64 GPT parameters moved well away from their initial values (gains 1, biases 0),
    so that no term of a gradient is trivially 0."""
    rng = np.random.default_rng(seed)
    params = gpt_init(cfg, rng, dtype=np.float64)
    return {name: value + 0.3 * rng.normal(size=value.shape) for name, value in params.items()}


def _zeros(params, T, unused_ids=()):
    """The gradient parts that are 0 by construction: the attention key biases, the position
    rows from T on, and the embedding rows of tokens that nothing reads."""
    zero = {**key_bias_zeros(params, TINY.n_embd), "wpe": np.s_[T:]}
    if len(unused_ids):
        zero["wte"] = np.asarray(unused_ids)
    return zero


# ----------------------------------------------------------------------------------------------
# SFT


def test_sft_batch_ignores_exactly_the_prompt_and_its_sep():
    batch = rlhf.sft_batch(PROMPTS[:2], RESPONSES[:2])
    I = IGNORE_INDEX
    # row 0 reads [BOS] A B [SEP] D and is asked for D [EOS] after [SEP]
    np.testing.assert_array_equal(batch["targets"], [[I, I, I, D, EOS_ID, I],
                                                     [I, I, B, C, A, EOS_ID]])
    np.testing.assert_array_equal(batch["inputs"][0], [2, A, B, SEP_ID, D, PAD_ID])


def test_sft_loss_is_the_responses_minus_log_probability_given_the_prompt():
    """Oracle by the chain rule: log π(y [EOS] | x) = log P(x [SEP] y [EOS]) − log P(x [SEP])."""
    params = random_params(0)
    batch = rlhf.sft_batch(PROMPTS, RESPONSES)
    L, n, _ = rlhf.sft_loss_and_grads(params, TINY, batch)
    expected = 0.0
    for x, y in zip(PROMPTS, RESPONSES):
        whole, _ = clm.log_prob(params, TINY, [*x, SEP_ID, *y], add_eos=True)
        prompt, _ = clm.log_prob(params, TINY, [*x, SEP_ID])
        expected -= whole - prompt
    assert L == pytest.approx(expected, rel=1e-12)
    assert n == sum(len(y) + 1 for y in RESPONSES)


def test_the_prompt_contributes_nothing_to_the_sft_loss_or_its_gradient():
    """Any logits at the prompt's positions give the same loss, and the loss sends them no
    gradient (exactly 0)."""
    rng = np.random.default_rng(1)
    batch = rlhf.sft_batch(PROMPTS, RESPONSES)
    logits, _ = gpt_forward(random_params(1), TINY, batch["inputs"], batch["attention_mask"])
    prompt_pos = batch["targets"] == IGNORE_INDEX  # (B, T): prompt, [SEP]'s target and padding
    L, cache = cross_entropy_forward(logits, batch["targets"])
    changed = np.where(prompt_pos[..., None], rng.normal(size=logits.shape) * 5, logits)
    assert cross_entropy_forward(changed, batch["targets"])[0] == L
    dlogits = cross_entropy_backward(1.0, cache)
    assert np.all(dlogits[prompt_pos] == 0.0)
    assert np.abs(dlogits[~prompt_pos]).max() > 0.01


def test_sft_loss_gradient_matches_central_differences():
    params = random_params(2)
    batch = rlhf.sft_batch(PROMPTS, RESPONSES)
    _, _, grads = rlhf.sft_loss_and_grads(params, TINY, batch)
    T = batch["inputs"].shape[1]
    check_grads(lambda: clm.loss(params, TINY, batch)[0], params, grads, _zeros(params, T))


# ----------------------------------------------------------------------------------------------
# The reward model


def test_pairwise_loss_backward_matches_instructgpts_gradient_and_central_differences():
    """K-choose-2: ∂ℓ/∂r_k = −(1/C(K,2)) [Σ_{l: k ≻ l} σ(r_l − r_k) − Σ_{w: w ≻ k} σ(r_k − r_w)]
    per prompt, averaged over prompts (history.md §4.2, derived there), written as a loop."""
    rng = np.random.default_rng(3)
    r = rng.normal(size=7)
    rankings = [[2, 0, 3, 1], [6, 4, 5]]
    chosen, rejected, weights = rlhf.k_choose_2_pairs(rankings)
    assert len(chosen) == 6 + 3 and weights.sum() == pytest.approx(1.0)
    L, cache = rlhf.pairwise_loss_forward(r, chosen, rejected, weights)
    dr = rlhf.pairwise_loss_backward(1.0, cache)
    expected = np.zeros(7)
    for order in rankings:
        K = len(order)
        for i, k in enumerate(order):
            below = sum(rlhf.sigmoid(r[l] - r[k]) for l in order[i + 1:])
            above = sum(rlhf.sigmoid(r[k] - r[w]) for w in order[:i])
            expected[k] = -(below - above) / math.comb(K, 2) / len(rankings)
    np.testing.assert_allclose(dr, expected, rtol=1e-12)
    check_grads(lambda: rlhf.pairwise_loss_forward(r, chosen, rejected, weights)[0], {"r": r},
                {"r": dr})


def test_pairwise_loss_at_equal_rewards_is_log_2_whatever_k():
    for K in (2, 4, 9):
        chosen, rejected, weights = rlhf.k_choose_2_pairs([list(range(K))])
        L, _ = rlhf.pairwise_loss_forward(np.full(K, 0.7), chosen, rejected, weights)
        assert L == pytest.approx(math.log(2), rel=1e-14)


def test_reward_of_a_row_does_not_depend_on_the_other_rows_or_their_padding():
    params = rlhf.add_scalar_head(random_params(4), TINY, "rm", np.random.default_rng(4))
    together, _ = rlhf.reward_forward(params, TINY, rlhf.sequence_batch(PROMPTS, RESPONSES))
    for b in range(3):
        alone, _ = rlhf.reward_forward(params, TINY,
                                       rlhf.sequence_batch(PROMPTS[b:b + 1], RESPONSES[b:b + 1]))
        assert alone[0] == pytest.approx(together[b], rel=1e-12, abs=1e-12)


def test_the_reward_is_the_head_on_the_final_hidden_state_at_eos():
    """r_b = w · h[b, t_b] + b with t_b the position of row b's [EOS]: 1 + len(x) + 1 + len(y)
    ([BOS] x [SEP] y [EOS]), counted here from the lists, not from the mask."""
    params = rlhf.add_scalar_head(random_params(11), TINY, "rm", np.random.default_rng(11))
    batch = rlhf.sequence_batch(PROMPTS, RESPONSES)
    r, cache = rlhf.reward_forward(params, TINY, batch)
    h = cache["model"]["h"]  # (B, T, C)
    for b, (x, y) in enumerate(zip(PROMPTS, RESPONSES)):
        t = len(x) + len(y) + 2
        assert batch["ids"][b, t] == EOS_ID
        expected = h[b, t] @ params["rm.w"][:, 0] + params["rm.b"][0]
        assert r[b] == pytest.approx(expected, rel=1e-12)


def test_reward_model_pairwise_loss_gradient_through_the_gpt_matches_central_differences():
    """Five responses (three to one prompt, two to another), ranked; InstructGPT's K-choose-2
    loss; every parameter of the GPT and the head checked. The head's bias b and the final
    layer norm's bias get exactly 0: each adds the same number to every reward (w · ln_f.b to
    r = w · h_last + b), and the loss sees only differences of rewards."""
    params = rlhf.add_scalar_head(random_params(5), TINY, "rm", np.random.default_rng(5))
    prompts = [PROMPTS[0]] * 3 + [PROMPTS[1]] * 2
    responses = [[D], [C, C], [B, A, D], [A], [B, B]]
    batch = rlhf.sequence_batch(prompts, responses)
    chosen, rejected, weights = rlhf.k_choose_2_pairs([[1, 0, 2], [4, 3]])

    def loss():
        return rlhf.pairwise_loss_forward(rlhf.reward_forward(params, TINY, batch)[0], chosen,
                                          rejected, weights)[0]

    r, cache = rlhf.reward_forward(params, TINY, batch)
    _, loss_cache = rlhf.pairwise_loss_forward(r, chosen, rejected, weights)
    grads = rlhf.reward_backward(rlhf.pairwise_loss_backward(1.0, loss_cache), cache)
    assert set(grads) == set(params)
    shifts = ("rm.b", "ln_f.b")
    for name in shifts:
        np.testing.assert_allclose(grads[name], 0.0, rtol=0, atol=1e-12, err_msg=name)
    read = batch["ids"][batch["attention_mask"] == 1]
    unused = np.setdiff1d(np.arange(TINY.vocab_size), read)  # padding is never read either
    checked = {k: v for k, v in params.items() if k not in shifts}
    check_grads(loss, checked, grads, _zeros(params, batch["ids"].shape[1], unused))


def test_pairwise_accuracy_counts_pairs_ordered_as_labelled():
    r = np.array([0.5, 0.1, 0.9])
    assert rlhf.pairwise_accuracy(r, [0, 2, 1], [1, 0, 2]) == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------------------------
# DPO


def test_dpo_at_the_reference_is_log_2_with_gradient_minus_beta_over_2():
    """history.md §5.7: at π = π_ref, L = ln 2 and ∂L/∂Δ = −β/2 (per pair, before the mean)."""
    logp = np.array([-3.0, -1.5])
    L, cache = rlhf.dpo_loss_forward(logp, logp[::-1], logp, logp[::-1], beta=0.1)
    assert L == pytest.approx(math.log(2), rel=1e-14)
    dw, dl = rlhf.dpo_loss_backward(1.0, cache)
    np.testing.assert_allclose(dw, [-0.05 / 2, -0.05 / 2], rtol=1e-14)
    np.testing.assert_allclose(dl, [0.05 / 2, 0.05 / 2], rtol=1e-14)


def test_dpo_loss_gradient_matches_central_differences():
    rng = np.random.default_rng(6)
    logp_w, logp_l, ref_w, ref_l = (rng.normal(size=5) * 3 for _ in range(4))
    _, cache = rlhf.dpo_loss_forward(logp_w, logp_l, ref_w, ref_l, beta=0.5)
    dw, dl = rlhf.dpo_loss_backward(1.0, cache)
    check_grads(lambda: rlhf.dpo_loss_forward(logp_w, logp_l, ref_w, ref_l, 0.5)[0],
                {"logp_w": logp_w, "logp_l": logp_l}, {"logp_w": dw, "logp_l": dl})


def test_dpo_loss_gradient_through_the_gpt_matches_central_differences():
    params, ref = random_params(7), random_params(8)
    chosen = rlhf.sft_batch(PROMPTS + PROMPTS, RESPONSES + [[A], [D, D], [B]])
    ref_logps, _ = rlhf.sequence_logprobs(ref, TINY, chosen)  # constants
    P = len(PROMPTS)

    def loss():
        logps, _ = rlhf.sequence_logprobs(params, TINY, chosen)
        return rlhf.dpo_loss_forward(logps[:P], logps[P:], ref_logps[:P], ref_logps[P:], 0.5)[0]

    logps, cache = rlhf.sequence_logprobs(params, TINY, chosen)
    _, dpo_cache = rlhf.dpo_loss_forward(logps[:P], logps[P:], ref_logps[:P], ref_logps[P:], 0.5)
    dw, dl = rlhf.dpo_loss_backward(1.0, dpo_cache)
    grads = rlhf.sequence_logprobs_backward(np.concatenate([dw, dl]), cache)
    check_grads(loss, params, grads, _zeros(params, chosen["inputs"].shape[1]))


def test_dpo_on_k_choose_2_pairs_of_shared_rows_matches_central_differences():
    """align.dpo's loss: every pair of two prompts' ranked responses (3 and 2), each row in
    several pairs, weighted 1/C(K, 2) per prompt. A row's gradient is the sum of its pairs'."""
    params, ref = random_params(12), random_params(13)
    prompts = [PROMPTS[0]] * 3 + [PROMPTS[1]] * 2
    batch = rlhf.sft_batch(prompts, [[D], [C, C], [B, A, D], [A], [B, B]])
    ref_logps, _ = rlhf.sequence_logprobs(ref, TINY, batch)
    chosen, rejected, weights = rlhf.k_choose_2_pairs([[1, 0, 2], [4, 3]])

    def loss():
        return rlhf.dpo_loss_and_grads(params, TINY, batch, ref_logps, chosen, rejected, 0.5,
                                       weights)[0]

    _, grads = rlhf.dpo_loss_and_grads(params, TINY, batch, ref_logps, chosen, rejected, 0.5,
                                       weights)
    check_grads(loss, params, grads, _zeros(params, batch["inputs"].shape[1]))


def test_sequence_logprobs_are_the_sft_losses_negated():
    params = random_params(9)
    batch = rlhf.sft_batch(PROMPTS, RESPONSES)
    logps, _ = rlhf.sequence_logprobs(params, TINY, batch)
    assert logps.sum() == pytest.approx(-rlhf.sft_loss_and_grads(params, TINY, batch)[0],
                                        rel=1e-12)


# ----------------------------------------------------------------------------------------------
# The exact optimum on a tabular policy: π*(y) = π_ref(y) exp(r(y)/β) / Z  (DPO Eq. 4)

PI_REF = np.array([0.1, 0.4, 0.3, 0.2])
REWARD = np.array([1.0, -0.5, 0.3, 0.0])
BETA = 0.5
OPTIMUM_TOL = 1e-6


def _softmax(theta):
    e = np.exp(theta - theta.max())
    return e / e.sum()


def _logits_gradient(theta, dlogpi):
    """log π = θ − log Σ exp θ, so dθ = dlogπ − π Σ dlogπ."""
    return dlogpi - _softmax(theta) * dlogpi.sum()


def _expected_dpo_loss_and_gradient(theta, tau=1.0):
    """The DPO loss in expectation over comparisons: each unordered pair {i, j} with
    probability 1/C(4, 2), labelled i ≻ j with the Bradley–Terry probability on r at the
    labeler's temperature τ, σ((r_i − r_j)/τ) (DPO's Eq. 1 with the reward r/τ); so every
    ordered pair (w, l) has weight σ((r_w − r_l)/τ) / 6."""
    n = len(theta)
    w_idx, l_idx = np.array([(i, j) for i in range(n) for j in range(n) if i != j]).T
    weights = rlhf.sigmoid((REWARD[w_idx] - REWARD[l_idx]) / tau) / math.comb(n, 2)
    logpi = np.log(_softmax(theta))
    L, cache = rlhf.dpo_loss_forward(logpi[w_idx], logpi[l_idx], np.log(PI_REF)[w_idx],
                                     np.log(PI_REF)[l_idx], BETA, weights)
    dw, dl = rlhf.dpo_loss_backward(1.0, cache)
    dlogpi = np.zeros(n)
    np.add.at(dlogpi, w_idx, dw)
    np.add.at(dlogpi, l_idx, dl)
    return L, _logits_gradient(theta, dlogpi)


def test_minimising_the_expected_dpo_loss_reaches_the_optimal_policy():
    theta = np.zeros(4)  # π uniform at the start
    for _ in range(20000):
        _, grad = _expected_dpo_loss_and_gradient(theta)
        if np.abs(grad).max() < 1e-13:
            break
        theta -= 2.0 * grad
    target = rlhf.optimal_policy(PI_REF, REWARD, BETA)
    np.testing.assert_allclose(_softmax(theta), target, rtol=0, atol=OPTIMUM_TOL)
    assert np.abs(target - PI_REF).max() > 0.1  # the optimum is far from where π_ref is
    # the DPO gradient at π* (by Eq. 4) is 0 (history.md §5.7 found 3e-17)
    _, at_optimum = _expected_dpo_loss_and_gradient(np.log(target))
    assert np.abs(at_optimum).max() < 1e-12


def test_a_labeler_at_temperature_tau_moves_dpos_optimum_to_r_over_tau():
    """The labeler's noise sets the reward DPO recovers: with P(w ≻ l) = σ((r_w − r_l)/τ) the
    optimum is π_ref exp(r/(τβ))/Z, what align.dpo_optimum_true_reward assumes (τ = 2 here:
    the optimum moves half as far from π_ref as at τ = 1)."""
    tau = 2.0
    theta = np.zeros(4)
    for _ in range(20000):
        _, grad = _expected_dpo_loss_and_gradient(theta, tau)
        if np.abs(grad).max() < 1e-13:
            break
        theta -= 4.0 * grad
    target = rlhf.optimal_policy(PI_REF, REWARD / tau, BETA)
    np.testing.assert_allclose(_softmax(theta), target, rtol=0, atol=OPTIMUM_TOL)
    assert np.abs(target - rlhf.optimal_policy(PI_REF, REWARD, BETA)).max() > 0.05


def test_maximising_reward_minus_beta_kl_reaches_the_optimal_policy():
    """J(π) = Σ π r − β Σ π log(π/π_ref); ∂J/∂π_y = r_y − β(log(π_y/π_ref,y) + 1); ascent on
    the logits. At the optimum J = β log Z (history.md §5.1's identity)."""
    theta = np.zeros(4)
    for _ in range(20000):
        pi = _softmax(theta)
        dpi = REWARD - BETA * (np.log(pi / PI_REF) + 1.0)
        grad = pi * (dpi - np.sum(pi * dpi))  # the logits' gradient through softmax
        if np.abs(grad).max() < 1e-13:
            break
        theta += 1.0 * grad
    pi = _softmax(theta)
    np.testing.assert_allclose(pi, rlhf.optimal_policy(PI_REF, REWARD, BETA), rtol=0,
                               atol=OPTIMUM_TOL)
    J = np.sum(pi * REWARD) - BETA * np.sum(pi * np.log(pi / PI_REF))
    assert J == pytest.approx(BETA * math.log(np.sum(PI_REF * np.exp(REWARD / BETA))), rel=1e-9)


def test_token_logprobs_backward_matches_central_differences():
    rng = np.random.default_rng(10)
    logits = rng.normal(size=(2, 3, 5))
    targets = np.array([[1, IGNORE_INDEX, 4], [0, 2, IGNORE_INDEX]])
    upstream = rng.normal(size=(2, 3))
    logp, cache = rlhf.token_logprobs_forward(logits, targets)
    np.testing.assert_allclose(logp[0, 0], log_softmax(logits[0, 0])[1], rtol=1e-12)
    assert logp[0, 1] == 0.0
    analytic = rlhf.token_logprobs_backward(upstream, cache)
    numeric = numerical_gradient(
        lambda: np.sum(rlhf.token_logprobs_forward(logits, targets)[0] * upstream), logits)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)
    assert np.all(analytic[0, 1] == 0.0) and np.abs(analytic).max() > 0.05


def test_bad_input_is_refused_by_name():
    with pytest.raises(ValueError, match="beta"):
        rlhf.dpo_loss_forward(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), beta=0)
    with pytest.raises(ValueError, match="prompts and responses"):
        rlhf.sft_batch([[A]], [])
    with pytest.raises(ValueError, match="chosen and rejected"):
        rlhf.pairwise_loss_forward(np.zeros(3), [0, 1], [2])
    with pytest.raises(ValueError, match="ranking"):
        rlhf.k_choose_2_pairs([[0]])


def test_mismatched_or_out_of_range_input_is_refused_by_name_not_broadcast():
    """Found in review: a (1,) reference broadcast over (3,) pairs, a weight vector of the wrong
    length, an index −1 (numpy reads the last response) and a β ≤ 0 in optimal_policy all
    gave a number."""
    z3 = np.zeros(3)
    with pytest.raises(ValueError, match="ref_w"):
        rlhf.dpo_loss_forward(z3, z3, np.zeros(1), z3, 1.0)
    with pytest.raises(ValueError, match="weights"):
        rlhf.dpo_loss_forward(z3, z3, z3, z3, 1.0, weights=np.ones(1))
    with pytest.raises(ValueError, match="chosen"):
        rlhf.pairwise_loss_forward(z3, [0, -1], [1, 2])
    with pytest.raises(ValueError, match="rejected"):
        rlhf.pairwise_loss_forward(z3, [0, 1], [1, 3])
    with pytest.raises(ValueError, match="weights"):
        rlhf.pairwise_loss_forward(z3, [0, 1], [1, 2], weights=np.ones(3))
    with pytest.raises(ValueError, match="beta"):
        rlhf.optimal_policy(np.array([0.5, 0.5]), np.array([1.0, 0.0]), -1.0)
    with pytest.raises(ValueError, match="pi_ref"):
        rlhf.optimal_policy(np.array([0.5, 0.0, 0.5]), np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="reward"):
        rlhf.optimal_policy(np.array([0.5, 0.5]), np.zeros(3), 1.0)


def test_a_missing_scalar_head_is_refused_by_name():
    """Found in review: a GPT without the head reached KeyError 'rm.w'."""
    batch = rlhf.sequence_batch(PROMPTS, RESPONSES)
    with pytest.raises(ValueError, match="'rm'.*add_scalar_head"):
        rlhf.reward_forward(random_params(14), TINY, batch)

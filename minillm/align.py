"""The InstructGPT pipeline on the built-in data: SFT → reward model → DPO, measured against the
truth (instruct.py's true reward and labeler). The PPO stage and the command line come later.

    1. SFT    a fresh GPT fine-tuned on demonstrations (instruct.sample_demonstrations: right
              55% of the time) with the loss on the response only (rlhf.sft_batch).
    2. RM     the SFT model with a scalar head, trained on the labeler's rankings of a prompt's
              four candidates with InstructGPT's K-choose-2 loss; its accuracy on held-out
              comparisons is printed beside the Bayes limit (instruct.bayes_accuracy).
    3. DPO    the SFT model trained on the same rankings' pairs, with the SFT model as π_ref.

Every policy is judged on held-out prompts by responses sampled at temperature 1:

    true reward    mean r*(x, y), the stated function (any response: "other" scores −2)
    win rate       mean σ((r*(x, y) − r*(x, y_SFT)) / τ): how often the true labeler would
                   prefer the policy's response to the SFT model's for the same prompt
    KL to SFT      mean log π(y|x) − log π_SFT(y|x) over the policy's own samples (the
                   sequence-level estimator; its mean is KL(π ‖ π_SFT), ppo.py's kl_t summed)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import instruct, ppo, rlhf
from .config import TrainConfig
from .grammar import default_grammar
from .models import GPTConfig, gpt_forward, gpt_init
from .optim import adamw_init, adamw_step, clip_by_global_norm, learning_rate
from .task_formats import GPTFormat
from .tokenizer import BOS_ID, SEP_ID
from .train import train_step


@dataclass(frozen=True)
class AlignConfig:
    """The pipeline's sizes and settings. The defaults take a few minutes on two cores."""

    n_demonstrations: int = 4000  # SFT's prompts, one demonstration each
    n_rankings: int = 2000  # prompts whose four candidates the labeler ranks (RM and DPO)
    n_test: int = 300  # held-out prompts: the RM's comparisons and the policies' samples
    sft_steps: int = 600
    rm_steps: int = 300
    dpo_steps: int = 300
    batch_size: int = 32  # rows per step; RM and DPO: batch_size / 4 prompts of 4 candidates
    sft_lr: float = 3e-3  # the demo's GPT learning rate (config.TrainConfig)
    rm_lr: float = 1e-3
    # DPO: with 1e-3 or β = 0.5 the policy drifted to responses outside the candidates (half
    # "other" at 1e-3, a KL of 5 nats), the leak DPO's loss does not see; these held it at 5%.
    dpo_lr: float = 3e-4
    beta: float = 1.0  # DPO's β: the optimum is π_SFT · exp(r/β) / Z with r = r*/τ
    n_embd: int = 64
    n_layer: int = 2
    seed: int = 0


# Rows of the four candidates per ranked prompt (instruct.KINDS).
K = len(instruct.KINDS)
# Global gradient-norm cap of the RM and DPO steps, as TrainConfig's for SFT.
CLIP = 1.0


def _encode(tokenizer, prompts, responses):
    """Prompt texts and response texts -> lists of ids."""
    return ([tokenizer.encode(p.text) for p in prompts],
            [tokenizer.encode(y) for y in responses])


def _step(params, grads, opt, step, steps, lr):
    """One AdamW step with the schedule of SFT's train_step: warm-up over a tenth, cosine
    decay to lr / 10, the gradient's global norm capped at CLIP."""
    clip_by_global_norm(grads, CLIP)
    adamw_step(params, grads, opt, learning_rate(step, lr, max(steps // 10, 1), steps, lr / 10))


# ----------------------------------------------------------------------------------------------
# The stages


def sft(params, cfg, tokenizer, prompts, responses, steps, batch_size, lr, rng):
    """Supervised fine-tuning in place: ``steps`` steps of the mean response-only loss on
    batches drawn with replacement. -> the losses, one per step."""
    train_cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, min_lr=lr / 10,
                            warmup=max(steps // 10, 1), objective="clm")
    opt = adamw_init(params)
    x_ids, y_ids = _encode(tokenizer, prompts, responses)
    losses = []
    for step in range(steps):
        rows = rng.integers(0, len(prompts), size=batch_size)
        batch = rlhf.sft_batch([x_ids[i] for i in rows], [y_ids[i] for i in rows])
        losses.append(train_step(params, opt, cfg, train_cfg, batch, step))
    return losses


def ranked_batch(tokenizer, prompts, rankings):
    """Rows of ``prompts``' ranked candidates, K per prompt, in ranking order, with the
    K-choose-2 pairs: -> (prompt ids, response ids, chosen, rejected, weights)."""
    x_ids, y_ids, orders = [], [], []
    for n, (prompt, ranking) in enumerate(zip(prompts, rankings)):
        xs, ys = _encode(tokenizer, [prompt] * K, ranking)
        x_ids += xs
        y_ids += ys
        orders.append(list(range(n * K, n * K + K)))  # best first
    chosen, rejected, weights = rlhf.k_choose_2_pairs(orders)
    return x_ids, y_ids, chosen, rejected, weights


def _draw_ranked(rng, tokenizer, prompts, rankings, batch_size):
    """ranked_batch of batch_size / K prompts drawn with replacement."""
    pick = rng.integers(0, len(prompts), size=max(batch_size // K, 1))
    return ranked_batch(tokenizer, [prompts[i] for i in pick], [rankings[i] for i in pick])


def train_reward_model(params, cfg, tokenizer, prompts, rankings, steps, batch_size, lr, rng):
    """The reward model in place (``params`` holding the head "rm"): InstructGPT's loss on
    batches of batch_size / K ranked prompts. -> the losses."""
    opt = adamw_init(params)
    losses = []
    for step in range(steps):
        x_ids, y_ids, chosen, rejected, weights = _draw_ranked(rng, tokenizer, prompts,
                                                              rankings, batch_size)
        r, cache = rlhf.reward_forward(params, cfg, rlhf.sequence_batch(x_ids, y_ids))
        loss, loss_cache = rlhf.pairwise_loss_forward(r, chosen, rejected, weights)
        grads = rlhf.reward_backward(rlhf.pairwise_loss_backward(1.0, loss_cache), cache)
        _step(params, grads, opt, step, steps, lr)
        losses.append(loss)
    return losses


def rewards_of(params, cfg, tokenizer, prompts, responses):
    """The reward model's r(x, y) for each (prompt, response), in one batch. -> (N,)"""
    batch = rlhf.sequence_batch(*_encode(tokenizer, prompts, responses))
    return rlhf.reward_forward(params, cfg, batch)[0]


def reward_model_accuracy(params, cfg, tokenizer, comparisons):
    """The share of comparisons whose chosen response the reward model scores higher."""
    prompts = [c.prompt for c in comparisons]
    r_w = rewards_of(params, cfg, tokenizer, prompts, [c.chosen for c in comparisons])
    r_l = rewards_of(params, cfg, tokenizer, prompts, [c.rejected for c in comparisons])
    return float(np.mean(r_w > r_l))


def dpo(params, ref, cfg, tokenizer, prompts, rankings, steps, batch_size, lr, beta, rng):
    """DPO in place, π_ref = ``ref``: the loss on every pair of each ranking, weighted as the
    reward model's (1 / C(K, 2) within a prompt). -> the losses."""
    opt = adamw_init(params)
    losses = []
    for step in range(steps):
        x_ids, y_ids, chosen, rejected, weights = _draw_ranked(rng, tokenizer, prompts,
                                                              rankings, batch_size)
        batch = rlhf.sft_batch(x_ids, y_ids)
        ref_logps, _ = rlhf.sequence_logprobs(ref, cfg, batch)  # constants
        logps, cache = rlhf.sequence_logprobs(params, cfg, batch)  # (N,)
        loss, dpo_cache = rlhf.dpo_loss_forward(logps[chosen], logps[rejected],
                                                ref_logps[chosen], ref_logps[rejected], beta,
                                                weights)
        d_w, d_l = rlhf.dpo_loss_backward(1.0, dpo_cache)
        dlogps = np.zeros_like(logps)  # a row is in several pairs: its parts add up
        np.add.at(dlogps, chosen, d_w)
        np.add.at(dlogps, rejected, d_l)
        _step(params, rlhf.sequence_logprobs_backward(dlogps, cache), opt, step, steps, lr)
        losses.append(loss)
    return losses


# ----------------------------------------------------------------------------------------------
# PPO with a KL penalty (InstructGPT §3.5; the losses in ppo.py)


def rollout(policy, sft_params, rm_params, cfg, tokenizer, prompts, beta, rng):
    """Sample a response per prompt from the policy, then everything PPO's steps hold fixed:

        logp_old, V_old       the policy's log-probs of the sampled tokens and its values
        kl_t                  logp_old − log π_SFT, per response token
        r_t                   −β kl_t, plus the reward model's score at the last token
        A, R                  GAE (γ = 1, λ = 0.95) on r_t and V_old; A whitened

    -> (batch, arrays for ppo.ppo_loss_and_grads, stats: the mean true reward, the mean RM
    score, the mean Σ_t kl_t, the responses). A response cut by the context gets an [EOS]
    appended that was not sampled.
    """
    y_ids = sample_response_ids(rlhf.gpt_without(policy, "v"), cfg, tokenizer, prompts, rng)
    x_ids = [tokenizer.encode(p.text) for p in prompts]
    batch = rlhf.sft_batch(x_ids, y_ids)
    logits, cache = gpt_forward(rlhf.gpt_without(policy, "v"), cfg, batch["inputs"],
                                batch["attention_mask"])
    logp, lp_cache = rlhf.token_logprobs_forward(logits, batch["targets"])  # (B, T)
    mask = lp_cache["keep"].reshape(logp.shape).astype(logp.dtype)
    values, _ = ppo.value_head_forward(cache["h"], policy["v.w"], policy["v.b"])  # (B, T)
    ref_logits, _ = gpt_forward(sft_params, cfg, batch["inputs"], batch["attention_mask"])
    logp_ref, _ = rlhf.token_logprobs_forward(ref_logits, batch["targets"])
    score, _ = rlhf.reward_forward(rm_params, cfg, rlhf.sequence_batch(x_ids, y_ids))  # (B,)
    _, kl, _ = ppo.kl_penalty_forward(logp, logp_ref, mask, beta)
    rewards = ppo.per_token_rewards(score, kl, mask, beta)
    advantages, returns = ppo.gae(rewards, values * mask, mask)
    responses = [tokenizer.decode(ids) for ids in y_ids]
    stats = {"true_reward": float(np.mean([instruct.true_reward(p, y)
                                           for p, y in zip(prompts, responses)])),
             "rm_reward": float(score.mean()), "kl": float(kl.sum(axis=1).mean()),
             "responses": responses}
    arrays = {"logp_old": logp, "values_old": values, "returns": returns,
              "advantages": ppo.whiten(advantages, mask)}
    return batch, arrays, stats


def ppo_train(policy, sft_params, rm_params, cfg, tokenizer, prompts, iterations, batch_size,
              lr, beta, epochs, rng, log=print):
    """PPO in place on ``policy`` (the SFT model with a value head "v"): each iteration one
    rollout of batch_size prompts, then ``epochs`` steps on it (one minibatch, as
    lm-human-preferences' default). -> one stats dict per iteration: true reward, RM
    reward, KL to SFT, clip fraction (of the last epoch)."""
    opt = adamw_init(policy)
    history = []
    for it in range(iterations):
        pick = rng.integers(0, len(prompts), size=batch_size)
        batch, arrays, stats = rollout(policy, sft_params, rm_params, cfg, tokenizer,
                                       [prompts[i] for i in pick], beta, rng)
        for epoch in range(epochs):
            _, step_stats, grads = ppo.ppo_loss_and_grads(policy, cfg, batch, arrays)
            _step(policy, grads, opt, it * epochs + epoch, iterations * epochs, lr)
        stats = {**stats, "clip_frac": step_stats["clip_frac"]}
        history.append(stats)
        log(f"PPO {it + 1}/{iterations}: true reward {stats['true_reward']:+.3f}, RM reward "
            f"{stats['rm_reward']:+.3f}, KL to SFT {stats['kl']:.3f}, clip fraction "
            f"{stats['clip_frac']:.3f}")
    return history


# ----------------------------------------------------------------------------------------------
# Judging a policy against the truth


def sample_response_ids(params, cfg, tokenizer, prompts, rng):
    """One response per prompt, sampled at temperature 1 after [BOS] prompt [SEP] until [EOS],
    at most as long as leaves room for the [EOS] in n_ctx (the reward model reads
    [BOS] x [SEP] y [EOS]). -> lists of ids, without the [EOS]."""
    rows = [[BOS_ID, *tokenizer.encode(p.text), SEP_ID] for p in prompts]
    # GPTFormat's sampling loop reads only the config (its vocabulary serves other tasks).
    outputs = GPTFormat(None, cfg).continue_prompts(params, rows, cfg.n_ctx, rng)
    return [ids[: cfg.n_ctx - len(row) - 1] for ids, row in zip(outputs, rows)]


def sample_responses(params, cfg, tokenizer, prompts, rng):
    """sample_response_ids as texts (special tokens kept: such a response scores "other")."""
    return [tokenizer.decode(ids) for ids in sample_response_ids(params, cfg, tokenizer,
                                                                 prompts, rng)]


def sequence_logprobs_of(params, cfg, tokenizer, prompts, responses):
    """log π(y [EOS] | x) of each (prompt, response), in one batch. -> (N,)"""
    batch = rlhf.sft_batch(*_encode(tokenizer, prompts, responses))
    return rlhf.sequence_logprobs(params, cfg, batch)[0]


def judge(params, sft_params, cfg, tokenizer, prompts, sft_responses, rng, tau=instruct.TAU):
    """A policy's true reward, win rate against the SFT model's responses and KL to the SFT
    model, with standard errors, and the share of each kind among its responses."""
    responses = sample_responses(params, cfg, tokenizer, prompts, rng)
    reward = np.array([instruct.true_reward(p, y) for p, y in zip(prompts, responses)])
    sft_reward = np.array([instruct.true_reward(p, y) for p, y in zip(prompts, sft_responses)])
    wins = 1.0 / (1.0 + np.exp(-(reward - sft_reward) / tau))
    kl = (sequence_logprobs_of(params, cfg, tokenizer, prompts, responses)
          - sequence_logprobs_of(sft_params, cfg, tokenizer, prompts, responses))
    kinds = [instruct.response_kind(p, y) for p, y in zip(prompts, responses)]
    n = len(prompts)
    return {"true_reward": float(reward.mean()), "true_reward_se": float(reward.std() / n**.5),
            "win_rate_vs_sft": float(wins.mean()), "win_rate_se": float(wins.std() / n**.5),
            "kl_to_sft": float(kl.mean()), "kl_se": float(kl.std() / n**.5),
            "kinds": {k: kinds.count(k) / n for k in (*instruct.KINDS, "other")},
            "responses": responses}


def dpo_optimum_true_reward(beta, tau=instruct.TAU):
    """The true reward of DPO's optimum (DPO Eq. 4 with r = r*/τ, the labeler's reward scale)
    over the four candidate kinds, had SFT learned the demonstrators' mix exactly:

        π*(kind) = mix(kind) · exp(r*(kind) / (τ β)) / Z,    E_π*[r*]

    A reference for the measured DPO row, not a bound: the model also writes responses that
    are none of the candidates."""
    kinds = list(instruct.DEMONSTRATION_MIX)
    pi = rlhf.optimal_policy(np.array([instruct.DEMONSTRATION_MIX[k] for k in kinds]),
                             np.array([instruct.TRUE_REWARD[k] for k in kinds]) / tau, beta)
    return instruct.expected_true_reward(dict(zip(kinds, pi)))


def run(settings=AlignConfig(), log=print):
    """SFT → RM → DPO on the built-in data. -> a dict with each stage's losses, the RM's
    held-out accuracy and the Bayes limit, and the rows {method, true_reward,
    win_rate_vs_sft, kl_to_sft, ...} of SFT and DPO."""
    s = settings
    tokenizer = default_grammar().tokenizer()
    cfg = GPTConfig(vocab_size=len(tokenizer), n_ctx=48, n_embd=s.n_embd, n_head=4,
                    n_layer=s.n_layer)
    rng = np.random.default_rng(s.seed)
    demo_prompts = instruct.sample_prompts(rng, s.n_demonstrations)
    demonstrations = instruct.sample_demonstrations(rng, demo_prompts)
    ranked_prompts = instruct.sample_prompts(rng, s.n_rankings)
    rankings = [instruct.rank(rng, p, list(instruct.candidates(p).values()))
                for p in ranked_prompts]
    test_prompts = instruct.sample_prompts(rng, s.n_test)
    test_comparisons = instruct.sample_comparisons(rng, test_prompts)

    sft_params = gpt_init(cfg, rng)
    losses = {"sft": sft(sft_params, cfg, tokenizer, demo_prompts, demonstrations, s.sft_steps,
                         s.batch_size, s.sft_lr, rng)}
    log(f"SFT: {s.sft_steps} steps, last loss {losses['sft'][-1]:.3f}")

    rm_params = rlhf.add_scalar_head({k: v.copy() for k, v in sft_params.items()}, cfg, "rm",
                                     rng)
    losses["rm"] = train_reward_model(rm_params, cfg, tokenizer, ranked_prompts, rankings,
                                      s.rm_steps, s.batch_size, s.rm_lr, rng)
    accuracy = reward_model_accuracy(rm_params, cfg, tokenizer, test_comparisons)
    bayes = instruct.bayes_accuracy(test_prompts)
    se = math.sqrt(accuracy * (1 - accuracy) / len(test_comparisons))
    log(f"RM: held-out accuracy {accuracy:.3f} ± {se:.3f} (Bayes limit {bayes:.3f}); "
        f"loss {losses['rm'][-1]:.3f} (log 2 = {math.log(2):.3f} at chance)")

    dpo_params = {k: v.copy() for k, v in sft_params.items()}
    losses["dpo"] = dpo(dpo_params, sft_params, cfg, tokenizer, ranked_prompts, rankings,
                        s.dpo_steps, s.batch_size, s.dpo_lr, s.beta, rng)
    log(f"DPO: {s.dpo_steps} steps, last loss {losses['dpo'][-1]:.3f}")

    sft_responses = sample_responses(sft_params, cfg, tokenizer, test_prompts, rng)
    rows = []
    for method, params in (("sft", sft_params), ("dpo", dpo_params)):
        row = {"method": method, **judge(params, sft_params, cfg, tokenizer, test_prompts,
                                         sft_responses, rng)}
        rows.append(row)
        log(f"{method}: true reward {row['true_reward']:.3f} ± {row['true_reward_se']:.3f}, "
            f"win rate vs SFT {row['win_rate_vs_sft']:.3f}, KL to SFT {row['kl_to_sft']:.3f}, "
            f"kinds " + " ".join(f"{k} {v:.2f}" for k, v in row["kinds"].items()))
    optimum = dpo_optimum_true_reward(s.beta)
    log(f"DPO's optimum on the candidates, from the demonstrators' mix: true reward "
        f"{optimum:.3f}")
    return {"losses": losses, "rm_accuracy": accuracy, "rm_accuracy_se": se,
            "bayes_accuracy": bayes, "dpo_optimum_true_reward": optimum, "rows": rows,
            "test_prompts": test_prompts}

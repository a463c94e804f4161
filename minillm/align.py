"""The InstructGPT pipeline on the built-in data, measured against the truth (instruct.py's
true reward and labeler): ``python -m minillm align``.

    1. SFT    a fresh GPT fine-tuned on demonstrations (instruct.sample_demonstrations: right
              55% of the time) with the loss on the response only (rlhf.sft_batch).
    2. RM     the SFT model with a scalar head, trained on the labeler's rankings of a prompt's
              four candidates with InstructGPT's K-choose-2 loss; its accuracy on held-out
              comparisons is printed beside the Bayes limit (instruct.bayes_accuracy).
    3. DPO    the SFT model trained on the same rankings' pairs, with the SFT model as π_ref.
    4. PPO    the SFT model with a value head, on the reward model's score minus β times the
              per-token KL to the SFT model (ppo.py); once with β = 0.2, once with β = 0.

Every policy is judged on held-out prompts (made from a tenth of the grammar's sentences that
no stage trains on: HELD_OUT) by responses sampled at temperature 1:

    true reward    mean r*(x, y), the stated function (any response: "other" scores −2)
    win rate       mean σ((r*(x, y) − r*(x, y_SFT)) / τ): how often the true labeler would
                   prefer the policy's response to the SFT model's for the same prompt
    KL to SFT      mean log π(y|x) − log π_SFT(y|x) over the policy's own samples (the
                   sequence-level estimator; its mean is KL(π ‖ π_SFT), ppo.py's kl_t summed)

Measured by ``align --demo`` (seed 0, 300 held-out prompts; walkthrough.md 🎓): true reward
SFT 1.02, DPO 1.77, PPO 1.61, PPO with β = 0 0.06 (its KL 26 nats, its reward model score
holding while the truth falls); the reward model 0.717 held-out accuracy, the Bayes limit 0.818.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, replace

import numpy as np

from . import instruct, ppo, rlhf, safetensors
from .config import TrainConfig
from .grammar import default_grammar
from .jobs import Progress
from .models import GPTConfig, check_params, gpt_forward, gpt_init, gpt_param_shapes
from .optim import adamw_init, adamw_step, clip_by_global_norm, learning_rate
from .task_formats import GPTFormat
from .layers import IGNORE_INDEX
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
    # DPO with β = 0.5 leaked mass to responses outside the candidates, which its loss does not
    # see (at lr 1e-3 half were "other", a KL of 5 nats; at 3e-4 a fifth); these held it at 5%.
    dpo_lr: float = 3e-4
    beta: float = 1.0  # DPO's β: the optimum is π_SFT · exp(r/β) / Z with r = r*/τ
    ppo_iterations: int = 40  # rollouts of batch_size prompts, each followed by ppo_epochs steps
    ppo_epochs: int = 4  # lm-human-preferences' and TRL's default
    ppo_lr: float = 3e-4
    # lm-human-preferences' kl_coef. InstructGPT's 0.02 let this small policy reach a KL of
    # 3.3 nats in 10 rollouts, its rollouts' true reward between 0.6 and 1.7 (measured).
    ppo_beta: float = 0.2
    hack_beta: float = 0.0  # a second PPO run with β too small: the reward model is exploited
    n_embd: int = 64
    n_layer: int = 2
    seed: int = 0

    def __post_init__(self):
        for name, value in asdict(self).items():
            if name.endswith(("beta", "lr")):
                may_be_0 = name in ("ppo_beta", "hack_beta")  # PPO without a KL penalty
                bound = "a finite number >= 0" if may_be_0 else "a finite number > 0"
                is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
                ok = is_number and (value >= 0 if may_be_0 else value > 0) and value < math.inf
            else:
                low = 0 if name == "seed" else 1
                bound = f"an integer >= {low}"
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
            if not ok:
                raise ValueError(f"AlignConfig.{name} must be {bound}, got {value!r}")


# Settings that run in seconds: the tests' pipeline, on a model too small to learn.
TINY = AlignConfig(n_demonstrations=40, n_rankings=12, n_test=16, sft_steps=3, rm_steps=3,
                   dpo_steps=3, ppo_iterations=2, ppo_epochs=2, batch_size=8, n_embd=8,
                   n_layer=1)
SIZES = {"demo": AlignConfig(), "tiny": TINY}
# The share of the grammar's sentences (of each kind) that no stage trains on: the test
# prompts are made from them only (instruct.split_sentences). Drawn i.i.d. from the whole
# grammar instead, 266 of 300 test prompts were also training prompts.
HELD_OUT = 0.1
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


def sft(params, cfg, tokenizer, prompts, responses, steps, batch_size, lr, rng, progress=None):
    """Supervised fine-tuning in place: ``steps`` steps of the mean response-only loss on
    batches drawn with replacement (``progress``, a jobs.Progress, counts them). -> the
    losses, one per step."""
    train_cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, min_lr=lr / 10,
                            warmup=max(steps // 10, 1), objective="clm")
    opt = adamw_init(params)
    x_ids, y_ids = _encode(tokenizer, prompts, responses)
    losses = []
    for step in range(steps):
        rows = rng.integers(0, len(prompts), size=batch_size)
        batch = rlhf.sft_batch([x_ids[i] for i in rows], [y_ids[i] for i in rows])
        losses.append(train_step(params, opt, cfg, train_cfg, batch, step))
        if progress is not None:
            progress.add()
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


def train_reward_model(params, cfg, tokenizer, prompts, rankings, steps, batch_size, lr, rng,
                       progress=None):
    """The reward model in place (``params`` holding the head "rm"): InstructGPT's loss on
    batches of batch_size / K ranked prompts (``progress`` counts the steps). -> the losses."""
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
        if progress is not None:
            progress.add()
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


def dpo(params, ref, cfg, tokenizer, prompts, rankings, steps, batch_size, lr, beta, rng,
        progress=None):
    """DPO in place, π_ref = ``ref``: the loss on every pair of each ranking, weighted as the
    reward model's (1 / C(K, 2) within a prompt; ``progress`` counts the steps). -> the
    losses."""
    opt = adamw_init(params)
    losses = []
    for step in range(steps):
        x_ids, y_ids, chosen, rejected, weights = _draw_ranked(rng, tokenizer, prompts,
                                                              rankings, batch_size)
        batch = rlhf.sft_batch(x_ids, y_ids)
        ref_logps, _ = rlhf.sequence_logprobs(ref, cfg, batch)  # (N,) constants
        loss, grads = rlhf.dpo_loss_and_grads(params, cfg, batch, ref_logps, chosen, rejected,
                                              beta, weights)
        _step(params, grads, opt, step, steps, lr)
        losses.append(loss)
        if progress is not None:
            progress.add()
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
    score, the mean Σ_t kl_t, the responses). A response cut by the context is scored by the
    reward model with its [EOS], which is no action of the policy (sampled_batch).
    """
    y_ids = sample_response_ids(rlhf.gpt_without(policy, "v"), cfg, tokenizer, prompts, rng)
    x_ids = [tokenizer.encode(p.text) for p in prompts]
    batch = sampled_batch(cfg, x_ids, y_ids)
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
    true_rewards = np.array([instruct.true_reward(p, y) for p, y in zip(prompts, responses)])
    stats = {"true_reward": float(true_rewards.mean()), "rm_reward": float(score.mean()),
             "kl": float(kl.sum(axis=1).mean()), "responses": responses,
             "true_rewards": true_rewards, "rm_rewards": score}
    arrays = {"logp_old": logp, "values_old": values, "returns": returns,
              "advantages": ppo.whiten(advantages, mask)}
    return batch, arrays, stats


def ppo_train(policy, sft_params, rm_params, cfg, tokenizer, prompts, iterations, batch_size,
              lr, beta, epochs, rng, log=print, log_every=5):
    """PPO in place on ``policy`` (the SFT model with a value head "v"): each iteration one
    rollout of batch_size prompts, then ``epochs`` steps on it (one minibatch, as
    lm-human-preferences' default). -> one stats dict per iteration: true reward, RM
    reward, KL to SFT, clip fraction (of the last epoch)."""
    opt = adamw_init(policy)
    history = []
    progress = Progress(iterations, log, f"PPO β = {beta:g}", every=2.0)  # lines when told
    for it in range(iterations):
        pick = rng.integers(0, len(prompts), size=batch_size)
        batch, arrays, stats = rollout(policy, sft_params, rm_params, cfg, tokenizer,
                                       [prompts[i] for i in pick], beta, rng)
        for epoch in range(epochs):
            _, step_stats, grads = ppo.ppo_loss_and_grads(policy, cfg, batch, arrays)
            _step(policy, grads, opt, it * epochs + epoch, iterations * epochs, lr)
        stats = {**stats, "clip_frac": step_stats["clip_frac"]}
        history.append(stats)
        progress.done = it + 1
        if it % log_every == 0 or it + 1 == iterations:
            progress.poll(f"iteration {it + 1}/{iterations}: true reward "
                          f"{stats['true_reward']:+.3f}, RM reward {stats['rm_reward']:+.3f}, "
                          f"KL to SFT {stats['kl']:.3f}, clip fraction {stats['clip_frac']:.3f}")
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


def sampled_batch(cfg, x_ids, y_ids):
    """rlhf.sft_batch of sampled responses, with the [EOS] of a response cut at its cap
    (sample_response_ids: [BOS] x [SEP] y [EOS] fills n_ctx) ignored.

    Sampling with the cap draws from π with the end forced after the cap, so a cut response y
    has probability π(y) = Π_t π(y_t | x, y_<t), with no π([EOS] | x, y) term: its [EOS] is
    not the policy's choice and is neither a term of log π(y|x) nor a token PPO acts on. A
    response that ended by itself keeps its [EOS] target."""
    batch = rlhf.sft_batch(x_ids, y_ids)
    for b, (x, y) in enumerate(zip(x_ids, y_ids)):
        if len(x) + len(y) + 3 == cfg.n_ctx:  # cut: [BOS] x [SEP] y [EOS] fills the context
            batch["targets"][b, len(x) + 1 + len(y)] = IGNORE_INDEX  # the target [EOS]
    return batch


def sample_responses(params, cfg, tokenizer, prompts, rng):
    """sample_response_ids as texts (special tokens kept: such a response scores "other")."""
    return [tokenizer.decode(ids) for ids in sample_response_ids(params, cfg, tokenizer,
                                                                 prompts, rng)]


def judge(params, sft_params, cfg, tokenizer, prompts, sft_responses, rng, tau=instruct.TAU):
    """A policy's true reward, win rate against the SFT model's responses and KL to the SFT
    model, with standard errors, and the share of each kind among its responses.

    The KL is log π(y [EOS] | x) − log π_SFT(y [EOS] | x) on the sampled token ids y (no
    [EOS] term after a response cut at its cap: sampled_batch), whose mean under π is
    KL(π ‖ π_SFT) of the two policies as sampled; not on the re-encoded text, whose tokens
    may differ (a sampled 今 天 re-encodes as 今天)."""
    y_ids = sample_response_ids(params, cfg, tokenizer, prompts, rng)
    responses = [tokenizer.decode(ids) for ids in y_ids]
    reward = np.array([instruct.true_reward(p, y) for p, y in zip(prompts, responses)])
    sft_reward = np.array([instruct.true_reward(p, y) for p, y in zip(prompts, sft_responses)])
    wins = 1.0 / (1.0 + np.exp(-(reward - sft_reward) / tau))
    batch = sampled_batch(cfg, [tokenizer.encode(p.text) for p in prompts], y_ids)
    kl = (rlhf.sequence_logprobs(params, cfg, batch)[0]
          - rlhf.sequence_logprobs(sft_params, cfg, batch)[0])  # (N,)
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




# ----------------------------------------------------------------------------------------------
# The pipeline: data from the seed, then each stage from the one before


@dataclass
class Data:
    """Everything the stages read, drawn from one seed (the same for every stage of a run)."""

    demo_prompts: list
    demonstrations: list
    ranked_prompts: list
    rankings: list
    test_prompts: list
    test_comparisons: list


def model_config(settings, vocab_size):
    """The GPT every stage of ``settings`` trains: the grammar's vocabulary, 48 positions."""
    return GPTConfig(vocab_size=vocab_size, n_ctx=48, n_embd=settings.n_embd, n_head=4,
                     n_layer=settings.n_layer)


def make_data(settings):
    """The tokenizer, the GPT's config and the Data of ``settings``; every draw from the seed.
    The training prompts (demonstrations, rankings) and the test prompts are made from two
    disjoint sets of the grammar's sentences (instruct.split_sentences, HELD_OUT)."""
    s = settings
    tokenizer = default_grammar().tokenizer()
    cfg = model_config(s, len(tokenizer))
    rng = np.random.default_rng([s.seed, 0])
    train, held_out = instruct.split_sentences(rng, HELD_OUT)
    demo_prompts = instruct.sample_prompts(rng, s.n_demonstrations, within=train)
    demonstrations = instruct.sample_demonstrations(rng, demo_prompts)
    ranked_prompts = instruct.sample_prompts(rng, s.n_rankings, within=train)
    rankings = [instruct.rank(rng, p, list(instruct.candidates(p).values()))
                for p in ranked_prompts]
    test_prompts = instruct.sample_prompts(rng, s.n_test, within=held_out)
    data = Data(demo_prompts, demonstrations, ranked_prompts, rankings, test_prompts,
                instruct.sample_comparisons(rng, test_prompts))
    return tokenizer, cfg, data


# Each stage draws from its own stream of the seed, so a stage run alone (--method) draws what
# it draws inside the whole pipeline.
STREAMS = {"sft": 1, "rm": 2, "dpo": 3, "ppo": 4, "judge": 5}


def stage_rng(settings, stage):
    return np.random.default_rng([settings.seed, STREAMS[stage]])


def stage_sft(settings, tokenizer, cfg, data, log=print):
    """A fresh GPT fine-tuned on the demonstrations. -> params"""
    s, rng = settings, stage_rng(settings, "sft")
    params = gpt_init(cfg, rng)
    losses = sft(params, cfg, tokenizer, data.demo_prompts, data.demonstrations, s.sft_steps,
                 s.batch_size, s.sft_lr, rng, Progress(s.sft_steps, log, "SFT", every=0.25))
    log(f"SFT: {s.sft_steps} steps, last loss {losses[-1]:.3f} (mean per response token)")
    return params


def stage_rm(settings, tokenizer, cfg, data, sft_params, log=print):
    """The reward model from the SFT model. -> (params, accuracy, its standard error, the
    Bayes limit)"""
    s, rng = settings, stage_rng(settings, "rm")
    params = rlhf.add_scalar_head({k: v.copy() for k, v in sft_params.items()}, cfg, "rm", rng)
    losses = train_reward_model(params, cfg, tokenizer, data.ranked_prompts, data.rankings,
                                s.rm_steps, s.batch_size, s.rm_lr, rng,
                                Progress(s.rm_steps, log, "RM", every=0.25))
    accuracy = reward_model_accuracy(params, cfg, tokenizer, data.test_comparisons)
    se = math.sqrt(accuracy * (1 - accuracy) / len(data.test_comparisons))
    bayes = instruct.bayes_accuracy(data.test_prompts)
    log(f"RM: held-out accuracy {accuracy:.3f} ± {se:.3f} beside the Bayes limit {bayes:.3f} "
        f"({len(data.test_comparisons)} comparisons); last loss {losses[-1]:.3f} "
        f"(log 2 = {math.log(2):.3f} at chance)")
    return params, accuracy, se, bayes


def stage_dpo(settings, tokenizer, cfg, data, sft_params, log=print):
    """DPO from the SFT model, on the reward model's rankings. -> params"""
    s, rng = settings, stage_rng(settings, "dpo")
    params = {k: v.copy() for k, v in sft_params.items()}
    losses = dpo(params, sft_params, cfg, tokenizer, data.ranked_prompts, data.rankings,
                 s.dpo_steps, s.batch_size, s.dpo_lr, s.beta, rng,
                 Progress(s.dpo_steps, log, "DPO", every=0.25))
    log(f"DPO: {s.dpo_steps} steps, loss {losses[0]:.3f} (log 2 at the start) -> "
        f"{losses[-1]:.3f}; its optimum on the candidates would score "
        f"{dpo_optimum_true_reward(s.beta):.3f}")
    return params


def stage_ppo(settings, tokenizer, cfg, data, sft_params, rm_params, beta, log=print):
    """PPO from the SFT model against the reward model, KL penalty β. -> (params without
    the value head, the per-iteration history)"""
    s, rng = settings, stage_rng(settings, "ppo")
    policy = rlhf.add_scalar_head({k: v.copy() for k, v in sft_params.items()}, cfg, "v", rng)
    log(f"PPO with β = {beta:g} (true and RM reward: the mean over one rollout's responses)")
    history = ppo_train(policy, sft_params, rm_params, cfg, tokenizer, data.ranked_prompts,
                        s.ppo_iterations, s.batch_size, s.ppo_lr, beta, s.ppo_epochs, rng, log)
    return rlhf.gpt_without(policy, "v"), history


def drift(history, window=10):
    """The RM reward and the true reward of PPO's rollouts: the mean over the responses of the
    first ``window`` rollouts and over those of the last, each with its standard error
    (std / sqrt(number of responses)). Reward hacking is the first rising while the second
    falls, each by more than its errors."""
    n = min(window, len(history))
    out = {}
    for key in ("rm_reward", "true_reward"):
        for when, part in (("first", history[:n]), ("last", history[-n:])):
            values = np.concatenate([h[key + "s"] for h in part])  # every response's
            out[f"{key}_{when}"] = float(values.mean())
            out[f"{key}_{when}_se"] = float(values.std() / math.sqrt(len(values)))
    return out


def run(settings=AlignConfig(), log=print):
    """SFT → RM → DPO and PPO (β = ppo_beta and β = hack_beta), each judged against the truth.
    -> {"rows": [{method, true_reward, win_rate_vs_sft, kl_to_sft, ...}], "rm_accuracy",
    "rm_accuracy_se", "bayes_accuracy", "hacking" (drift of the β = hack_beta run), and
    "example": one held-out prompt with each method's response}."""
    s = settings
    tokenizer, cfg, data = make_data(s)
    sft_params = stage_sft(s, tokenizer, cfg, data, log)
    rm_params, accuracy, se, bayes = stage_rm(s, tokenizer, cfg, data, sft_params, log)
    policies = {"sft": sft_params, "dpo": stage_dpo(s, tokenizer, cfg, data, sft_params, log)}
    policies["ppo"], _ = stage_ppo(s, tokenizer, cfg, data, sft_params, rm_params, s.ppo_beta,
                                   log)
    hack_name = f"ppo β={s.hack_beta:g}"
    policies[hack_name], hack_history = stage_ppo(s, tokenizer, cfg, data, sft_params,
                                                  rm_params, s.hack_beta, log)
    rng = stage_rng(s, "judge")
    sft_responses = sample_responses(sft_params, cfg, tokenizer, data.test_prompts, rng)
    rows = [{"method": method, **judge(params, sft_params, cfg, tokenizer, data.test_prompts,
                                       sft_responses, rng)}
            for method, params in policies.items()]
    # The first held-out prompt the SFT model answered wrong (the first prompt if none).
    wrong = [i for i, (p, y) in enumerate(zip(data.test_prompts, rows[0]["responses"]))
             if instruct.response_kind(p, y) != "correct"]
    first = wrong[0] if wrong else 0
    example = {"prompt": data.test_prompts[first].text,
               "responses": {row["method"]: row["responses"][first] for row in rows}}
    return {"rows": rows, "rm_accuracy": accuracy, "rm_accuracy_se": se,
            "bayes_accuracy": bayes, "hacking": drift(hack_history), "hack_method": hack_name,
            "dpo_optimum_true_reward": dpo_optimum_true_reward(s.beta), "example": example}


def format_table(rows):
    """Method, true reward, win rate against SFT, KL to SFT: one line a judged policy."""
    lines = [f"{'method':<12} {'true reward':>16} {'win rate vs SFT':>17} {'KL to SFT':>15}"]
    for row in rows:
        lines.append(f"{row['method']:<12} {row['true_reward']:>+9.3f} ± "
                     f"{row['true_reward_se']:.3f} {row['win_rate_vs_sft']:>10.3f} ± "
                     f"{row['win_rate_se']:.3f} {row['kl_to_sft']:>8.3f} ± {row['kl_se']:.3f}")
    return "\n".join(lines)


def format_report(result):
    """The demo's table, the reward model beside the Bayes limit, the hacking run's drift, and
    one prompt's responses."""
    lines = [format_table(result["rows"])]
    lines.append(f"true reward: r*(x, y) of instruct.py, 2 correct .. -2 anything else; "
                 f"DPO's optimum on the candidates {result['dpo_optimum_true_reward']:.3f}")
    lines.append(f"reward model: held-out accuracy {result['rm_accuracy']:.3f} ± "
                 f"{result['rm_accuracy_se']:.3f}, Bayes limit {result['bayes_accuracy']:.3f}")
    h = result["hacking"]
    lines.append(f"{result['hack_method']}, first → last 10 rollouts: RM reward "
                 f"{h['rm_reward_first']:+.3f} ± {h['rm_reward_first_se']:.3f} → "
                 f"{h['rm_reward_last']:+.3f} ± {h['rm_reward_last_se']:.3f}, true reward "
                 f"{h['true_reward_first']:+.3f} ± {h['true_reward_first_se']:.3f} → "
                 f"{h['true_reward_last']:+.3f} ± {h['true_reward_last_se']:.3f}")
    lines.append(f"the first held-out prompt SFT answered wrong: {result['example']['prompt']}")
    for method, response in result["example"]["responses"].items():
        lines.append(f"  {method:<12} {response}")
    return "\n".join(lines)


def json_summary(result):
    """The --json document: {"rows": [{method, true_reward, win_rate_vs_sft, kl_to_sft, and
    their standard errors}], and the reward model's accuracy beside the Bayes limit}."""
    keys = ("method", "true_reward", "true_reward_se", "win_rate_vs_sft", "win_rate_se",
            "kl_to_sft", "kl_se", "kinds")
    return {"rows": [{k: row[k] for k in keys} for row in result["rows"]],
            "rm_accuracy": result["rm_accuracy"], "bayes_accuracy": result["bayes_accuracy"],
            "hacking": result["hacking"], "example": result["example"]}


# ----------------------------------------------------------------------------------------------
# python -m minillm align


def save_stage(path, stage, params, settings):
    """One stage's parameters and the settings that made them, in a safetensors file (written
    crash-safe; never with a NaN or an infinity)."""
    bad = [name for name, value in params.items() if not np.all(np.isfinite(value))]
    if bad:
        raise AlignError(f"the {stage} stage's parameters are not finite ({', '.join(bad[:3])}"
                         f"{', ...' if len(bad) > 3 else ''}): {path} is not written")
    meta = {"stage": stage, "settings": asdict(settings)}
    safetensors.save_file(params, path, metadata={"minillm_align": json.dumps(meta)})


def load_stage(path, stage, flag):
    """(params, settings) of a file save_stage wrote for ``stage``; AlignError (one line)
    naming the flag and the file otherwise."""
    try:
        params, metadata = safetensors.load_file_with_metadata(path)
    except (OSError, ValueError) as err:
        raise AlignError(f"{flag} {path}: {err}") from None
    try:
        meta = json.loads(metadata["minillm_align"])
        settings = AlignConfig(**meta["settings"])
    except (KeyError, TypeError, ValueError):
        raise AlignError(f"{flag} {path}: not a file written by minillm align") from None
    if meta.get("stage") != stage:
        raise AlignError(f"{flag} {path}: holds the {meta.get('stage')!r} stage, "
                         f"{flag} needs the {stage!r} one")
    # The tensors: exactly the GPT of its settings (and the reward model's head), all finite.
    cfg = model_config(settings, len(default_grammar().tokenizer()))
    shapes = {**gpt_param_shapes(cfg), **(rlhf.scalar_head_shapes(cfg, "rm") if stage == "rm"
                                          else {})}
    try:
        check_params(params, shapes, "its tensors")
    except ValueError as err:
        raise AlignError(f"{flag} {path}: {err}") from None
    bad = [name for name, value in params.items() if not np.all(np.isfinite(value))]
    if bad:
        raise AlignError(f"{flag} {path}: {bad[0]} holds a NaN or an infinity")
    return params, settings


class AlignError(Exception):
    """A bad option or input file: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's refusals as one AlignError line, not the usage and then the message."""

    def error(self, message):
        raise AlignError(f"{message} (see 'minillm align --help')")


def build_parser():
    parser = _Parser(
        prog="minillm align",
        description="第四代 InstructGPT: supervised fine-tuning, a reward model, PPO with a KL "
        "penalty, and DPO, on the built-in grammar's tasks, judged by a true reward and a "
        "Bradley–Terry labeler whose preferences are known (instruct.py).")
    parser.add_argument("--demo", action="store_true",
                        help="run the whole pipeline and print the table (a few minutes)")
    parser.add_argument("--method", choices=("sft", "rm", "ppo", "dpo"),
                        help="run one stage: sft (writes --out), rm and dpo (read --sft), ppo "
                        "(reads --sft and --rm)")
    parser.add_argument("--sft", metavar="FILE", help="the sft stage's file")
    parser.add_argument("--rm", metavar="FILE", help="the rm stage's file")
    parser.add_argument("--out", metavar="FILE", help="where the stage's parameters go")
    parser.add_argument("--beta", type=float, default=None,
                        help="the KL penalty (ppo) or DPO's β (default: the settings')")
    parser.add_argument("--size", choices=sorted(SIZES), default=None,
                        help="--demo and --method sft: demo (the default) the models of the "
                        "table; tiny: seconds, for the tests (the later stages take the --sft "
                        "file's settings)")
    parser.add_argument("--json", metavar="FILE", help="--demo: also write the table as JSON")
    return parser


def _run_stage(args):
    """--method: one stage, from the files of the stages before it."""
    if args.out is None:
        raise AlignError(f"--method {args.method} needs --out FILE")
    if args.method == "sft":
        settings = SIZES[args.size or "demo"]
        tokenizer, cfg, data = make_data(settings)
        save_stage(args.out, "sft", stage_sft(settings, tokenizer, cfg, data), settings)
        return
    if args.sft is None:
        raise AlignError(f"--method {args.method} needs --sft FILE (from --method sft)")
    sft_params, settings = load_stage(args.sft, "sft", "--sft")
    if args.method == "ppo":
        if args.rm is None:
            raise AlignError("--method ppo needs --rm FILE (from --method rm)")
        rm_params, rm_settings = load_stage(args.rm, "rm", "--rm")
        differ = [f"{k} {v} vs {getattr(settings, k)}" for k, v in asdict(rm_settings).items()
                  if v != getattr(settings, k)]
        if differ:  # another size, seed or data: a reward model of another SFT model
            raise AlignError(f"--rm {args.rm}: made with other settings than --sft "
                             f"{args.sft} ({', '.join(differ)})")
    if args.beta is not None:
        try:
            settings = replace(settings, **{"ppo_beta" if args.method == "ppo" else "beta":
                                            args.beta})
        except ValueError as err:
            raise AlignError(f"--beta: {err}") from None
    tokenizer, cfg, data = make_data(settings)
    if args.method == "rm":
        params = stage_rm(settings, tokenizer, cfg, data, sft_params)[0]
    elif args.method == "dpo":
        params = stage_dpo(settings, tokenizer, cfg, data, sft_params)
    else:
        params, _ = stage_ppo(settings, tokenizer, cfg, data, sft_params, rm_params,
                              settings.ppo_beta)
    if args.method != "rm":
        sft_responses = sample_responses(sft_params, cfg, tokenizer, data.test_prompts,
                                         stage_rng(settings, "judge"))
        row = judge(params, sft_params, cfg, tokenizer, data.test_prompts, sft_responses,
                    stage_rng(settings, "judge"))
        print(format_table([{"method": args.method, **row}]))
    save_stage(args.out, args.method, params, settings)


# Which runs read each option (None: --demo); the others refuse it.
OPTION_USERS = {"sft": ("rm", "dpo", "ppo"), "rm": ("ppo",), "out": ("sft", "rm", "dpo", "ppo"),
                "beta": ("dpo", "ppo"), "size": (None, "sft"), "json": (None,)}


def _run_name(method):
    """--demo or --method NAME, as the user wrote it."""
    return "--demo" if method is None else f"--method {method}"


def main(argv=None):
    """-> exit status: 0 done, 2 a bad option or file."""
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit:  # --help
            return int(exit.code or 0)
        if args.demo == (args.method is not None):
            raise AlignError("give --demo or --method, one of them")
        for flag, users in OPTION_USERS.items():  # refused rather than ignored
            if getattr(args, flag) is not None and args.method not in users:
                raise AlignError(f"--{flag} goes with "
                                 f"{', '.join(_run_name(m) for m in users)}, not "
                                 f"{_run_name(args.method)}")
        for flag in ("out", "json"):
            if getattr(args, flag) is not None:
                safetensors.check_writable(getattr(args, flag))
        if args.method is not None:
            _run_stage(args)
            return 0
        result = run(SIZES[args.size or "demo"])
        print(format_report(result))
        if args.json is not None:
            safetensors.write_json(args.json, json_summary(result))  # crash-safe
        return 0
    except (AlignError, OSError, safetensors.SafetensorsError, safetensors.TargetError) as err:
        print(f"minillm align: error: {err}", file=sys.stderr)
        return 2

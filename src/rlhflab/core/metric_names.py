"""The names of the metrics that methods log and the report, compare and benchmarks read.

One place, so a renamed metric is renamed everywhere; the names follow lm-human-preferences
(``objective/kl``, ``objective/kl_coef``, ``objective/entropy``, ``ppo/policy/clipfrac``,
``ppo/val/var_explained``). Every RL method logs the ``objective/*`` keys at each step.
"""

STEP = "step"
EPISODES = "episodes"

SCORE = "objective/score"
"""Mean reward the method optimised (the proxy, or gold/a rule when that is the reward)."""
GOLD = "objective/gold"
"""Mean gold reward of the same samples (when the task has a gold scorer)."""
KL = "objective/kl"
"""Mean k1 estimate of KL(policy || reference) per continuation, nats."""
KL_K3 = "objective/kl_k3"
KL_COEF = "objective/kl_coef"
SCORE_TOTAL = "objective/score_total"
ENTROPY = "objective/entropy"
"""Mean per-token entropy of the policy on its own samples, nats."""
EXPLOITATION = "objective/exploitation"
"""Of the samples a 0/1 reward accepted, the share the task's 0/1 gold verifier rejects (a loophole taken)."""

LOSS = "loss"
LR = "lr"
RESPONSE_LENGTH = "response/length"
TOKENS = "tokens"

TIME_ROLLOUT = "time/rollout"
TIME_GENERATE = "time/generate"
"""The part of ``time/rollout`` spent generating (the rest: reward, log-probabilities, values)."""
TIME_UPDATE = "time/update"
TIME_STEP = "time/step"
TIMES = (TIME_ROLLOUT, TIME_GENERATE, TIME_UPDATE, TIME_STEP)
"""Wall-clock metrics: the only ones that differ between a run and its resumed twin."""

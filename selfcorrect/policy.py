"""The reprompt-timing-and-selection (RTS) policy of correction traces: whether to reprompt, and with which prompt.

A context is (failure mode, confidence bucket, last prompt, turn index); an action is a
prompt id of `traces.prompts` or `stop`. Each (context, action) has a Beta(alpha, beta),
starting at Beta(1, 1).

Reward: r = delta accuracy - lambda x tokens, where delta accuracy is -1 (was right, now
wrong), 0 or +1 (was wrong, now right) and tokens are the new answer's generated tokens
(`traces.token_cost` is lambda, 0.001 by default). It is mapped to [0, 1] as
r01 = clamp((r + 1) / 2, 0, 1), so "no change, no cost" is 0.5, then added as a fractional
Bernoulli outcome: alpha += r01, beta += 1 - r01. `stop` ends the trace and is updated with
r = 0 (nothing changes, nothing is spent): a reprompt must beat 0.5 to be preferred to it.

Algorithms (`traces.policy`): `thompson` draws one sample from each action's Beta and takes
the largest; `epsilon_greedy` takes the largest mean alpha / (alpha + beta), or with
probability epsilon a random action; `fixed:<prompt>` always reprompts a wrong answer with
that prompt and stops on a right one (the baselines). Every algorithm updates the same
counts, so a fixed run's outcomes teach the learned policy too.

State: `data/policy/rts.json`, plain JSON written atomically after every update and read
at start, so learning continues across runs and restarts. Each decision's random draw is
seeded by (traces.seed, decisions so far): the same state gives the same choice.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from core.fsutil import atomic_write_json

STOP = "stop"
STATE = Path("data") / "policy" / "rts.json"  # under the root
RIGHT = ("correct", "corrected")  # the failure modes of a right answer
BUCKETS = ((0.5, "low"), (0.8, "mid"), (1.01, "high"))  # confidence below the bound -> the bucket


def bucket(confidence: float) -> str:
    return next(name for bound, name in BUCKETS if confidence < bound)


def reward(delta: int, tokens: int, token_cost: float) -> float:
    return delta - token_cost * tokens


def unit(r: float) -> float:
    """The reward on [0, 1] for the Beta update (see the module docstring)."""
    return min(1.0, max(0.0, (r + 1) / 2))


@dataclass(frozen=True)
class Context:
    mode: str
    confidence: str  # a bucket of BUCKETS
    last_prompt: str  # "none" before the first reprompt
    turn: int

    @property
    def key(self) -> str:
        return f"{self.mode}|{self.confidence}|{self.last_prompt}|{self.turn}"


class Policy:
    def __init__(self, path: Path | None, *, algorithm: str, actions: list[str], epsilon: float = 0.1, seed: int = 0):
        self.path, self.algorithm, self.epsilon, self.seed = path, algorithm, epsilon, seed
        self.actions = [*actions, STOP]
        self.arms: dict[str, dict[str, dict]] = {}  # context key -> action -> {alpha, beta, n, reward_sum}
        self.decisions = self.updates = 0
        if path is not None and path.exists():
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text())
            self.arms = {str(k): {str(a): {f: float(v[f]) for f in ("alpha", "beta", "n", "reward_sum")}
                                  for a, v in arms.items()} for k, arms in state["arms"].items()}
            self.decisions, self.updates = int(state["decisions"]), int(state["updates"])
            for k, arms in self.arms.items():  # a NaN or a zero would make the Beta draws loop for ever
                for a, v in arms.items():
                    if not all(math.isfinite(x) for x in v.values()) or min(v["alpha"], v["beta"]) <= 0:
                        raise ValueError(f"arm {k!r} {a!r}: alpha and beta must be finite and above 0, got {v}")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            from core.errors import ProjectError

            raise ProjectError(f"{path}: not a policy state ({e}); move it aside to start the policy afresh") from None

    def save(self) -> None:
        if self.path is not None:
            atomic_write_json(self.path, {"version": 1, "algorithm": self.algorithm, "decisions": self.decisions,
                                          "updates": self.updates, "arms": self.arms})

    def _arm(self, context: Context, action: str) -> dict:
        return self.arms.setdefault(context.key, {}).setdefault(
            action, {"alpha": 1.0, "beta": 1.0, "n": 0.0, "reward_sum": 0.0})

    def choose(self, context: Context) -> str:
        """The action for this context: a prompt id, or STOP."""
        rng = random.Random(f"{self.seed}:{self.decisions}")
        self.decisions += 1
        if self.algorithm.startswith("fixed:"):
            return STOP if context.mode in RIGHT else self.algorithm[len("fixed:"):]
        arms = {a: self._arm(context, a) for a in self.actions}
        if self.algorithm == "epsilon_greedy":
            if rng.random() < self.epsilon:
                return rng.choice(self.actions)
            return max(self.actions, key=lambda a: (arms[a]["alpha"] / (arms[a]["alpha"] + arms[a]["beta"]), a == STOP))
        draws = {a: rng.betavariate(arms[a]["alpha"], arms[a]["beta"]) for a in self.actions}
        return max(self.actions, key=lambda a: draws[a])

    def update(self, context: Context, action: str, r: float) -> None:
        arm = self._arm(context, action)
        u = unit(r)
        arm["alpha"] += u
        arm["beta"] += 1 - u
        arm["n"] += 1
        arm["reward_sum"] += r
        self.updates += 1
        self.save()

    def stats(self) -> dict:
        """The summary's policy_stats (alpha_params / beta_params: the sums over every arm, prior included) and,
        per action and per context, how often it was taken and its mean reward."""
        per_action: dict[str, dict] = {}
        per_context: dict[str, dict] = {}
        alpha = beta = n = total = 0.0
        for key, arms in self.arms.items():
            for action, arm in arms.items():
                alpha, beta = alpha + arm["alpha"], beta + arm["beta"]
                if not arm["n"]:
                    continue
                n, total = n + arm["n"], total + arm["reward_sum"]
                a = per_action.setdefault(action, {"taken": 0, "reward_sum": 0.0})
                a["taken"] += int(arm["n"])
                a["reward_sum"] += arm["reward_sum"]
                per_context.setdefault(key, {})[action] = {"taken": int(arm["n"]),
                                                           "mean_reward": round(arm["reward_sum"] / arm["n"], 4)}
        return {"algorithm": self.algorithm, "total_actions": int(n), "alpha_params": round(alpha, 3),
                "beta_params": round(beta, 3), "avg_reward": round(total / n, 4) if n else 0.0,
                "decisions": self.decisions, "updates": self.updates,
                "per_action": {a: {"taken": v["taken"], "mean_reward": round(v["reward_sum"] / v["taken"], 4)}
                               for a, v in sorted(per_action.items(), key=lambda kv: -kv[1]["taken"])},
                "per_context": per_context}


def policy_for(root: Path, settings) -> Policy:
    """The root's policy with the config's algorithm and prompts."""
    return Policy(Path(root) / STATE, algorithm=settings.policy, actions=list(settings.prompts),
                  epsilon=settings.epsilon, seed=settings.seed)


def policy_stats(root: Path) -> dict | None:
    """The stats of the root's saved policy (for --status and --report); None before its first update."""
    path = Path(root) / STATE
    if not path.exists():
        return None
    try:
        algorithm = json.loads(path.read_text()).get("algorithm", "?")
    except ValueError:
        return None
    return Policy(path, algorithm=algorithm, actions=[]).stats()

"""config.json, validated: one pydantic model per section, mirrored 1:1 by the file.

Every field has a default and a description; unknown keys are errors; all
problems are reported at once, each with its key path and what to do.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError


BUILTIN_MODELS = ("smollm2-135m-instruct", "tiny-random")  # the first is the default



def checked_template(template: str, *, allowed: set[str], required: set[str] = frozenset()) -> str:
    """A prompt template whose {placeholders} are all in `allowed` and include every one of `required`; else a
    ValueError naming what is wrong and the placeholders to use (pydantic puts the key path in front)."""
    import string

    names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    use = " ".join("{" + a + "}" for a in sorted(allowed))
    if names - allowed:
        raise ValueError(f"unknown placeholder(s) {sorted(names - allowed)}; use {use}")
    if required - names:
        raise ValueError(f"must contain {' and '.join('{' + a + '}' for a in sorted(required))}")
    return template


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name_or_path: str = Field(
        BUILTIN_MODELS[0],
        description="Built-in alias (smollm2-135m-instruct, tiny-random), a local folder, or a Hugging Face id.",
    )
    cache_dir: str = Field(
        "data/models", description="Where built-in models are materialized (relative paths are under the root)."
    )
    trust_remote_code: bool = Field(False, description="Run code shipped with a model. Leave off unless you trust it.")
    load_in_4bit: bool = Field(False, description="QLoRA: load the base model in 4 bit (CUDA + bitsandbytes only).")
    use_chat_template: Literal["auto", "always", "never"] = Field(
        "auto", description="Wrap examples in the tokenizer's chat template; auto: when the tokenizer has one."
    )


class LoraSection(Section):
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: int = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input (0, as in PEFT: learning was no worse without it and training ran faster, docs/experiments/speed.md).")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
        description="Names of the linear layers that get adapters.",
    )


class PromotionSection(Section):
    """The gate between a trained adapter version and `current`, what is served: a version is refused only when
    the evidence says it is worse. What is learned never depends on it (on_reject)."""

    enabled: bool = Field(True, description="Score each new version against the current one on the gate set before "
                                            "serving it.")
    holdout_fraction: float = Field(
        0.05, ge=0, lt=1, description="Share of each incoming file kept out of training and self-correction for the gate.")
    max_items_per_file: int = Field(32, gt=0, description="Most gate items taken from one file.")
    files: list[str] = Field(default_factory=list, description="Extra QA files (JSONL) for the gate set.")
    tolerance: float = Field(
        0.05, ge=0, le=1, description="Accuracy a new version may lose (overall, and on earlier files' items) and "
                                      "still be promoted.")
    confidence: float = Field(
        0.95, gt=0, lt=1, description="Refuse a version only when it is worse at this one-sided confidence: an exact "
                                      "binomial test on the gate items it and the current version answer differently.")
    on_reject: Literal["continue", "rollback"] = Field(
        "continue", description="After a refused version: continue (the next file trains on from it, so every file "
                                "is learned; only serving waits) or rollback (the next file trains from the current "
                                "version; what the refused file taught is dropped).")
    alarm_after: int = Field(3, gt=0, description="Refusals in a row after which the log, status and page raise an "
                                                  "alarm with the evidence (and how to roll the training head back).")


class TrainingSection(Section):
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (AdamW).")
    lr_scheduler_type: str = Field("constant_with_warmup", description="transformers scheduler name, per file.")
    warmup_steps: int = Field(5, ge=0, description="Warm-up steps at the start of each file.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(8, gt=0, description="Examples per device per step.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    micro_batch_tokens: int | None = Field(
        None, ge=0, description="Most tokens (rows x padded length) in one forward pass; a larger batch is split "
                                "into row slices, longest rows first, whose gradients add up to the same step. "
                                "Bounds activation memory; 0: never split; null: 512 on CPU and MPS, never on CUDA.")
    max_seq_length: int = Field(1024, gt=8, description="Tokens per example; longer examples are cut at the end.")
    epochs_per_file: float = Field(1.0, gt=0, description="Passes over each training file.")
    save_steps: int = Field(50, gt=0, description="Mid-file checkpoint every N optimizer steps (for crash resume).")
    logging_steps: int = Field(10, gt=0, description="Log loss every N optimizer steps.")
    quiet_seconds: float = Field(30.0, gt=0, description="The longest the log stays quiet while a file trains: "
                                                         "a `step` line (step, tok/s, ETA) comes at least this often.")
    seed: int = Field(42, description="Seed for data order, LoRA init and dropout.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 on CUDA where supported, fp16 on older CUDA, fp32 on MPS and CPUs "
        "(bf16 on a CPU with native bf16 trains faster but to a higher loss; ask for it with \"bf16\")."
    )
    group_by_length: bool = Field(True, description="Batch examples of similar length together (less padding).")
    keep_versions: int = Field(5, gt=0, description="Adapter versions kept on disk (the current one always is).")
    max_line_bytes: int = Field(1_000_000, gt=0, description="Longest accepted JSONL line, in bytes.")
    max_file_bytes: int = Field(2 * 2**30, gt=0, description="Largest accepted file (training, practice, feedback), "
                                                             "in bytes: it is read whole; split a larger one.")
    report_to: list[str] = Field(
        default_factory=list,
        description="Trainer integrations that get every log, live-evaluation metrics included, e.g. ['tensorboard'].")
    promotion: PromotionSection = Field(default_factory=PromotionSection, description="The promotion gate.")


class ValidationSection(Section):
    files: list[str] = Field(default_factory=list, description="QA files (JSONL) used for live evaluation.")
    holdout_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of each incoming training file kept out of training for evaluation."
    )


class TemplatesSection(Section):
    """Prompt templates of the self-correction records. Placeholders: {question} {previous} {codes}."""

    self_evaluation: str = Field(
        "{question}\n\nYour previous answer:\n{previous}\n\nError indicators: {codes}\n\n"
        "Based on these error indicators, evaluate your answer.",
        description="Prompt of the self-evaluation record.",
    )
    correction: str = Field(
        "{question}\n\nYour previous answer:\n{previous}\n\nError indicators: {codes}\n\nProvide the correct answer.",
        description="Prompt of the correction record (also the second-attempt prompt).",
    )

    @field_validator("self_evaluation", "correction")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        return checked_template(value, allowed={"question", "previous", "codes"}, required={"question", "codes"})


class SelfCorrectionSection(Section):
    enabled: bool = Field(True, description="Turn wrong evaluation answers into training examples.")
    auto_queue: bool = Field(True, description="Put generated files into the queue (else only data/self_correction/).")
    min_examples: int = Field(10, gt=0, description="Examples the buffer must hold before a file is written.")
    generation_interval: int = Field(500, gt=0, description="Write a file every N global steps.")
    queue: Literal["high", "normal", "low"] = Field("normal", description="Queue priority of generated files.")
    max_pending_files: int = Field(20, gt=0, description="Stop generating while this many generated files wait.")
    measure_second_attempt: bool = Field(True, description="Re-ask wrong answers with their error codes.")
    max_turns: int = Field(
        1, ge=1, description="Reprompts per live-evaluation question. 1: today's single second attempt (wrong "
                             "answers re-asked with their error codes); more: multi-pass traces whose prompts "
                             "traces.policy chooses, logged to logs/traces_*.jsonl.")
    templates: TemplatesSection = Field(default_factory=TemplatesSection, description="Prompt templates of the records.")


class ExperimentalSection(Section):
    """Switches that only studies use (docs/experiments/). At their defaults they change nothing in training; measured,
    none helped enough to be turned on. They may change or go without notice."""

    first_wrong_value: bool = Field(
        False, description="Add the error code FIRST_WRONG_VALUE_X (the first number where the answer went wrong). "
        "Off: measured, it did not help the second attempt, and first attempts on sums were lower.")
    confirm_right_answers: bool = Field(
        False, description="Also train each right answer on the correction prompt with no error codes, "
        "so that a second attempt keeps right answers.")
    confirm_golden_answers: bool = Field(
        False, description="With each wrong answer's triple, also one confirmation of its golden answer (the "
        "correction prompt showing the golden answer with no error codes -> the same answer), so 'none' means keep "
        "as often as codes mean change.")
    correction_repeats: int = Field(
        1, ge=1, description="Write each wrong answer's correction record this many times: weighs 'codes -> "
        "change' against the keeps of the confirmations.")
    reject_initial_attempts: bool = Field(
        True, description="A wrong answer's initial-attempt record carries the wrong answer as 'rejected', as its "
        "correction record does, so experimental.unlikelihood_weight and preference_weight push it down on the bare "
        "question too. Off: only the correction records carry it, and first attempts train by cross-entropy alone.")
    reject_golden_confirmations: bool = Field(
        False, description="With confirm_golden_answers, each golden confirmation also carries the wrong answer as "
        "'rejected': shown the golden answer with no error codes, keep it rather than write the wrong one again. "
        "Preference training then pushes 'keep' as it pushes 'change'.")
    training_file_questions: int = Field(
        0, ge=0, description="At each evaluation, also answer this many questions of the file being trained: "
        "their mistakes (and right answers, with confirm_right_answers) become records too. On policy; "
        "never counted in the accuracy, since the model trains on them.")
    unlikelihood_weight: float = Field(
        0.0, ge=0, description="Records with a 'rejected' answer (self-correction keeps the model's wrong one) also "
        "push down the rejected answer's first token that departs from the response: -log(1 - p), unlikelihood "
        "training (Welleck et al., 2019), times this weight, counted like one supervised token. 0: off.")
    preference_weight: float = Field(
        0.0, ge=0, description="Records with a 'rejected' answer also train by preference: the DPO loss (Rafailov "
        "et al., 2023) of the response over the rejected answer, against the adapter the file started from, counted "
        "like this many supervised tokens per pair; the response keeps its cross-entropy too (as in RPO). 0: off.")
    preference_beta: float = Field(
        0.1, gt=0, description="DPO's beta: how far the preference may move the adapter from where the file started.")


class DaemonSection(Section):
    settle_seconds: float = Field(2.0, ge=0, description="A file written in place is taken once unchanged this long.")
    scan_interval_seconds: float = Field(2.0, gt=0, description="Full rescan of the folders (watch events are hints).")
    retry_after_seconds: float = Field(
        30.0, ge=0, description="After a machine error (disk full), wait this long before training again.")
    distributed_timeout_seconds: float = Field(
        1800.0, gt=0, description="Several processes (accelerate launch, torchrun): how long a rank waits for the "
                                  "others in a step, rank 0's live evaluation included, before it gives up and "
                                  "exits (a rank that died).")


class PracticeSection(Section):
    """Verified self-training: sample solutions to practice problems, keep those that verify, train them."""

    method: Literal["rest", "grpo"] = Field(
        "rest", description="rest: train the samples that verify (rejection sampling). grpo: train every sample "
                            "by how its reward compares with its group's (GRPO: right ones up, wrong ones down); "
                            "docs/practice.md says when to pick which.")
    samples: int = Field(4, gt=0, description="Solutions sampled per problem (K); grpo needs 2 or more (a group).")
    temperature_math: float = Field(0.7, ge=0, description="Sampling temperature for math / QA problems (0: greedy).")
    temperature_code: float = Field(0.8, ge=0, description="Sampling temperature for code problems (0: greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    max_new_tokens_math: int = Field(512, gt=0, description="Most new tokens per math solution.")
    max_new_tokens_code: int = Field(1024, gt=0, description="Most new tokens per code solution.")
    keep_per_problem: int = Field(2, gt=0, description="Most verified solutions kept per problem (distinct ones).")
    rounds: int = Field(1, gt=0, description="Rounds of sample -> verify -> train, each from the adapter the last made.")
    format_reward: float = Field(
        0.0, ge=0, description="grpo: reward added to a sample that ends in a complete final-answer line (math) or "
                               "a ```python block (code), right or wrong; the verifier's reward is 1 or 0.")
    grpo_epsilon: float = Field(
        0.2, gt=0, description="grpo: clipping of the probability ratio to the round's start adapter, 1 +- this "
                               "(PPO's clip; it acts from the round's second optimizer step).")
    grpo_beta: float = Field(
        0.0, ge=0, description="grpo: weight of the KL term to the round's start adapter (0: none, as TRL's "
                               "default).")
    queue: Literal["high", "normal", "low"] = Field(
        "high", description="Queue a round's training file joins in the daemon; rounds are sampled when no file "
                            "of this priority or above waits.")
    code_wall_seconds: float = Field(10.0, gt=0, description="Wall-clock limit of one code test run.")
    code_memory_mb: int = Field(1024, gt=64, description="Address-space limit of one code test run.")
    allow_unsandboxed_code: bool = Field(
        False, description="Run code problems' tests where no operating-system sandbox (bubblewrap) works, with only "
                           "rlimits and an audit hook between the code and your machine. Off: such files are refused.")
    prompt_math: str = Field(
        "You are a helpful AI math assistant. You excel at solving math problems by breaking them down into clear, "
        "logical steps.\n\nProblem:\n{problem}\n\nSolve this problem step by step, showing your reasoning clearly, "
        "and end with the line: Therefore, the answer is <answer>.", description="Prompt of a math / QA problem.")
    prompt_code: str = Field(
        "You are an expert coding assistant. You excel at solving programming problems with clear step-by-step "
        "reasoning.\n\nProblem:\n{problem}\n\nSolve this coding problem step by step in Python, explaining your "
        "thought process and then providing the final working code in a ```python block.",
        description="Prompt of a code problem.")

    @model_validator(mode="after")
    def _a_group_for_grpo(self) -> "PracticeSection":
        if self.method == "grpo" and self.samples < 2:
            raise ValueError(f"practice.method grpo compares each sample with its group's: practice.samples must be "
                             f"2 or more (it is {self.samples})")
        return self

    @field_validator("prompt_math", "prompt_code")
    @classmethod
    def _problem_placeholder(cls, value: str) -> str:
        # substituted by plain replacement, not str.format: other braces (code in the prompt) stay as written
        if "{problem}" not in value:
            raise ValueError("must contain {problem}")
        return value


class AnalysisSection(Section):
    """Failure analysis: `train.py --analyze`, and in the daemon its steps 1-5 on the promotion gate's set, now
    and then."""

    every_n_files: int = Field(0, ge=0, description="Analyse after every N trained files (0: never). The gate set "
                                                    "needs training.promotion on.")
    sample: int | None = Field(None, gt=0, description="A stratified sample of this many gate items (none: all).")
    judge: Literal["fast", "llm"] = Field("fast", description="fast: the matcher and error codes; llm: providers.judge.")
    batch_size: int = Field(50, gt=0, description="Items per call of the llm judge.")
    embedding_model: str | None = Field(
        None, description="A local sentence-embedding model (a folder, or a name in the local Hugging Face cache; "
                          "never downloaded) to cluster the failures with, and to pick --queue's items; none: "
                          "TF-IDF.")


class TracesSection(Section):
    """Multi-pass correction traces: `train.py --traces`, and the live monitor with
    self_correction.max_turns above 1. Placeholders of a prompt: {question} {answer} {codes}; a prompt with
    {question} is asked afresh (it restates the question), one without continues the conversation."""

    policy: str = Field(
        "thompson", description="Who picks the reprompt: thompson (Thompson sampling), epsilon_greedy, or "
                                "fixed:<prompt id> (always that prompt on a wrong answer, stop on a right one).")
    epsilon: float = Field(0.1, ge=0, le=1, description="epsilon_greedy: share of random choices.")
    token_cost: float = Field(0.001, ge=0, description="lambda of the reward: delta accuracy - lambda x tokens.")
    max_turns: int = Field(5, ge=1, description="Most reprompts per question with --traces.")
    max_new_tokens: int = Field(512, gt=0, description="Most new tokens per answer of a trace.")
    concurrency: int = Field(16, gt=0, description="Traces in flight at once (a local model batches them).")
    seed: int = Field(0, description="Seed of the policy's random choices.")
    train: bool = Field(False, description="Turn traces into training examples (wrong -> right, and right kept "
                                           "under a reprompt) and queue them like self-correction files. Off: "
                                           "not yet shown to help (docs/experiments/traces.md).")
    prompts: dict[str, str] = Field(
        default_factory=lambda: {
            "p_are_you_sure": "Are you sure about {answer}? Check your work and give your final answer.",
            "p_error_codes": TemplatesSection().correction.replace("{previous}", "{answer}"),
            "p_step_by_step": "Let's solve it again step by step, then give the final answer.",
            "p_recheck_numbers": "Recheck every number and calculation in your answer ({answer}), then give the "
                                 "final answer.",
            "p_restate_question": "First restate the question in your own words, then answer it again: {question}",
        },
        description="The reprompts the policy chooses from, by id; 'stop' (no reprompt) is always there too.")

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        if value not in ("thompson", "epsilon_greedy") and not value.startswith("fixed:"):
            raise ValueError("must be thompson, epsilon_greedy or fixed:<prompt id>")
        return value

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("needs at least one prompt")
        if "stop" in value:
            raise ValueError("'stop' is reserved (the policy's choice to end a trace); name the prompt otherwise")
        for pid, template in value.items():
            try:
                checked_template(template, allowed={"question", "answer", "codes"})
            except ValueError as e:
                raise ValueError(f"{pid}: {e}") from None
        return value

    @model_validator(mode="after")
    def _fixed_known(self):
        if self.policy.startswith("fixed:") and self.policy[6:] not in (*self.prompts, "stop"):
            raise ValueError(f"policy {self.policy!r}: no prompt {self.policy[6:]!r} in traces.prompts "
                             f"({', '.join(self.prompts)})")
        return self


class TaskSection(Section):
    """A task of the evaluation harness: a JSON or JSONL file of {id, question, answer, context?, domain?}."""

    file: str = Field(..., description="The task file (relative paths are under the root).")
    domain: str = Field("", description="The domain of its items that name none (ACE ranks lessons by domain).")


class AceSection(Section):
    """ACE: `--eval TASK --mode ace`, an evolving playbook of lessons in the generator's context."""

    top_k: int = Field(5, gt=0, description="Lessons put before each question (the best of its task, else domain).")
    max_lessons: int = Field(3, gt=0, description="Most lessons taken from one reflection.")
    max_entries: int = Field(50, gt=0, description="The playbook is pruned to this many lessons (by score).")
    dedupe_threshold: float = Field(0.85, gt=0, le=1, description="A new lesson this similar (normalised text) to "
                                                                 "one of its task merges into it.")
    batch_size: int = Field(1, gt=0, description="Items answered together with the same playbook (1: the "
                                                 "playbook changes before the next item, as in the seed).")
    generator: str = Field("local", description="Who answers: local (the model and --adapter) or a providers name.")
    reflector: str = Field("local", description="Who writes lessons: local or a providers name (a strong model "
                                                "is the interesting case).")
    reflector_max_tokens: int = Field(256, gt=0, description="Most new tokens of a reflection.")
    generator_prompt: str = Field(
        "Lessons learned from earlier questions:\n{lessons}\n\n{prompt}",
        description="The generator's prompt when the playbook has lessons; {prompt} is the item as baseline asks it.")
    reflector_prompt: str = Field(
        "A student answered this question wrong.\n\n{question}\n\nStudent's answer: {answer}\nCorrect answer: "
        "{golden}\nError indicators: {codes}\n\nWrite up to 3 short, specific lessons that would help answer "
        "similar questions correctly. One lesson per line, numbered.",
        description="The reflector's prompt: {question} {answer} {golden} {codes}.")
    in_daemon: bool = Field(False, description="The live monitor's wrong answers also feed the playbook "
                                               "(data/ace/playbook.jsonl).")

    @field_validator("generator_prompt", "reflector_prompt")
    @classmethod
    def _ace_placeholders(cls, value: str, info) -> str:
        if info.field_name == "generator_prompt":
            return checked_template(value, allowed={"lessons", "prompt"}, required={"lessons", "prompt"})
        return checked_template(value, allowed={"question", "answer", "golden", "codes"})


class ServeSection(Section):
    """`train.py --serve`: the OpenAI-compatible server of the current adapter, and the hook that tells vLLM."""

    host: str = Field("127.0.0.1", description="Address to listen on; 0.0.0.0 exposes the model to the network.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on (0: any free port, printed at start).")
    api_key_env: str | None = Field(
        None, description="Name of an environment variable holding a bearer token every API request must carry.")
    max_tokens: int = Field(1024, gt=0, description="Most new tokens per completion (also the default).")
    max_n: int = Field(8, gt=0, description="Most completions one request may ask for (n).")
    max_batch: int = Field(16, gt=0, description="Completions decoded together.")
    record: bool = Field(True, description="Keep each exchange served (served/exchanges/), so feedback can name it "
                                           "by id; off: nothing is kept, and feedback must carry the exchange.")
    record_max_bytes: int = Field(64 * 2**20, gt=0, description="Size at which a record file is closed and a new "
                                                                "one begun.")
    keep_days: float = Field(30.0, gt=0, description="Record files older than this are deleted (feedback already "
                                                     "taken by the daemon is kept with its exchange).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="The weights' precision while serving: auto is bf16 where the hardware computes it "
        "natively, else as loaded; float32 gives the log-probs of an fp32 forward (as `lm_eval --model hf`).")
    max_waiting: int = Field(256, gt=0, description="Most completions waiting for a slot; past it a request is "
                                                    "answered 429 with Retry-After, and nothing accepted is dropped.")
    max_body_bytes: int = Field(4 * 2**20, gt=0, description="Largest request body, checked before it is read (413).")
    allowed_hosts: list[str] = Field(
        ["localhost", "127.0.0.1", "::1"], description="Host headers answered while no API key is set (a web page "
        "cannot then reach a loopback server through DNS rebinding); add the names clients use, or set a key.")
    notify_vllm_url: str | None = Field(
        None, description="A vLLM server (http://host:port) told of each promoted adapter through "
                          "/v1/load_lora_adapter; it needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True.")
    vllm_lora_prefix: str = Field(
        "selfcorrect", description="Each version is loaded into vLLM as <prefix>-<version>, e.g. selfcorrect-v0007.")


class FeedbackSection(Section):
    """Learning from use: verdicts and corrections of served answers become training (docs/feedback.md)."""

    enabled: bool = Field(True, description="Turn feedback (POST /v1/feedback, inbox/feedback/) into training files.")
    max_chars: int = Field(20_000, gt=0, description="Longest correction or note accepted, in characters.")
    min_examples: int = Field(1, gt=0, description="Records that make a feedback training file at once.")
    max_wait_seconds: float = Field(
        0.0, ge=0, description="Longest a record waits for more before a smaller file is written anyway.")
    queue: Literal["high", "normal", "low"] = Field(
        "high", description="Queue of the feedback training files (high: a correction lands before other files).")
    correction_repeats: int = Field(
        3, ge=1, le=100, description="Times a correction's records are repeated in its training file: a few "
                                     "records are otherwise a few optimizer steps (bench/feedback.py measures it).")


class ProviderSection(Section):
    """A model that judges, or answers and reflects for ACE: the local one, or an OpenAI-compatible API."""

    kind: Literal["local", "openai"] = Field(..., description="local: this root's model; openai: an HTTP API.")
    adapter: str = Field("current", description="local: current, base, or a version such as v0003.")
    base_url: str | None = Field(None, description="openai: the API's address, e.g. http://127.0.0.1:8000/v1.")
    model: str | None = Field(None, description="openai: the model name the API knows.")
    api_key_env: str | None = Field(None, description="openai: environment variable holding the API key.")
    timeout_seconds: float = Field(120.0, gt=0, description="openai: per request.")
    max_retries: int = Field(3, ge=0, description="openai: retries with backoff on connection errors, 429 and 5xx.")
    max_concurrency: int = Field(8, gt=0, description="openai: requests in flight at once.")

    @model_validator(mode="after")
    def _needs(self):
        if self.kind == "openai" and not (self.base_url and self.model):
            raise ValueError("kind 'openai' needs base_url and model")
        return self


class Config(Section):
    eval_steps: int = Field(50, gt=0, description="Live inference every N global steps.")
    num_eval_samples: int = Field(4, gt=0, description="Validation questions per evaluation.")
    eval_max_tokens: int = Field(2048, gt=0, description="Most new tokens per generated answer.")
    self_correction: SelfCorrectionSection = Field(
        default_factory=SelfCorrectionSection, description="Turning wrong evaluation answers into training data.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The base model.")
    lora: LoraSection = Field(default_factory=LoraSection, description="The LoRA adapter.")
    training: TrainingSection = Field(default_factory=TrainingSection, description="Optimization, per file.")
    validation: ValidationSection = Field(
        default_factory=ValidationSection, description="Questions for live evaluation.")
    daemon: DaemonSection = Field(default_factory=DaemonSection, description="Watching and queueing files.")
    practice: PracticeSection = Field(default_factory=PracticeSection, description="Verified self-training.")
    analysis: AnalysisSection = Field(default_factory=AnalysisSection, description="Failure analysis in the daemon.")
    traces: TracesSection = Field(default_factory=TracesSection, description="Multi-pass correction traces.")
    tasks: dict[str, TaskSection] = Field(
        default_factory=dict, description="Tasks of the evaluation harness by name, beside the built-ins "
                                          "(tatqa_tiny, medqa_tiny, iot_tiny, word_problems, comparisons).")
    ace: AceSection = Field(default_factory=AceSection, description="ACE: the playbook of lessons.")
    serve: ServeSection = Field(default_factory=ServeSection, description="The OpenAI-compatible server.")
    feedback: FeedbackSection = Field(default_factory=FeedbackSection, description="Learning from use.")
    providers: dict[str, ProviderSection] = Field(
        default_factory=dict, description="Named models for the seed systems, e.g. {\"judge\": {\"kind\": "
                                          "\"openai\", ...}}.")
    experimental: ExperimentalSection = Field(
        default_factory=ExperimentalSection, description="Switches for studies; off by default.")

    @model_validator(mode="after")
    def _cross_checks(self):
        if self.model.load_in_4bit and self.training.precision == "fp32":
            raise ValueError("model.load_in_4bit: needs training.precision auto, bf16 or fp16")
        return self


# Keys that moved: an old config names the new place instead of failing as an unknown key.
MOVED = {f"{section}.{name}": f"experimental.{name}" for section, names in {
    "self_correction": ("first_wrong_value", "confirm_right_answers", "confirm_golden_answers", "correction_repeats",
                        "reject_initial_attempts", "reject_golden_confirmations"),
    "training": ("unlikelihood_weight", "preference_weight", "preference_beta"),
}.items() for name in names} | {"self_correction.practice_samples": "experimental.training_file_questions",
                                "experimental.practice_samples": "experimental.training_file_questions"}


def _describe(err: dict) -> str:
    """One line per pydantic error, phrased as what the value must be."""
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "extra_forbidden" and loc in MOVED:
        return f"{loc}: moved to {MOVED[loc]}; put it in the \"experimental\" section"
    if kind == "extra_forbidden":
        return f"{loc}: unknown key; remove it or fix its spelling"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        return f"{loc}: must be {op} {bound} (got {err['input']!r})"
    if kind == "literal_error":
        return f"{loc}: must be one of {ctx.get('expected')} (got {err['input']!r})"
    if kind == "value_error":
        message = str(ctx.get("error", err["msg"]))
        return message if loc == "(top level)" else f"{loc}: {message}"
    return f"{loc}: {err['msg'].lower()} (got {err['input']!r})"


def parse_config(data: dict, source: str = "config.json") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, [_describe(err) for err in e.errors()]) from None


def load_config(path: Path | None) -> Config:
    """Read and validate a config file; a missing file means all defaults."""
    if path is None or not Path(path).exists():
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, [f"cannot read: {e}"]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(path, [f"line {e.lineno} column {e.colno}: invalid JSON ({e.msg})"]) from None
    if not isinstance(data, dict):
        raise ConfigError(path, ["(top level): must be a JSON object"])
    return parse_config(data, str(path))


def locate(config_arg: Path | None, root_arg: Path | None) -> tuple[Path, Path]:
    """(config file, root): --config defaults to ./config.json, --root to the config file's folder."""
    config_path = Path(config_arg) if config_arg else Path("config.json")
    root = Path(root_arg) if root_arg else config_path.resolve().parent
    return config_path, root.resolve()


def names_hub_model(config: Config, root: Path) -> bool:
    """True when model.name_or_path is a hub id: the one case in which loading may use the network."""
    name = config.model.name_or_path
    if name in BUILTIN_MODELS or name.startswith((".", "/", "~")):
        return False
    return not (Path(root) / Path(name).expanduser()).exists()


def config_diff(old: Config, new: Config) -> list[str]:
    """Changed keys as 'a.b: old -> new' lines, for the log."""
    out: list[str] = []

    def walk(a, b, prefix):
        for key in a:
            if isinstance(a[key], dict):
                walk(a[key], b[key], f"{prefix}{key}.")
            elif a[key] != b[key]:
                out.append(f"{prefix}{key}: {a[key]!r} -> {b[key]!r}")

    walk(old.model_dump(), new.model_dump(), "")
    return out

"""Part 2: instruction-tuning SmolLM2 with a LoRA adapter, and what the adapter changed.

What it teaches: fifty instruction/response pairs in one fixed voice ("Hoot hoot! … Stay
curious!") are enough for sixteen LoRA steps to make that voice likely — also for prompts
the adapter never saw. LoRA leaves the model's weights alone and learns, beside each attention
projection W (q, k, v, o), two thin matrices B·A of rank r, so the layer computes Wx + (α/r)·BAx:
about half a percent of the parameters. Only the response tokens are learned (the prompt's
labels are -100). The adapter can be switched off (the base model answers), merged into W
(the same answers at no extra inference cost) or dropped.

Everything runs on a private copy of the shared model; greedy decoding, so the same prompt
gives the same answer and only the adapter differs between "before" and "after".
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field, replace

import torch
from transformers import DataCollatorForSeq2Seq

from models.chat import encode_chat, eos_ids, user_message
from models.finetune.control import OPTIMIZERS, Emit, TrainingStopped, seeded
from models.finetune.data import ASSETS
from models.finetune.encoder import load_weights, parameter_counts, trained_weights

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
# rank <= 16: the session keeps the adapter; at r = 16 on q/k/v/o it is 1.8M parameters, 7.4 MB (r = 8: 3.7 MB).
LIMITS = {"rank": (1, 16), "steps": (4, 80), "learning_rate": (1e-5, 1e-2), "batch_size": (1, 8),
          "seed": (0, 2**31 - 1)}
MAX_SEQ_TOKENS = 96  # prompt with its chat template + response
MAX_NEW_TOKENS = 40
MAX_PROMPT_CHARS = 500
DEMO_PROMPTS = 3  # held-out prompts answered before and after


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 8
    learning_rate: float = 2e-3
    steps: int = 16  # with 4 evaluations, a default run stays near 55 s at one thread (bench/finetune.py)
    batch_size: int = 4
    seed: int = 0
    optimizer: str = "adamw"


def clamp(cfg: LoraSettings) -> tuple[LoraSettings, list[str]]:
    notes, values = [], {}
    for name, (low, high) in LIMITS.items():
        value = getattr(cfg, name)
        values[name] = type(low)(min(max(value, low), high))
        if values[name] != value:
            notes.append(f"{name.replace('_', ' ')} {value} is outside {low}–{high}; using {values[name]}.")
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {cfg.optimizer!r}; choose {' or '.join(OPTIMIZERS)}.")
    return replace(cfg, **values), notes


def load_instructions() -> tuple[list[dict], list[dict]]:
    """(training pairs, held-out pairs), each {"prompt", "response"}."""
    data = json.loads((ASSETS / "owl_instructions.json").read_text(encoding="utf-8"))
    return data["train"], data["heldout"]


def example(tokenizer, prompt: str, response: str) -> dict:
    """Token ids of prompt + response + end-of-turn; labels mask the prompt with -100."""
    prompt_ids = encode_chat(tokenizer, user_message(prompt))
    response_ids = tokenizer(response + "<|im_end|>", add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + response_ids)[:MAX_SEQ_TOKENS]
    labels = ([-100] * len(prompt_ids) + response_ids)[:MAX_SEQ_TOKENS]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


@dataclass
class LoraRun:
    config: LoraSettings
    history: list[dict]
    trainable: int
    total: int
    before: list[dict]  # {"prompt", "answer"} by the base model
    after: list[dict]  # the same prompts with the adapter
    probe: dict  # a held-out prompt's target response, per-token probability before and after
    heldout_loss: tuple[float, float]  # mean loss per response token on held-out prompts, before and after
    best_step: int
    steps_done: int
    stopped: bool
    seconds: float
    adapter: dict = field(repr=False, default_factory=dict)

    def summary(self) -> dict:
        return {"rank": self.config.rank, "learning_rate": self.config.learning_rate, "steps": self.steps_done,
                "seed": self.config.seed, "trainable_parameters": self.trainable, "total_parameters": self.total,
                "trainable_percent": round(100 * self.trainable / self.total, 4),
                "heldout_loss_before": round(self.heldout_loss[0], 4),
                "heldout_loss_after": round(self.heldout_loss[1], 4),
                "before": self.before, "after": self.after, "best_step": self.best_step, "stopped": self.stopped,
                "seconds": round(self.seconds, 2),
                "loss_history": [[e["step"], round(e["loss"], 5)] for e in self.history if e["kind"] == "loss"],
                "heldout_history": [[e["step"], round(e["loss"], 5)] for e in self.history if e["kind"] == "eval"]}


def peft_copy(base_model, rank: int):
    """A private copy of the chat model with LoRA adapters (random A, zero B: it starts as the base)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(LORA_TARGETS),
                        task_type="CAUSAL_LM")
    return get_peft_model(copy.deepcopy(base_model), config)


@torch.no_grad()
def answer(model, tokenizer, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    """Greedy answer to one user message."""
    ids = torch.tensor([encode_chat(tokenizer, user_message(prompt))])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=max_new_tokens, eos_token_id=sorted(eos_ids(tokenizer, model)),
                         pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


@torch.no_grad()
def token_probs(model, tokenizer, prompt: str, response: str) -> list[tuple[str, float]]:
    """Each response token with the probability the model gives it after the prompt and the
    tokens before it (teacher forcing)."""
    item = example(tokenizer, prompt, response)
    ids = torch.tensor([item["input_ids"]])
    probs = torch.softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    targets = ids[0, 1:]
    picked = probs[torch.arange(len(targets)), targets]
    start = sum(1 for label in item["labels"] if label == -100) - 1  # logits at i predict token i + 1
    return [(tokenizer.decode([int(t)]), float(p)) for t, p in zip(targets[start:], picked[start:], strict=True)]


@torch.no_grad()
def mean_loss(model, tokenizer, pairs: list[dict]) -> float:
    """Mean cross-entropy per response token over (prompt, response) pairs."""
    losses = [model(**{k: torch.tensor([v]) for k, v in example(tokenizer, p["prompt"], p["response"]).items()}).loss
              for p in pairs]
    return float(torch.stack(losses).mean())


def train_lora(lm, cfg: LoraSettings, *, stop: threading.Event | None = None, emit: Emit | None = None,
               demo_prompts: int = DEMO_PROMPTS, max_new_tokens: int = MAX_NEW_TOKENS) -> LoraRun:
    """Teach a LoRA copy of `lm` (the shared CausalLM, never modified) the bundled answer style;
    `demo_prompts` held-out prompts are answered before and after."""
    from models.finetune.trainer import LiveCallback, run_trainer  # the Trainer loads with the first run

    start = time.perf_counter()
    cfg, _ = clamp(cfg)
    stop, emit = stop or threading.Event(), emit or (lambda event: None)
    train, heldout = load_instructions()
    tokenizer = copy.deepcopy(lm.tokenizer)  # fast tokenizers are not safe to share between threads
    demo = heldout[:demo_prompts]
    emit({"kind": "status", "text": "The base model answers the held-out prompts (before)…"})
    before = [{"prompt": p["prompt"], "answer": answer(lm.model, tokenizer, p["prompt"], max_new_tokens)}
              for p in demo]
    probe = {"prompt": heldout[0]["prompt"], "response": heldout[0]["response"],
             "before": token_probs(lm.model, tokenizer, heldout[0]["prompt"], heldout[0]["response"])}
    loss_before = mean_loss(lm.model, tokenizer, heldout)
    with seeded(cfg.seed):
        model = peft_copy(lm.model, cfg.rank)
    trainable, total = parameter_counts(model)
    emit({"kind": "status", "text": f"Training {trainable:,} LoRA parameters of {total:,}…"})
    callback = LiveCallback(model, emit, stop, "loss", trained_weights, greater_is_better=False)
    if stop.is_set():
        raise TrainingStopped("Stopped before training began: nothing was trained.")
    run_trainer(model, train_dataset=[example(tokenizer, p["prompt"], p["response"]) for p in train],
                eval_dataset=[example(tokenizer, p["prompt"], p["response"]) for p in heldout],
                collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
                compute_metrics=None, callback=callback, seed=cfg.seed, optimizer=cfg.optimizer,
                learning_rate=cfg.learning_rate, steps=cfg.steps, batch_size=cfg.batch_size,
                eval_every=max(1, cfg.steps // 4), eval_batch_size=len(heldout), loss_only=True)
    if callback.best is not None:
        load_weights(model, callback.best.weights)
    model.eval()
    emit({"kind": "status", "text": "The tuned model answers the same prompts (after)…"})
    after = [{"prompt": p["prompt"], "answer": answer(model, tokenizer, p["prompt"], max_new_tokens)} for p in demo]
    probe["after"] = token_probs(model, tokenizer, probe["prompt"], probe["response"])
    return LoraRun(config=cfg, history=callback.history, trainable=trainable, total=total, before=before, after=after,
                   probe=probe, heldout_loss=(loss_before, mean_loss(model, tokenizer, heldout)),
                   best_step=callback.best.step if callback.best else 0,
                   steps_done=max((e["step"] for e in callback.history), default=0),
                   stopped=callback.stopped_at is not None or stop.is_set(), seconds=time.perf_counter() - start,
                   adapter=callback.best.weights if callback.best else trained_weights(model))


def with_adapter(lm, run: LoraRun):
    """A private LoRA copy of the model carrying a session's trained adapter, in eval mode."""
    with seeded(run.config.seed):  # creating adapters draws random numbers, then the trained ones replace them
        model = peft_copy(lm.model, run.config.rank)
    return load_weights(model, run.adapter).eval()


def compare(lm, run: LoraRun, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """One prompt answered by the base model, with the adapter, and with the adapter merged into the
    weights: the merged model has the base's parameter count and (up to rounding) the adapter's logits."""
    tokenizer = copy.deepcopy(lm.tokenizer)
    model = with_adapter(lm, run)
    ids = torch.tensor([encode_chat(tokenizer, user_message(prompt))])
    with torch.no_grad():
        adapter_logits = model(input_ids=ids).logits
        with model.disable_adapter():
            base_answer = answer(model, tokenizer, prompt, max_new_tokens)
        adapter_answer = answer(model, tokenizer, prompt, max_new_tokens)
        with_adapter_params = parameter_counts(model)[1]
        merged = model.merge_and_unload()
        merged_logits = merged(input_ids=ids).logits
        merged_answer = answer(merged, tokenizer, prompt, max_new_tokens)
    return {"prompt": prompt, "base": base_answer, "adapter": adapter_answer, "merged": merged_answer,
            "parameters_with_adapter": with_adapter_params, "parameters_merged": parameter_counts(merged)[1],
            "max_logit_difference": float((adapter_logits - merged_logits).abs().max())}

"""Chat with a causal LM through its chat template, streaming the answer token by token.

What it shows: a chat is one long prompt. The model's chat template turns the messages into
that prompt, and the context budget (prompt + answer tokens) limits how much history fits,
so the oldest turns are dropped first.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from models.generation.priority import has_priority
from models.generation.requests import GenerationRequest, Sampling
from models.generation.service import ServedLM, cumulative_text
from models.registry import CausalLM

SEEDED_SAMPLING = threading.Lock()  # held while a sampled generate() draws from torch's global RNG


class PromptTooLong(ValueError):
    """Even the newest message alone does not fit the context budget."""


@dataclass(frozen=True)
class ChatPrompt:
    text: str  # the exact text the model sees, chat template applied
    input_ids: list[int]
    dropped_turns: int  # oldest user/assistant exchanges left out to fit the budget

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)


def message_text(content) -> str:
    """Text of a chat message's content: a string, a typed part ({"text"} or {"value"}), a list of
    parts (Gradio 6), or None."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("value") or "")
    if isinstance(content, (list, tuple)):
        return "".join(message_text(part) for part in content)
    return "" if content is None else str(content)


def chat_text(tokenizer, messages: list[dict]) -> str:
    """The prompt text the model sees for `messages`: its chat template with the assistant's turn
    opened, or the last message's plain text for a tokenizer without a template."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return message_text(messages[-1]["content"]) if messages else ""


def encode_chat(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of `chat_text(messages)`; the template already holds any special tokens."""
    return tokenizer(chat_text(tokenizer, messages), add_special_tokens=False)["input_ids"]


def user_message(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def eos_ids(tokenizer, model) -> set[int]:
    """Every token id that ends generation: the tokenizer's EOS and the generation config's list."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {int(i) for i in ids if i is not None}


def strip_special_tokens(tokenizer, text: str) -> str:
    """`text` without the tokenizer's special tokens (e.g. SmolLM2's closing `<|im_end|>`), as
    `decode(..., skip_special_tokens=True)` would give: for results that leave the app."""
    for token in tokenizer.all_special_tokens:
        text = text.replace(token, "")
    return text


def count_tokens(lm: CausalLM, text: str) -> int:
    return len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])


def truncate_tokens(lm: CausalLM, text: str, max_tokens: int) -> tuple[str, int]:
    """Cut `text` to at most `max_tokens` tokens; returns (text, original token count)."""
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text, len(ids)
    return lm.tokenizer.decode(ids[:max_tokens]), len(ids)


def _render(lm: CausalLM, messages: list[dict]) -> tuple[str, list[int]]:
    text = chat_text(lm.tokenizer, messages)
    return text, lm.tokenizer(text, add_special_tokens=False)["input_ids"]


def build_prompt(lm: CausalLM, messages: list[dict], *, max_new_tokens: int, context_tokens: int) -> ChatPrompt:
    """Apply the chat template, dropping the oldest exchanges until prompt + answer fit."""
    budget = context_tokens - max_new_tokens
    system = [m for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    dropped = 0
    text, ids = _render(lm, system + turns)
    while len(ids) > budget and len(turns) > 1:
        # An exchange is a user message and the assistant reply that follows it.
        step = 2 if len(turns) > 2 and turns[1]["role"] == "assistant" else 1
        turns = turns[step:]
        dropped += 1
        text, ids = _render(lm, system + turns)
    if len(ids) > budget:
        raise PromptTooLong(
            f"The message needs {len(ids)} tokens but only {budget} fit "
            f"({context_tokens} context - {max_new_tokens} for the answer).")
    return ChatPrompt(text, ids, dropped)


class _StopWhenSet(StoppingCriteria):
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


def generation_kwargs(lm: CausalLM, prompt: ChatPrompt, *, max_new_tokens: int, temperature: float) -> dict:
    """The `model.generate` arguments for a prompt: greedy at temperature 0, else sampling."""
    input_ids = torch.tensor([prompt.input_ids])
    kwargs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "max_new_tokens": max_new_tokens,
        "pad_token_id": lm.tokenizer.pad_token_id or lm.tokenizer.eos_token_id,
        "do_sample": temperature > 0,
    }
    if temperature > 0:
        kwargs["temperature"] = temperature
    return kwargs


def stream_answer(lm: CausalLM, prompt: ChatPrompt, *, max_new_tokens: int = 256, temperature: float = 0.0,
                  seed: int = 0, stop: threading.Event | None = None) -> Iterator[str]:
    """Yield the answer text so far after each generated token (cumulative).

    A ServedLM's answer is decoded in the app's generation service, beside other sessions' answers
    (models/generation); otherwise generate() runs in a worker thread feeding a TextIteratorStreamer.
    Closing the iterator early (a Stop click) or setting `stop` ends it at the next token.
    """
    halt = stop or threading.Event()
    if isinstance(lm, ServedLM):
        request = GenerationRequest(tuple(prompt.input_ids), max_new_tokens, frozenset(eos_ids(lm.tokenizer, lm.model)),
                                    Sampling(temperature=temperature, seed=seed), stop=halt, priority=has_priority())
        try:
            yield from cumulative_text(lm.tokenizer, lm.generation.submit(lm.model, request))
        finally:
            halt.set()  # a closed iterator frees its batch row at the next step
        return
    streamer = TextIteratorStreamer(lm.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300)
    kwargs = generation_kwargs(lm, prompt, max_new_tokens=max_new_tokens, temperature=temperature)
    kwargs.update(streamer=streamer, stopping_criteria=StoppingCriteriaList([_StopWhenSet(halt)]))
    failure: list[BaseException] = []

    def work() -> None:
        try:
            # generate() samples from torch's process-wide RNG: seeded sampled answers take turns,
            # so nothing else draws from it meanwhile and a seed always gives the same text.
            with torch.no_grad(), (SEEDED_SAMPLING if kwargs["do_sample"] else contextlib.nullcontext()):
                torch.manual_seed(seed)
                lm.model.generate(**kwargs)
        except BaseException as exc:  # re-raised in the caller's thread below
            failure.append(exc)
            streamer.end()

    worker = threading.Thread(target=work, name="generate", daemon=True)
    worker.start()
    text = ""
    try:
        for piece in streamer:
            if piece:
                text += piece
                yield text
    finally:
        halt.set()
        worker.join(timeout=30)
    if failure:
        raise failure[0]

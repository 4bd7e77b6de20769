"""What a quantized-vs-full comparison accepts, checked once: the model, the prompt, the token count.

The prompt is bounded in characters before it is tokenized and in tokens after (2,000 characters
of emoji are ~8,000 SmolLM2 tokens, and a comparison runs every scheme over them); the encoder
side truncates its input at the encoder's own maximum length.
Every check raises ValueError with a sentence the user can act on; the tab shows it as is.
"""

from __future__ import annotations

from models.registry import CHAT, ENCODER

MAX_NEW_TOKENS = 64
MAX_PROMPT_CHARS = 2000  # a comparison runs every model several times: keep it seconds, not minutes
MAX_PROMPT_TOKENS = 256  # the causal LM's prompt with its chat template


def check_request(model_key: str, prompt: str, max_new: int) -> tuple[str, int]:
    """(stripped prompt, token count) of a valid request; ValueError otherwise."""
    if model_key not in (CHAT, ENCODER):
        raise ValueError(f"Choose the model: {CHAT!r} or {ENCODER!r}.")
    if not prompt or not prompt.strip():
        raise ValueError("Type a prompt first.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"The prompt is {len(prompt)} characters; keep it under {MAX_PROMPT_CHARS} "
                         "so the comparison stays quick.")
    if not 1 <= int(max_new) <= MAX_NEW_TOKENS:
        raise ValueError(f"New tokens must be between 1 and {MAX_NEW_TOKENS}.")
    return prompt.strip(), int(max_new)


def check_prompt_tokens(n_tokens: int) -> None:
    """ValueError if the causal LM's prompt (chat template included) is over MAX_PROMPT_TOKENS."""
    if n_tokens > MAX_PROMPT_TOKENS:
        raise ValueError(f"The prompt is {n_tokens:,} tokens with the chat template; the comparison takes up to "
                         f"{MAX_PROMPT_TOKENS} so that every scheme answers in seconds. Shorten it.")

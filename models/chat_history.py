"""Chat history sent by a client, made safe before anything reads it.

The chat tabs take the conversation back from the browser (or from anyone calling the API) on
every turn, so it is input like any other: it can hold thousands of messages, megabytes of
text, long whitespace runs, odd roles or deeply nested parts. `cap_history` keeps the last
few user/assistant messages as plain {"role", "content": str} with bounded text, and is
called before any regex, tokenizer or model sees the history.
"""

from __future__ import annotations

MAX_MESSAGES = 40  # what the chat keeps showing; prompts use far fewer (the oldest are dropped to fit)
MAX_MESSAGE_CHARS = 4000  # a question is at most 2,000 characters; answers are a few hundred tokens
_ROLES = ("user", "assistant")


def bounded_text(content, max_chars: int) -> str:
    """The text of a message's content (a string, a {"text"|"value"} part, or a list of parts),
    at most `max_chars` long. Nested lists beyond one level are not text and are ignored."""
    if isinstance(content, str):
        return content[:max_chars]
    if isinstance(content, dict):
        part = content.get("text") or content.get("value") or ""
        return part[:max_chars] if isinstance(part, str) else ""
    if isinstance(content, (list, tuple)):
        text = ""
        for part in content[:64]:
            if len(text) >= max_chars:
                break
            if isinstance(part, (str, dict)):
                text += bounded_text(part, max_chars - len(text))
        return text
    return ""


def cap_history(history, *, max_messages: int = MAX_MESSAGES, max_chars: int = MAX_MESSAGE_CHARS) -> list[dict]:
    """The last `max_messages` user/assistant messages as {"role", "content": str}, each cut to
    `max_chars`; notes (messages with a metadata title), other roles and non-messages are dropped."""
    if not isinstance(history, (list, tuple)):
        return []
    kept: list[dict] = []
    for message in reversed(history):
        if len(kept) >= max_messages:
            break
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            continue
        metadata = message.get("metadata")
        if isinstance(metadata, dict) and metadata.get("title"):
            continue
        kept.append({"role": message["role"], "content": bounded_text(message.get("content"), max_chars)})
    return kept[::-1]

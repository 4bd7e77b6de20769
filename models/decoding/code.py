"""The playground's settings as `model.generate()` keyword arguments, and a copyable Python snippet.

`generate_kwargs` is the single translation from a DecodeConfig to transformers' names; the
bench and the tests call `generate()` with it, so the snippet is the code that was checked.
"""

from __future__ import annotations

from models.decoding.steps import BEAM, CONTRASTIVE, SAMPLING, DecodeConfig


def generate_kwargs(cfg: DecodeConfig) -> dict:
    """Keyword arguments that make `model.generate()` apply the same processors (cfg normalized)."""
    kw: dict = {"max_new_tokens": cfg.max_new_tokens}
    if cfg.strategy == SAMPLING:
        # top_k is passed even when 0: generate() would otherwise apply its default top_k=50
        kw.update(do_sample=True, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p)
        if cfg.min_p > 0:
            kw["min_p"] = cfg.min_p
        if cfg.typical_p < 1:
            kw["typical_p"] = cfg.typical_p
    else:
        kw["do_sample"] = False
    if cfg.strategy == BEAM:
        kw.update(num_beams=cfg.num_beams, length_penalty=cfg.length_penalty,
                  num_return_sequences=cfg.num_return_sequences)
    if cfg.strategy == CONTRASTIVE:
        kw.update(penalty_alpha=cfg.penalty_alpha, top_k=cfg.contrastive_k)
    if cfg.repetition_penalty != 1.0:
        kw["repetition_penalty"] = cfg.repetition_penalty
    if cfg.no_repeat_ngram_size > 0:
        kw["no_repeat_ngram_size"] = cfg.no_repeat_ngram_size
    return kw


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def python_snippet(prompt: str, cfg: DecodeConfig, model_id: str = "HuggingFaceTB/SmolLM2-135M-Instruct") -> str:
    """A self-contained script reproducing the current settings with plain transformers."""
    kw = generate_kwargs(cfg)
    lines = [
        "import torch",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f"tokenizer = AutoTokenizer.from_pretrained({model_id!r})",
        f"model = AutoModelForCausalLM.from_pretrained({model_id!r})",
        f"prompt = {prompt!r}",
    ]
    if cfg.chat_template:
        lines += ["messages = [{'role': 'user', 'content': prompt}]",
                  "text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)",
                  "inputs = tokenizer(text, add_special_tokens=False, return_tensors='pt')"]
    else:
        lines.append("inputs = tokenizer(prompt, return_tensors='pt')")
    if cfg.strategy == SAMPLING:
        lines += ["",
                  "# Same distribution at every step; generate() draws with torch.multinomial, so the",
                  "# exact tokens differ from the playground, which shows its uniform draw on a strip.",
                  f"torch.manual_seed({cfg.seed})"]
    extra = ""
    if cfg.strategy == CONTRASTIVE:
        lines += ["",
                  "# transformers 5 moved contrastive search to the hub (needs internet and trust_remote_code)."]
        extra = "\n    custom_generate='transformers-community/contrastive-search', trust_remote_code=True,"
    if cfg.strategy == BEAM:
        kw.update(return_dict_in_generate=True, output_scores=True)
    args = "".join(f"\n    {k}={_fmt(v)}," for k, v in kw.items())
    lines += ["", f"out = model.generate(**inputs,{args}{extra}\n)"]
    if cfg.strategy == BEAM:
        lines += ["n = inputs.input_ids.shape[1]",
                  "for seq, score in zip(out.sequences, out.sequences_scores):",
                  "    print(f'{score:.3f}', tokenizer.decode(seq[n:], skip_special_tokens=True))"]
    else:
        lines.append("print(tokenizer.decode(out[0, inputs.input_ids.shape[1]:], skip_special_tokens=True))")
    return "\n".join(lines) + "\n"

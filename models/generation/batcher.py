"""Continuous batching of free-running generation: many requests decode in one forward pass.

Why hand-written: a 135M model on a CPU is limited by reading its weights for every forward
pass, so one pass over 8 rows costs little more than one over a single row. `generate()` batches
only requests that start together and keeps every row until the longest one ends, and samples all
rows from one global RNG. transformers' own continuous-batching manager (`init_continuous_batching`,
paged cache) admits requests while others run, but it has one sampling configuration and one RNG
per manager (no per-request seed), and on a 2-core CPU it was no faster than this loop
(bench/batching.py, `engines`). This module is only the scheduling: the model's own forward pass, its
DynamicCache and attention masks, and transformers' LogitsProcessors (models/generation/sampling.py)
do the work.

How a step goes, in one worker thread:
1. Admit: requests waiting in the inbox join in arrival order while the batch has a free row and
   the token budget allows (the cache is padded to its longest row, so rows x the longest
   prompt + max new tokens must fit). Each newcomer is
   prefilled alone (exactly as it would be without neighbours), its first token is streamed at
   once, and its KV cache is appended to the batch's cache, left-padded to a common length.
2. Decode: one forward pass over every running row (their last tokens, a 2-D attention mask that
   hides each row's padding, per-row position ids), then each row picks its next token with its
   own sampler and streams it.
3. Free: rows that hit an end token or their length, and rows whose caller pressed Stop or went
   away, leave the batch before the next pass; padding columns no row needs any more are cut.

Nothing fails silently: a failing prefill fails its own request, a failing decode step fails the
rows of that step, and anything else fails every waiting request before the worker stops (the
next request starts a new worker).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from models.generation.requests import GenerationRequest, ServiceClosed, TokenBudgetExceeded, TokenStream
from models.generation.sampling import RowSampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchLimits:
    max_batch_size: int = 8  # rows decoded in one forward pass
    max_tokens: int = 8192  # cache positions: rows x the longest row's prompt + max new tokens
    join_wait_s: float = 0.005  # an idle worker waits this long for neighbours before its first pass
    threads: int = 0  # torch intra-op threads of the worker; 0 = the count of the thread that starts it

    def __post_init__(self):
        if self.max_batch_size < 1 or self.max_tokens < 2 or self.join_wait_s < 0 or self.threads < 0:
            raise ValueError(f"Invalid batch limits: {self}")


@dataclass(eq=False)
class _Row:
    request: GenerationRequest
    stream: TokenStream
    sampler: RowSampler
    tokens: list[int] = field(default_factory=list)  # prompt + answer so far
    generated: int = 0


def _pad_left(tensor: torch.Tensor, columns: int, dim: int) -> torch.Tensor:
    if columns == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class ContinuousBatcher:
    """One model's batched decoding loop. `submit` from any thread; one worker thread runs the model."""

    def __init__(self, model, limits: BatchLimits = BatchLimits(), name: str = "generation-batcher"):
        if getattr(model.config, "sliding_window", None) and getattr(model.config, "use_sliding_window", True):
            raise ValueError("The batcher pads caches on the left; sliding-window attention is not supported.")
        self.model = model
        self.limits = limits
        self.name = name
        self._cond = threading.Condition()
        self._inbox: collections.deque[TokenStream] = collections.deque()
        self._closing = False
        self._thread: threading.Thread | None = None
        # Batch state, touched only by the worker thread.
        self._rows: list[_Row] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # [rows, cache length]: 1 = a real token, 0 = padding
        self._next: torch.Tensor | None = None  # [rows]: each row's last token, fed at the next pass
        self.steps = 0  # decode passes run (for tests and benches)
        self.max_rows_seen = 0
        self.worker_threads = 0  # torch threads the worker runs with, once started

    # ---- any thread ---------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> TokenStream:
        """Queue a request; its tokens arrive on the returned stream."""
        if request.reserved_tokens > self.limits.max_tokens:
            raise TokenBudgetExceeded(
                f"This request needs {request.reserved_tokens} tokens ({len(request.prompt_ids)} in the prompt + "
                f"{request.max_new_tokens} for the answer) but the generation service holds at most "
                f"{self.limits.max_tokens} at once (GENAI_LAB_BATCH_TOKENS). Shorten the input or ask for fewer "
                "new tokens.")
        stream = TokenStream(request, worker_alive=self.is_alive)
        with self._cond:
            if self._closing:
                raise ServiceClosed("The generation service is shut down.")
            self._inbox.append(stream)
            if not self.is_alive():
                self._start_worker()
            self._cond.notify_all()
        return stream

    def _start_worker(self) -> None:
        """Start the worker with its own torch thread count. torch keeps the count per thread once a
        thread has used it, but torch.set_num_threads also sets the default that threads created
        later start from; so the worker sets its count, then this thread sets the default back to
        its own count (the app's share for each model job, models/hardware.intra_op_threads)."""
        own = torch.get_num_threads()
        threads_set = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(threads_set,), name=self.name, daemon=True)
        self._thread.start()
        if self.limits.threads and self.limits.threads != own:
            threads_set.wait(timeout=30)
            torch.set_num_threads(own)

    def is_alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def running(self) -> int:
        return len(self._rows)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker; requests still waiting or running end with ServiceClosed."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # ---- worker thread ------------------------------------------------------------------
    def _run(self, threads_set: threading.Event) -> None:
        torch.get_num_threads()  # takes the default now, so the count below is not reset at first use
        if self.limits.threads:
            torch.set_num_threads(self.limits.threads)
        self.worker_threads = torch.get_num_threads()
        threads_set.set()
        try:
            with torch.inference_mode():
                while True:
                    newcomers = self._take_newcomers()
                    if newcomers is None:
                        break
                    for stream in newcomers:
                        self._admit(stream)
                    self._drop_finished()
                    if self._rows:
                        self._decode_step()
                        self._drop_finished()
            self._fail_all(ServiceClosed("The generation service was shut down before this answer finished."))
        except BaseException as exc:  # the worker never dies silently: every waiting caller gets the error
            log.exception("Generation worker failed; failing every waiting request")
            self._fail_all(exc, retire=True)
            if not isinstance(exc, Exception):
                raise

    def _take_newcomers(self) -> list[TokenStream] | None:
        """Streams to admit now, in arrival order; None once closing. Blocks while there is no work."""
        with self._cond:
            if not self._rows:
                while not self._inbox and not self._closing:
                    self._cond.wait()
                # Idle until now: give students who clicked at the same moment a few ms to join the first pass.
                deadline = time.monotonic() + self.limits.join_wait_s
                while (len(self._inbox) < self.limits.max_batch_size and not self._closing
                       and (remaining := deadline - time.monotonic()) > 0):
                    self._cond.wait(remaining)
            if self._closing:
                return None
            admitted = []
            rows = len(self._rows)
            longest = max((row.request.reserved_tokens for row in self._rows), default=0)
            self._priority_first()
            while self._inbox and rows < self.limits.max_batch_size + self._inbox[0].request.priority:
                head = self._inbox[0]
                if head.cancelled:
                    self._inbox.popleft().finish("stopped")
                    continue
                # The cache is padded to its longest row: rows x the longest reservation must fit.
                if (rows + 1) * max(longest, head.request.reserved_tokens) > self.limits.max_tokens:
                    break  # first come, first served: later requests do not overtake the head
                admitted.append(self._inbox.popleft())
                rows, longest = rows + 1, max(longest, head.request.reserved_tokens)
            return admitted

    def _priority_first(self) -> None:
        """Move priority requests (the presenter's) ahead of the others, each group in arrival order.
        One of them may take a row beyond the batch size: the presenter never waits for a free row."""
        if any(stream.request.priority for stream in self._inbox):
            ordered = sorted(self._inbox, key=lambda stream: not stream.request.priority)
            self._inbox.clear()
            self._inbox.extend(ordered)

    def _admit(self, stream: TokenStream) -> None:
        """Prefill one request alone, stream its first token, and add it to the batch."""
        request = stream.request
        if stream.cancelled:
            stream.finish("stopped")
            return
        try:
            ids = torch.tensor([request.prompt_ids], dtype=torch.long)
            cache = DynamicCache()
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=cache,
                             use_cache=True, logits_to_keep=1)
            row = _Row(request, stream, RowSampler(request.sampling), list(request.prompt_ids))
            if self._emit(row, row.sampler(row.tokens, out.logits[0, -1].float())):
                return  # its first token already ended it
            self._append(row, out.past_key_values, len(request.prompt_ids))
        except Exception as exc:  # this request's own failure (e.g. out of memory for its prompt)
            log.exception("Prefill failed for one request")
            stream.fail(exc)

    def _append(self, row: _Row, cache: DynamicCache, length: int) -> None:
        """Join a prefilled row to the batch: both caches are left-padded to the longer length."""
        token = torch.tensor([row.tokens[-1]], dtype=torch.long)
        if self._cache is None:
            self._cache, self._mask, self._next = cache, torch.ones(1, length, dtype=torch.long), token
        else:
            width = self._mask.shape[1]
            total = max(width, length)
            layers = [(torch.cat([_pad_left(keys, total - width, 2), _pad_left(new_keys, total - length, 2)]),
                       torch.cat([_pad_left(values, total - width, 2), _pad_left(new_values, total - length, 2)]))
                      for (keys, values, *_), (new_keys, new_values, *_) in zip(self._cache, cache, strict=True)]
            self._cache = DynamicCache(ddp_cache_data=layers)
            mask = _pad_left(torch.ones(1, length, dtype=torch.long), total - length, 1)
            self._mask = torch.cat([_pad_left(self._mask, total - width, 1), mask])
            self._next = torch.cat([self._next, token])
        self._rows.append(row)
        self.max_rows_seen = max(self.max_rows_seen, len(self._rows))

    def _decode_step(self) -> None:
        """One forward pass for every running row; each row picks and streams its next token."""
        try:
            rows = len(self._rows)
            mask = torch.cat([self._mask, torch.ones(rows, 1, dtype=torch.long)], dim=1)
            positions = self._mask.sum(dim=1, keepdim=True)  # real tokens so far = the new token's position
            out = self.model(input_ids=self._next.view(rows, 1), attention_mask=mask, position_ids=positions,
                             past_key_values=self._cache, use_cache=True, logits_to_keep=1)
            self._mask = mask
            self.steps += 1
            logits = out.logits[:, -1].float()
            chosen = []
            for index, row in enumerate(self._rows):
                token = row.sampler(row.tokens, logits[index])
                chosen.append(token)
                self._emit(row, token)
            self._next = torch.tensor(chosen, dtype=torch.long)
        except Exception as exc:  # the rows of this step cannot continue; the worker goes on
            log.exception("Decode step failed for %d rows", len(self._rows))
            for row in self._rows:
                if row.stream.finish_reason is None:
                    row.stream.fail(exc)
            self._reset()

    def _emit(self, row: _Row, token: int) -> bool:
        """Stream one chosen token; True when the row has ended (end token or length)."""
        row.generated += 1
        if token in row.request.eos_ids:
            row.stream.finish("eos")
            return True
        row.tokens.append(token)
        row.stream.put(token)
        if row.generated >= row.request.max_new_tokens:
            row.stream.finish("length")
            return True
        return False

    def _drop_finished(self) -> None:
        """Free the rows that ended or whose caller stopped; cut padding no remaining row needs."""
        keep = []
        for index, row in enumerate(self._rows):
            if row.stream.finish_reason is not None:
                continue
            if row.stream.cancelled:
                row.stream.finish("stopped")
                continue
            keep.append(index)
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._reset()
            return
        self._rows = [self._rows[i] for i in keep]
        selected = torch.tensor(keep, dtype=torch.long)
        self._mask, self._next = self._mask[selected], self._next[selected]
        first = int(self._mask.any(dim=0).int().argmax())  # leftmost column some row still uses
        self._mask = self._mask[:, first:]
        self._cache = DynamicCache(ddp_cache_data=[(keys[selected, :, first:], values[selected, :, first:])
                                                   for keys, values, *_ in self._cache])

    def _reset(self) -> None:
        self._rows, self._cache, self._mask, self._next = [], None, None, None

    def _fail_all(self, error: BaseException, retire: bool = False) -> None:
        """Fail every running and waiting request. With `retire`, this worker is done: under the same
        lock, so the worker the next submit starts finds an empty batch."""
        with self._cond:
            for stream in [row.stream for row in self._rows] + list(self._inbox):
                if stream.finish_reason is None:
                    stream.fail(error)
            self._inbox.clear()
            self._reset()
            if retire:
                self._thread = None

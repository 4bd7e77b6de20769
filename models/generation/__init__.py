"""Batched generation for the chat model: one service, one worker, many sessions per forward pass."""

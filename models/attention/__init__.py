"""Attention visualizer: capture attention weights, per-head statistics, the Q·K walk-through, head knock-out."""

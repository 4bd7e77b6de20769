"""Decoding playground: settings and processors, step-by-step decoding, beam and contrastive search, presets, code."""

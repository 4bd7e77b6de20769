"""From text to numbers: how text becomes token ids, ids become vectors, and vectors become predictions.

- tokenization.py: both tokenizers side by side (byte-level BPE and WordPiece), with counts.
- merges.py: why a word is one token or several (BPE merge path, WordPiece lookups).
- sentence_map.py: sentence embeddings in 2-D/3-D (PCA) and their cosine similarities.
- token_vectors.py: SmolLM2's input embedding matrix: nearest tokens and vector arithmetic.
- positions.py: rotary position embeddings (SmolLM2) and learned ones (MiniLM).
- logit_lens.py: what each layer of SmolLM2 would predict if it were the last.
"""

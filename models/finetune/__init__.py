"""Fine-tuning: watch a pretrained model learn a new task in a minute on two CPU cores.

Part 1 adapts the MiniLM encoder (a small BERT) to a labelled task with transformers' Trainer
in three regimes (frozen encoder + linear head, the top N layers, LoRA adapters); part 2
instruction-tunes SmolLM2 with a LoRA adapter. Plain Python in and out: no gradio, no HTML.
"""

"""The training room: data preparation from talking-face videos, meta-learning (one or many GPUs) and few-shot
fine-tuning, producing checkpoints that `avatar-app export` turns into what the app runs.

The app never imports this package; it needs the [train] extra (torch).
"""

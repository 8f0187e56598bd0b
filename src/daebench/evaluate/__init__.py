"""Evaluation: per-image metrics, pretrained-weight registry, feature metrics."""

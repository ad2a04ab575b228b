"""Inference: generating answers with a warm or freshly loaded model."""

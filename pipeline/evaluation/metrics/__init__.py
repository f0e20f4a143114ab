"""Metrics of a trained model: pure functions of tensors, each returning numbers or a dict."""

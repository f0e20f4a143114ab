"""Evaluation of trained models: log-likelihood estimators (loglik) and the per-checkpoint
metrics row of the evaluate stage (evaluate)."""

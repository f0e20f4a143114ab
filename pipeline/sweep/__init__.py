"""The sweep: grid cells x Optuna trials, scheduled by Ray Tune, recorded in MLflow."""

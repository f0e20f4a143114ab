"""Infrastructure shared by every stage: atomic writes, process defaults, errors, MLflow, Ray,
file names and the stage entry plumbing. Nothing here knows the science."""

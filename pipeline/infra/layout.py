"""File names shared by the stages (a light module: no torch or Ray to import for a name)."""

# sweep stage outs (sweep.out_dir)
TRIALS, BEST, SWEEP = "trials.parquet", "best.json", "sweep.json"
OPTUNA = "optuna.journal"  # every cell's Optuna study (pipeline.sweep.search), optuna-dashboard reads it
# inside a trial's checkpoint directory
SAMPLES, RECONSTRUCTIONS = "samples.png", "reconstructions.png"
# evaluate stage outs (evaluate.out_dir)
METRICS, HISTORY, SUMMARY, IMAGES, PLOTS, CACHE = (
    "metrics.parquet", "history.parquet", "summary.json", "images", "plots", "cache")
PLAN = "plan.json"  # each of the sweep and evaluate stages projects its own time (in its out_dir)
PER_IMAGE_NLL = "per_image_nll.parquet"  # every cell's NLL of every test image (paired comparisons)

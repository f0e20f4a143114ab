"""What the evaluate stage shows DVC: a compact metrics summary and one plot file per figure.

The summary (`dvc metrics show`, `dvc exp show`) has stable keys that mean the same in every
profile, so experiments compare column by column:

    table1.<method>.<estimator>   Table 1: each method's test NLL (nats) per estimator
                                  (test_nll: importance sampling; test_<name>_nll: any other
                                  estimator evaluated, e.g. test_ais_nll). Their standard errors
                                  stay in metrics.parquet and the report: with them the laptop
                                  study's table was 76 columns wide, 36 without them and without
                                  prepare's class histograms (`dvc metrics show` fits a terminal)
    cells.evaluated / cells.failed / cells.diverged (pipeline.train.outcome)
    time.sweep_s, time.evaluate_s  (measured; the plan's projections stay in results/sweep/plan.json
                                  and the report's "Plan and time", out of the compared columns)

(`claims.*`, the claims' verdicts and statistics, are the report stage's metrics file.) Per-cell
detail stays in metrics.parquet and the plots.

Plots: one CSV per figure of the study (dvc.yaml declares each with its title, axes and the
template in .dvc/plots/), long format with a `series` column (the method, or the method and
what the line is), holding only the cells of that figure's grid. A cell whose decoder is not
Bernoulli is its method with the likelihood named (`MMD-VAE, Gaussian p(x|z)`), in the series and
in the Table 1 keys alike: a density's NLL is not on the scale of a probability's.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from pipeline.infra import atomic
from pipeline.train.outcome import DIVERGED

TABLE1, LATENT, SIZE, INFO, ALPHA_LAMBDA = "table1", "latent_dim", "train_size", "information_preference", \
    "alpha_lambda"
ESTIMATOR = re.compile(r"^test(_[a-z0-9]+)?_nll$")  # an estimate, not its s.e.
# file -> (columns): every file is written, empty when its grid did not run (DVC needs them all)
PLOTS = {
    "table1_nll.csv": ("series", "test_nll"),
    "latent_mmd.csv": ("series", "latent_dim", "mmd"),
    "latent_logdet.csv": ("series", "latent_dim", "logdet_cov"),
    "latent_class_mismatch.csv": ("series", "latent_dim", "class_mismatch"),
    "latent_mmd_training.csv": ("series", "epoch", "val_mmd"),
    "latent_ss_error.csv": ("series", "latent_dim", "ss_error"),
    "train_size_logdet.csv": ("series", "train_size", "logdet_cov"),
    "information_mi.csv": ("series", "epoch", "val_mi"),
    "alpha_lambda_nll.csv": ("series", "lambda", "test_nll"),
}


def method(row: dict[str, Any]) -> str:
    """The cell's method, with its likelihood named when it is not the Bernoulli (see above)."""
    likelihood = row.get("likelihood") or "bernoulli"
    if likelihood == "bernoulli":
        return row["method"]
    return f"{row['method']}, {likelihood.capitalize()} p(x|z)"


def slug(text: str) -> str:
    """A stable metrics key: 'MMD-VAE' -> 'mmd_vae', 'beta-VAE (beta=0.5)' -> 'beta_vae_beta_0.5'."""
    return re.sub(r"[^a-z0-9.]+", "_", text.lower()).strip("_")


def _grids(row: dict[str, Any]) -> list[str]:
    return [g for g in str(row.get("grids") or "").split(",") if g]


def _in(rows: list[dict], grid: str) -> list[dict]:
    return [r for r in rows if r["status"] == "EVALUATED" and grid in _grids(r)]


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def summary(rows: list[dict], sweep_dir: Path, evaluate_s: float) -> dict[str, Any]:
    table: dict[str, dict[str, float]] = {}
    for r in sorted(_in(rows, TABLE1), key=lambda r: r.get("test_nll") or float("inf")):
        if slug(method(r)) in table:
            continue  # several cells of a method (e.g. two decoders): the one of lowest NLL
        table[slug(method(r))] = {k: round(float(v), 4) for k, v in r.items()
                                    if ESTIMATOR.match(k) and v is not None}
    sweep = _read(sweep_dir / "sweep.json")
    times = {"sweep_s": (sweep.get("seconds") or {}).get("fit"), "evaluate_s": round(evaluate_s, 1)}
    out: dict[str, Any] = {TABLE1: table} if table else {}
    out["cells"] = {"evaluated": sum(r["status"] == "EVALUATED" for r in rows),
                    "failed": sum(r["status"] == "FAILED" for r in rows),
                    "diverged": sum(r["status"] == DIVERGED for r in rows)}
    out["time"] = {k: (round(float(v), 1) if v is not None else None) for k, v in times.items()}
    return out


def write_summary(path: Path, rows: list[dict], sweep_dir: Path, evaluate_s: float) -> dict[str, Any]:
    """The compact DVC metrics file (see the module docstring)."""
    data = summary(rows, sweep_dir, evaluate_s)
    atomic.write_json(path, data)
    return data


def _csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    import csv

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        if all(r.get(c) is not None for c in columns):
            writer.writerow(r)
    atomic.write_bytes(path, buf.getvalue().encode())


def _points(rows: list[dict], x: str, y: str, series=method) -> list[dict]:
    return sorted(({"series": series(r), x: r.get(x), y: r.get(y)} for r in rows),
                  key=lambda p: (p["series"], p[x] if p[x] is not None else 0))


def _curves(rows: list[dict], history: list[dict], y: str, series=method) -> list[dict]:
    names = {r["cell"]: series(r) for r in rows}
    return [{"series": names[h["cell"]], "epoch": int(h["epoch"]), y: h.get(y)}
            for h in history if h["cell"] in names]


def plot_data(rows: list[dict], history: list[dict]) -> dict[str, list]:
    """Each plot file's rows (pipeline.report.experiments draws the same figures). Fig. 3 D's
    curves are every latent dim's, named by it (the report picks one, report.curve_latent_dim:
    a report setting that reruns no evaluation)."""
    latent, size = _in(rows, LATENT), _in(rows, SIZE)
    labels = sorted({int(k.split("_")[2]) for r in latent for k in r if re.fullmatch(r"ss_error_\d+", k)})
    ss = [{"series": f"{method(r)}, {n} labels", "latent_dim": r["latent_dim"],
           "ss_error": r.get(f"ss_error_{n}")}
          for n in labels for r in sorted(latent, key=lambda r: (r["method"], r["latent_dim"]))]
    logdet = [{"series": f"{method(r)}, {split} encodings", "train_size": r.get("train_size"),
               "logdet_cov": r.get(key)}
              for split, key in (("train", "train_logdet_cov"), ("test", "logdet_cov"))
              for r in sorted(size, key=lambda r: (r["method"], r.get("train_size") or 0))]
    return {
        "table1_nll.csv": [{"series": method(r), "test_nll": r.get("test_nll")} for r in _in(rows, TABLE1)],
        "latent_mmd.csv": _points(latent, "latent_dim", "mmd"),
        "latent_logdet.csv": _points(latent, "latent_dim", "logdet_cov"),
        "latent_class_mismatch.csv": _points(latent, "latent_dim", "class_mismatch"),
        "latent_mmd_training.csv": _curves(latent, history, "val_mmd",
                                           lambda r: f"{method(r)}, d = {r['latent_dim']}"),
        "latent_ss_error.csv": ss,
        "train_size_logdet.csv": logdet,
        "information_mi.csv": _curves(_in(rows, INFO), history, "val_mi"),
        "alpha_lambda_nll.csv": _points(_in(rows, ALPHA_LAMBDA), "lambda", "test_nll",
                                        lambda r: f"alpha={r['alpha']:g}"),
    }


def write_plots(directory: Path, rows: list[dict], history: list[dict]) -> None:
    """The plot CSVs `dvc plots show` renders (dvc.yaml); the directory is replaced as a whole."""
    data = plot_data(rows, history)
    with atomic.replace_dir(directory) as tmp:
        for name, columns in PLOTS.items():
            _csv(tmp / name, columns, data[name])

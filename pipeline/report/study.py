"""The report stage: the sweep's and the evaluation's outputs -> report/index.html (self-contained)
and report/report.md (+ figures/), written as one directory swapped in atomically, then attached
to the sweep's parent MLflow run under report/."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.infra import atomic, tracking
from pipeline.params.load import Params
from pipeline.params.report import ReportParams
from pipeline.params.stages import stage_params
from pipeline.report.claims import Claim, ablation, dvc_metrics, evaluate_claims, mlflow_payload
from pipeline.report.claims.section import claims_section
from pipeline.report.data import ReportError, StudyInputs, load_inputs
from pipeline.report.doc import Report
from pipeline.report.experiments import information_section, latent_dim_section, train_size_section
from pipeline.report.maps import alpha_lambda_section
from pipeline.report.reference import reference_section
from pipeline.report.render import figure_files, to_html, to_markdown
from pipeline.report.samples import header, samples_section
from pipeline.report.tables import table1, trials_section
from pipeline.report.timing import timing_section

INDEX, MARKDOWN = "index.html", "report.md"


def missing_cells(inputs: StudyInputs) -> list[str]:
    """What makes the inputs partial: an incomplete sweep, and every cell of the sweep
    (best.json) without a row in metrics.parquet (a diverged cell has one: FAILED, reported)."""
    problems = []
    if inputs.sweep.get("complete") is False:
        problems.append(f"the sweep is incomplete ({inputs.sweep.get('incomplete')})")
    rows = set(inputs.metrics["cell"].tolist()) if "cell" in inputs.metrics.columns else set()
    absent = [c for c in inputs.best if c not in rows]
    if absent:
        labels = [f"{c} ({inputs.best[c].get('label')})" for c in absent]
        more = f" and {len(labels) - 10} more" if len(labels) > 10 else ""
        problems.append(f"{len(absent)} of {len(inputs.best)} cells have no evaluation row: "
                        + ", ".join(labels[:10]) + more)
    return problems


def compose(inputs: StudyInputs, cfg: ReportParams, tracking_uri: str, claims: list[Claim],
            partial: list[str] | None = None) -> Report:
    """The whole report as data (pipeline.report.doc): the claims' verdicts first, then one section per
    experiment (each claim links to its experiment's section), the reference figures, the trials."""
    sections = [table1(inputs), latent_dim_section(inputs, cfg), train_size_section(inputs, cfg),
                information_section(inputs, cfg), alpha_lambda_section(inputs, cfg), samples_section(inputs),
                reference_section(inputs.base, cfg.reference_dir), trials_section(inputs),
                timing_section(inputs)]
    ablated = ablation.verdicts(inputs.metrics, inputs.best, inputs.per_image)
    failed = ablation.diverged(inputs.metrics, inputs.best)
    if ablated or failed:
        sections.insert(0, ablation.ablation_section(ablated, failed))
    titles = {s.id: s.title for s in sections}
    title = f"{cfg.title} (PARTIAL: {'; '.join(partial)})" if partial else cfg.title
    return Report(title, header(inputs, tracking_uri),
                  [claims_section(claims, titles, ablation.sentences(ablated, failed)), *sections])


def mlflow_ui(tracking_uri: str, cfg: ReportParams) -> str:
    """The MLflow UI's base URL for run links: the tracking server itself when it is http(s), else
    where `mlflow ui` listens by default (report.mlflow_ui_url), opened over the same store."""
    return tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else cfg.mlflow_ui_url


def write_report(report: Report, out: Path) -> list[Path]:
    """Write the report into directory `out` (a fresh temporary one); return the files written."""
    files = {INDEX: to_html(report).encode(), MARKDOWN: to_markdown(report).encode(), **figure_files(report)}
    for name, data in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return [out / name for name in files]


def _parent_client(params: Any, cfg: ReportParams, inputs: StudyInputs, base: Path, log: Callable) -> Any:
    """A checked MLflow client for the sweep's parent run, or None when the report is not logged.
    An unreachable tracking server (TrackingError) or an unknown parent run (ReportError) fails
    here, before any figure is drawn."""
    if not cfg.log_to_mlflow:
        return None
    if not inputs.sweep.get("parent_run_id"):
        log("sweep.json names no parent MLflow run: the report is not logged to MLflow")
        return None
    client = tracking.client(params.tracking, base)
    run_id = inputs.sweep["parent_run_id"]
    try:
        tracking.retry(client.get_run, run_id)
    except Exception as err:
        raise ReportError(f"the sweep's parent MLflow run {run_id} (sweep.json) is not in the tracking store "
                          f"{tracking.redact(client.tracking_uri)}: {err}") from None
    return client


def _log(client: Any, run_id: str, out: Path, files: list[Path], claims: list[Claim]) -> None:
    tracking.log_files(client, run_id, [out / INDEX, out / MARKDOWN], "report")
    figures = [f for f in files if f.parent.name == "figures"]
    tracking.log_files(client, run_id, figures, "report/figures")
    metrics, tags = mlflow_payload(claims)
    tracking.log_metrics(client, run_id, metrics, step=0)
    tracking.set_tags(client, run_id, tags)


def build_report(params: Any, base_dir: str | Path = ".",
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the report of the study in `base_dir` from params (sweep.out_dir, evaluate.out_dir,
    report, tracking). The previous report stays in place unless the new one is complete."""
    start = time.perf_counter()
    if isinstance(params, Params):
        params = stage_params(params, "report")
    base = Path(base_dir).resolve()
    cfg, eval_dir = params.report, params.evaluate.out_dir
    out = base / cfg.out_dir
    with atomic.replace_dir(out) as tmp:
        inputs = load_inputs(base, params.sweep.out_dir, eval_dir)
        partial = missing_cells(inputs)
        if partial and not cfg.allow_partial:
            why = "; ".join(partial)
            raise ReportError(f"the report's inputs are partial: {why}. Run `dvc repro` to complete them, "
                              "or set report.allow_partial: true for a report marked PARTIAL")
        client = None if partial else _parent_client(params, cfg, inputs, base, log)
        if partial:
            log("partial inputs (report.allow_partial): the report is titled PARTIAL, not logged to MLflow")
        uri = tracking.redact(params.tracking.uri)
        inputs.mlflow_ui = mlflow_ui(uri, cfg)
        claims = evaluate_claims(inputs.metrics, inputs.history,  # rows carry ss_repeats
                                 per_image=inputs.per_image)
        report = compose(inputs, cfg, uri, claims, partial)
        written = write_report(report, tmp)
    atomic.write_json(base / cfg.claims_metrics, dvc_metrics(claims))
    files = [out / f.relative_to(tmp) for f in written]
    run_id = inputs.sweep.get("parent_run_id")
    if client is not None:
        _log(client, run_id, out, files, claims)
        log(f"report and claims logged to MLflow run {run_id} (artifacts report/, tags claims.*)")
    size = (out / INDEX).stat().st_size
    log(f"report: {out / INDEX} ({size / 1e6:.2f} MB), {out / MARKDOWN}, {len(report.figures())} figures")
    return {"html": str(out / INDEX), "markdown": str(out / MARKDOWN), "figures": len(report.figures()),
            "sections": [s.id for s in report.sections], "html_bytes": size,
            "mlflow_run_id": run_id if client is not None else None,
            "claims": {c.spec.id: c.verdict for c in claims},
            "seconds": round(time.perf_counter() - start, 1)}

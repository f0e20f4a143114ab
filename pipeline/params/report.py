"""The `report` section: where the study's report is written and how its figures are drawn
(pipeline.report)."""

from __future__ import annotations

from pydantic import Field

from pipeline.params.base import Section


class ReportParams(Section):
    # index.html (self-contained), report.md and figures/*.png; replaced as a whole (a DVC out)
    # index.html (self-contained) + report.md + figures/ (a DVC out)
    out_dir: str = Field("report", min_length=1)
    title: str = Field("InfoVAE reproduction study", min_length=1)
    dpi: int = Field(90, ge=50, le=300)  # PNG resolution: the HTML embeds every figure
    # Fig. 3 (D), MMD over training: the curves of this latent dim (the largest one if absent)
    # Fig. 3 (D), MMD over training: this latent dim (else the largest)
    curve_latent_dim: int = Field(10, ge=1)
    log_to_mlflow: bool = True  # attach the report to the sweep's parent MLflow run (report/)
    # the claims' verdicts and statistics as DVC metrics (claims.c1.verdict, ...): a file outside out_dir
    claims_metrics: str = Field("results/metrics/claims.json", min_length=1)
    # the authors' reference figures (PNG), copied beside the report when the directory exists
    reference_dir: str = Field("../shared/reference", min_length=1)
    # MLflow UI address for run links when tracking.uri is not http(s) (where `mlflow ui` listens)
    mlflow_ui_url: str = Field("http://127.0.0.1:5000", pattern=r"^https?://")
    # Build a report from an incomplete sweep or evaluation (cells missing): titled PARTIAL and
    # never attached to MLflow as the study's report. False: such inputs are an error naming them.
    allow_partial: bool = False

"""The paper's claims, judged: one room for everything a verdict is made of.

- statements.py: the six claims as stated (from the paper's text and the authors' data) and
  `evaluate_claims`, which judges them on a study's metrics;
- checks.py: each claim's checks (which cells, which metric, which standard error);
- rules.py: the statistical rules a check applies (paired and unpaired differences);
- authors_data.py: the InfoVAE authors' own numbers, with their sources;
- section.py: the report's claims section; ablation.py: the ablation profile's verdict table.

A new claim is a spec in statements.py with its checks in checks.py (and its known-answer test).
"""

from pipeline.report.claims.statements import SPECS, Claim, dvc_metrics, evaluate_claims, mlflow_payload

__all__ = ["SPECS", "Claim", "dvc_metrics", "evaluate_claims", "mlflow_payload"]

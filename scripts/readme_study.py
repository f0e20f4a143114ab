"""Write the README's study section from a finished study, not by hand: the claims as
pipeline/report/claims/statements.py states them, each with the verdict and deciding statistic of the run
(results/metrics/claims.json), how far the authors' data supports it, and the run's measured
time (results/metrics/evaluate.json "time", plus the whole study's wall time when given).

    python scripts/readme_study.py STUDY_DIR [--wall-min 58.3] [--readme README.md]

STUDY_DIR is a repository where `dvc repro` finished (e.g. `bench_study --keep DIR`). The block
between the README's markers `<!-- study:start -->` and `<!-- study:end -->` is replaced; the file
is written to a temporary path and renamed into place.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.report.claims import SPECS  # noqa: E402
from pipeline.report.claims.authors_data import SUPPORT  # noqa: E402

START, END = "<!-- study:start -->", "<!-- study:end -->"


def block(study: Path, wall_min: float | None) -> str:
    claims = json.loads((study / "results/metrics/claims.json").read_text())["claims"]
    summary = json.loads((study / "results/metrics/evaluate.json").read_text())
    params = yaml.safe_load((study / "params.yaml").read_text())
    t = summary.get("time", {})
    cells = summary.get("cells", {})
    head = (f"Latest run: profile `{params.get('profile')}`, seed {params['train']['seed']}, "
            f"{sum(cells.values())} cells ({cells.get('evaluated', 0)} evaluated, {cells.get('failed', 0)} "
            f"failed, {cells.get('diverged', 0)} diverged); training {t.get('sweep_s', 0) / 60:.1f} min, "
            f"evaluation {t.get('evaluate_s', 0) / 60:.1f} min"
            + (f", the whole `dvc repro` {wall_min:.1f} min" if wall_min else "") + " on 2 CPU cores.")
    rows = ["| Claim | As stated (pipeline/report/claims/statements.py) | Verdict | Statistic "
            "| The authors' data |",
            "|---|---|---|---|---|"]
    for spec in SPECS:
        c = claims.get(spec.id, {})
        stat = c.get("statistic")
        stat_s = "—" if stat is None else f"{stat:+.3g} {spec.unit}"
        rows.append(f"| {spec.id.upper()} ({spec.source}) | {spec.statement} | {c.get('verdict', '—')} | "
                    f"{stat_s} | {SUPPORT.get(spec.id, '—')} |")
    return "\n".join([START, "", head, "", *rows, "", END])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--wall-min", type=float, default=None)
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = ap.parse_args()
    text = args.readme.read_text()
    if START not in text or END not in text:
        sys.exit(f"{args.readme}: markers {START} / {END} not found")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    tmp = args.readme.with_suffix(".md.tmp")
    tmp.write_text(before + block(args.study, args.wall_min) + after)
    tmp.replace(args.readme)
    print(f"wrote the study section of {args.readme} from {args.study}")


if __name__ == "__main__":
    main()

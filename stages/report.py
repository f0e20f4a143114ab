"""DVC stage `report`: the sweep's and the evaluation's outputs -> report/index.html (self-contained)
and report/report.md, attached to the sweep's parent MLflow run."""

import json

from pipeline.infra.stage import parser, run
from pipeline.params.load import load_params
from pipeline.params.stages import stage_params


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    from pipeline.report.study import build_report

    print(json.dumps(build_report(stage_params(load_params(args.params), "report"))))


if __name__ == "__main__":
    run(main)

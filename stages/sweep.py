"""DVC stage `sweep`: the grid of params.yaml trained under Ray Tune, recorded in MLflow;
writes results/sweep/trials.parquet and best.json."""

import json

from pipeline.infra.stage import parser, run
from pipeline.params.load import load_params
from pipeline.params.stages import stage_params


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    from pipeline.sweep.run import run_sweep

    print(json.dumps(run_sweep(stage_params(load_params(args.params), "sweep"))))


if __name__ == "__main__":
    run(main)

"""DVC stage `evaluate`: the best trial of every grid cell measured (importance-sampled
log-likelihood, latent metrics), tabled in results/eval and logged to its MLflow run."""

import json

from pipeline.infra.stage import parser, run
from pipeline.params.load import load_params
from pipeline.params.stages import stage_params


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    from pipeline.evaluation.study import evaluate_study

    print(json.dumps(evaluate_study(stage_params(load_params(args.params), "evaluate"))))


if __name__ == "__main__":
    run(main)

"""DVC stage `prepare`: raw MNIST files -> verified, split, binarized Parquet splits."""

import json

from pipeline.data.prepare import prepare
from pipeline.infra.stage import parser, run
from pipeline.params.grid import expand
from pipeline.params.load import load_params
from pipeline.params.stages import stage_params


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    params = load_params(args.params)
    # Every grid cell validated before any work (dvc.yaml runs this stage first): a check, not a
    # read; what prepare writes depends on its own section only.
    expand(params)
    summary = prepare(stage_params(params, "prepare").data)
    print(json.dumps({k: summary[k] for k in ("count", "mean_pixel", "seconds")}))


if __name__ == "__main__":
    run(main)

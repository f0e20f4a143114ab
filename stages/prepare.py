"""DVC stage `prepare`: raw MNIST files -> verified, split, binarized Parquet splits."""

import json

from pipeline.data.prepare import prepare
from pipeline.infra.stage import parser, run
from pipeline.params.load import load_params
from pipeline.sweep.grid import expand


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    params = load_params(args.params)
    expand(params)  # every grid cell validated before any work: dvc.yaml runs this stage first
    summary = prepare(params.data)
    print(json.dumps({k: summary[k] for k in ("count", "mean_pixel", "seconds")}))


if __name__ == "__main__":
    run(main)

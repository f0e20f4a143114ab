"""DVC stage `prepare`: raw MNIST files -> verified, split, binarized Parquet splits."""

import json

from pipeline.data.prepare import prepare
from pipeline.infra.stage import parser, run
from pipeline.params.load import load_params


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    summary = prepare(load_params(args.params).data)
    print(json.dumps({k: summary[k] for k in ("count", "mean_pixel", "seconds")}))


if __name__ == "__main__":
    run(main)

"""DVC stage `prepare`: raw MNIST files -> verified, split, binarized Parquet splits."""

import json

from pipeline.config import load_params
from pipeline.data import prepare
from pipeline.stage import parser, run


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    summary = prepare(load_params(args.params).data)
    print(json.dumps({k: summary[k] for k in ("count", "mean_pixel", "seconds")}))


if __name__ == "__main__":
    run(main)

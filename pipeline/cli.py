"""`infovae`: the pipeline's commands outside DVC (train one configuration, evaluate one)."""

from __future__ import annotations

import argparse

from pipeline.stage import run


def _train(args) -> None:
    from pipeline.config import load_params, parse_set
    from pipeline.standalone import spec_from_params, train_one

    params = load_params(args.params, parse_set(args.set))
    train_one(spec_from_params(params), args.out, resume_run=args.resume)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="infovae", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one configuration (model/objective/train sections)")
    t.add_argument("--params", default="params.yaml")
    t.add_argument("--out", required=True, help="run directory (checkpoint, history, images)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param, e.g. --set objective.divergence=mmd (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.set_defaults(func=_train)
    return p


def main(argv: list[str] | None = None) -> None:
    def _main(argv):
        args = build_parser().parse_args(argv)
        args.func(args)

    run(_main, argv)


if __name__ == "__main__":
    main()

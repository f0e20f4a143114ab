"""`infovae`: the pipeline's commands outside DVC: compose params.yaml from conf/, train one
configuration, evaluate one, retrain one sweep cell whose checkpoint was damaged, draw samples
from a cell's logged model."""

from __future__ import annotations

import argparse

from pipeline.infra.stage import run


def _train(args) -> None:
    from pipeline.params.load import load_params, parse_set
    from pipeline.train.standalone import spec_from_params, train_one

    params = load_params(args.params, parse_set(args.set))
    train_one(spec_from_params(params), args.out, resume_run=args.resume)


def _evaluate(args) -> None:
    import sys

    from pipeline.evaluation.evaluate import evaluate_checkpoint, write_row
    from pipeline.params.load import load_params, parse_set

    params = load_params(args.params, parse_set(args.set))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    row = evaluate_checkpoint(args.checkpoint, params.evaluate, args.data or params.data.out_dir,
                              log=log, progress_every_s=30.0)
    write_row(row, args.out)
    log(f"wrote {args.out}")


def _params(args) -> None:
    from pipeline.params.compose import write_defaults, write_params

    if args.write_defaults:
        print(f"wrote {write_defaults(args.root)}")
    params = write_params(args.root, args.set, args.out)
    profile = f" (profile {params.profile})" if params.profile else ""
    print(f"wrote {args.out or 'params.yaml'}{profile}: {len(params.sweep.grids)} grids")


def _retrain(args) -> None:
    import json

    from pipeline.params.load import load_params
    from pipeline.sweep.retrain import retrain_cell

    print(json.dumps(retrain_cell(load_params(args.params), args.cell)))


def _sample(args) -> None:
    from pipeline.evaluation.models import load_cell_model
    from pipeline.infra import atomic, tracking
    from pipeline.params.load import load_params
    from pipeline.train.images import grid, png_bytes

    params = load_params(args.params)
    client = tracking.client(params.tracking, ".")
    model, logged = load_cell_model(client, tracking.experiment_id(client, params.tracking, "."), args.cell)
    atomic.write_bytes(args.out, png_bytes(grid(model.sample(args.n, seed=args.seed))))
    print(f"wrote {args.out}: {args.n} samples of model {logged.model_id} "
          f"({logged.tags.get('infovae.cell_label', args.cell)})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="infovae", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("params", help="compose params.yaml from conf/ (as `dvc exp run -S` does)")
    c.add_argument("-S", "--set", action="append", default=[], metavar="OVERRIDE",
                   help="a Hydra override: profile=smoke, train.epochs=3 (repeatable)")
    c.add_argument("--root", default=".", help="the repository (holding conf/)")
    c.add_argument("--out", default=None, help="output file (default: ROOT/params.yaml)")
    c.add_argument("--write-defaults", action="store_true",
                   help="first regenerate conf/defaults.yaml from the schema")
    c.set_defaults(func=_params)
    t = sub.add_parser("train", help="train one configuration (model/objective/train sections)")
    t.add_argument("--params", default="params.yaml")
    t.add_argument("--out", required=True, help="run directory (checkpoint, history, images)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param, e.g. --set objective.divergence=mmd (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.set_defaults(func=_train)
    e = sub.add_parser("evaluate", help="evaluate a trained checkpoint (the evaluate section)")
    e.add_argument("--checkpoint", required=True, help="run directory or checkpoint.pt")
    e.add_argument("--params", default="params.yaml")
    e.add_argument("--out", required=True, help="one-row table: FILE.parquet or FILE.json")
    e.add_argument("--data", default=None, help="prepared data directory (default: data.out_dir)")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param, e.g. --set evaluate.loglik_k=1000 (repeatable)")
    e.set_defaults(func=_evaluate)
    r = sub.add_parser("retrain", help="train one sweep cell's best trial again (a damaged checkpoint)")
    r.add_argument("--cell", required=True, help="the cell id (best.json; named by the error)")
    r.add_argument("--params", default="params.yaml")
    r.set_defaults(func=_retrain)
    m = sub.add_parser("sample", help="draw images from a cell's logged model (MLflow) into a PNG grid")
    m.add_argument("--cell", required=True, help="the cell id (best.json, the report's tables)")
    m.add_argument("-n", type=int, default=16, help="how many images")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", default="samples.png")
    m.add_argument("--params", default="params.yaml")
    m.set_defaults(func=_sample)
    return p


def main(argv: list[str] | None = None) -> None:
    def _main(argv):
        args = build_parser().parse_args(argv)
        args.func(args)

    run(_main, argv)


if __name__ == "__main__":
    main()

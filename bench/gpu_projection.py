"""The paper-scale study's work, counted from params.yaml (plain PyYAML, no pydantic), and its
projected time from measured rates (bench/bench_gpu.py).

Work per cell of the sweep's grids (cells named by several grids count once, as
pipeline.params.grid.expand counts them): training = trials x epochs x (train images + validation
images, the latter a forward pass), an upper bound (ASHA stops some trials early); evaluation =
K x (test images + train images) IS decoder passes and the class-mismatch samples. The latent
and semi-supervised metrics (one encoder pass, small SVMs) are left out: seconds per cell.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.params.vocab import AXIS_KEYS  # plain Python: no pydantic needed

MNIST_TRAIN_POOL, MNIST_TEST = 60000, 10000


def read_params(path: str | Path, profile: str | None = None) -> dict[str, Any]:
    """params.yaml (the default study, as composed) as a plain mapping; or, for a profile, the
    composition of conf/ that Hydra would make -- conf/defaults.yaml, conf/config.yaml, then
    conf/profile/PROFILE.yaml after the profiles its own `defaults` list names -- merged key by
    key (mappings merge, the rest replaces), without Hydra, which a bare GPU machine lacks."""
    try:
        import yaml
    except ImportError:
        raise SystemExit("bench_gpu reads params.yaml with PyYAML: pip install pyyaml (on a machine "
                         "without a registry, carry its wheel)") from None
    if not profile:
        return yaml.safe_load(Path(path).read_text())
    conf = Path(path).resolve().parent / "conf"

    def layer(file: Path) -> dict[str, Any]:
        data = yaml.safe_load(file.read_text()) or {}
        data.pop("defaults", None)
        return data

    def chain(name: str) -> list[Path]:
        file = conf / "profile" / f"{name}.yaml"
        if not file.is_file():
            known = sorted(p.stem for p in (conf / "profile").glob("*.yaml"))
            raise SystemExit(f"no profile {name!r} in {conf / 'profile'} (profiles: {known})")
        first = [n for n in (yaml.safe_load(file.read_text()) or {}).get("defaults", []) if n != "_self_"]
        return [f for n in first for f in chain(n)] + [file]

    raw: dict[str, Any] = {}
    for file in [conf / "defaults.yaml", conf / "config.yaml", *chain(profile)]:
        raw = _merge(raw, layer(file))
    return raw


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _get(raw: dict, dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        node = node[part]
    return node


@dataclass(frozen=True)
class CellWork:
    family: str  # "mlp", "conv" or "pixelcnn": the decoder, which sets the cost
    grids: tuple[str, ...]
    train_images: int  # per epoch
    val_images: int
    epochs: int
    trials: int
    is_passes: int  # decoder passes of the IS estimate (test and train images)
    samples: int  # class-mismatch samples


def cells(raw: dict) -> list[CellWork]:
    """Every distinct cell of sweep.grids with its work."""
    combos: list[tuple[str, dict[str, Any]]] = []
    for grid, axes in raw["sweep"]["grids"].items():
        if axes is None:  # a profile dropped this grid
            continue
        lists = [[{AXIS_KEYS.get(k, k): x for k, x in v.items()} if isinstance(v, dict)
                  else {AXIS_KEYS.get(axis, axis): v} for v in values] for axis, values in axes.items()]
        for combo in itertools.product(*lists):
            combos.append((grid, {k: v for part in combo for k, v in part.items()}))
    varied = sorted({k for _, o in combos for k in o})
    found: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for grid, overrides in combos:
        resolved = {k: overrides.get(k, _get(raw, k)) for k in varied}
        canon = json.dumps({k: float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
                            for k, v in resolved.items()}, sort_keys=True)
        found.setdefault(canon, (overrides, []))[1].append(grid)
    ev = raw["evaluate"]
    pool = MNIST_TRAIN_POOL - raw["data"]["validation_size"]
    out = []
    for overrides, grids in found.values():
        def value(key: str, o: dict = overrides) -> Any:
            return o.get(key, _get(raw, key))
        n_train = min(value("train.train_size") or pool, pool)
        n_val = value("train.validation_size") or raw["data"]["validation_size"]
        n_test = ev["loglik_test_size"] or MNIST_TEST
        passes = ev["loglik_k"] * (n_test + ev["loglik_train_size"])
        if ev.get("ais_test_size") and _here(ev, "loglik_ais", grids):
            # AIS: (chains + 4 pilot) x (1 + (steps - 1) x leapfrog) gradient passes per image,
            # each counted as 3 forward passes (a backward pass costs about two), plus its IS.
            per_image = (ev["ais_chains"] + 4) * (1 + (ev["ais_steps"] - 1) * ev["ais_leapfrog"])
            passes += ev["ais_test_size"] * (3 * per_image + ev["loglik_k"])
        samples = ev["class_mismatch_samples"] if _here(ev, "class_mismatch", grids) else 0
        out.append(CellWork(value("model.decoder"), tuple(grids), n_train, n_val, value("train.epochs"),
                            raw["sweep"]["trials_per_cell"], passes, samples))
    return out


def _here(ev: dict, metric: str, grids: list[str]) -> bool:
    """evaluate.metric_grids: a metric named there runs only on cells of its grids."""
    where = (ev.get("metric_grids") or {}).get(metric)
    return where is None or bool(set(where) & set(grids))


def project(work: list[CellWork], train_rate: dict[str, float], pass_rate: dict[str, float],
            sample_rate: dict[str, float]) -> dict[str, float]:
    """Seconds of training, IS and sampling for the whole study at the given rates (images/s,
    decoder passes/s, samples/s per family), one trial at a time."""
    t = {"train": 0.0, "loglik": 0.0, "sampling": 0.0}
    for c in work:
        t["train"] += c.trials * c.epochs * (c.train_images / train_rate[c.family]
                                             + c.val_images / pass_rate[c.family])
        t["loglik"] += c.is_passes / pass_rate[c.family]
        t["sampling"] += c.samples / sample_rate[c.family]
    t["total"] = sum(t.values())
    return t


def describe(work: list[CellWork]) -> str:
    by: dict[str, int] = {}
    for c in work:
        by[c.family] = by.get(c.family, 0) + 1
    images = sum(c.trials * c.epochs * c.train_images for c in work)
    return (f"{len(work)} cells ({', '.join(f'{n} {f}' for f, n in sorted(by.items()))}), "
            f"{work[0].trials} trials x up to {max(c.epochs for c in work)} epochs: "
            f"{images / 1e6:,.1f} M training images; {sum(c.is_passes for c in work) / 1e6:,.0f} M IS "
            f"decoder passes; {sum(c.samples for c in work):,} samples")

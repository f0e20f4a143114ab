"""The ablation: which of the authors' settings, or which change of scale, makes a claim appear
or vanish (issue 12; conf/profile/ablation.yaml).

The ablation cells are those of the grids named `ablation*`. Within one decoder, every cell
differs from our settings in the keys it overrides; a key's baseline is its most common value
among that decoder's ablation cells (ours: each variant changes one setting, or all of the
authors' at once), so a cell's *variant* is the set of keys where it leaves the baseline, and
"ours" where it leaves none. Method keys (divergence, alpha, lambda) and where a cell sits
(decoder, latent dim, training-set size) are not settings.

Each variant is judged by the claims' own rules (pipeline.report.claims): its ELBO, MMD-VAE (and,
where the profile trains it, Stein-VAE) cells are placed in the grid a claim reads (table1 and
information_preference for the PixelCNN cells, latent_dim for the MLP ones) and the claim's
checks are formed as for the study (with Adversarial-VAE where a grid trains it beside
MMD-VAE, ablation_adversarial); the checks that need a method the variant does not train are
missing and left out, so a variant's verdict is that of the
checks it can form:
    PixelCNN: C1's NLL(MMD-VAE) < NLL(ELBO) and < NLL(Stein); C3 whole; C5's and C6's MMD-VAE
    below ELBO and Stein at d = 10
    (the variant's ELBO row, per image or the authors' 784/d, stands in the claims' ELBO (784/d)).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pandas as pd

from pipeline.report.claims import rules
from pipeline.report.claims.checks import ADV, ELBO, ELBO_A, EVALUATED, MMD, STEIN, UNREG
from pipeline.report.claims.nll import Context
from pipeline.report.claims.rules import Check
from pipeline.report.claims.statements import SPECS
from pipeline.report.doc import Section, Table, Text, missing
from pipeline.train.outcome import DIVERGED

PREFIX = "ablation"
NOT_SETTINGS = {"objective.divergence", "objective.alpha", "objective.lambda", "model.decoder",
                "model.latent_dim", "train.train_size"}
OURS = "ours"
# decoder -> (the grids its variants are judged in, the claims it speaks to)
# (every claim but C2 is stated for the PixelCNN decoder; MLP variants speak to none of them)
JUDGED = {"pixelcnn": ("table1,information_preference,latent_dim", ("c1", "c3", "c5", "c6"))}


def _grids(row: dict[str, Any]) -> list[str]:
    return [g for g in str(row.get("grids") or "").split(",") if g]


def diverged(metrics: pd.DataFrame, best: dict[str, Any]) -> list[dict[str, Any]]:
    """The ablation's cells whose training diverged (pipeline.train.outcome), with their variant:
    a variant may exist to show that a setting (the authors' WGAN-GP critic) does not train here,
    and its cells then form no check; the report names them instead."""
    return [{"decoder": decoder, "variant": label, "method": r.get("method"), "error": r.get("error")}
            for (decoder, label), rows in variants(metrics, best).items()
            for r in rows if r.get("status") == DIVERGED]


def _decoder(row: dict[str, Any], best: dict[str, Any]) -> str:
    """The row's decoder; a row the evaluation did not measure (diverged, failed) may lack it in
    older tables: then the sweep's record of the cell."""
    if isinstance(row.get("decoder"), str):
        return row["decoder"]
    entry = best.get(row.get("cell")) or {}
    return str(entry.get("decoder") or (entry.get("overrides") or {}).get("model.decoder"))


def variants(metrics: pd.DataFrame, best: dict[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(decoder, variant label) -> the ablation rows of that variant (ELBO, MMD-VAE, Stein-VAE,
    Adversarial-VAE as the profile trains them); best: the sweep's best.json, whose entries hold
    each cell's resolved overrides."""
    if "grids" not in metrics.columns:
        return {}
    rows = [{**r.to_dict(), "decoder": _decoder(r.to_dict(), best)} for _, r in metrics.iterrows()
            if any(g.startswith(PREFIX) for g in _grids(r.to_dict()))]
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for decoder in sorted({str(r.get("decoder")) for r in rows}):
        mine = [r for r in rows if str(r.get("decoder")) == decoder]
        settings = [{k: v for k, v in ((best.get(r.get("cell")) or {}).get("overrides") or {}).items()
                     if k not in NOT_SETTINGS} for r in mine]
        keys = sorted({k for s in settings for k in s})
        base = {k: Counter(json.dumps(s.get(k)) for s in settings).most_common(1)[0][0] for k in keys}
        for r, s in zip(mine, settings):
            changed = [f"{k}={s.get(k)}" for k in keys if json.dumps(s.get(k)) != base[k]]
            out.setdefault((decoder, ", ".join(changed) or OURS), []).append(r)
    return out


def judge(rows: list[dict[str, Any]], decoder: str,
          per_image: pd.DataFrame | None = None) -> dict[str, list[Check]]:
    """claim id -> the checks this variant's cells can form (missing ones left out)."""
    grids, claims = JUDGED.get(decoder, ("", ()))
    placed = [{**r, "grids": grids, "method": _claims_method(r)}
              for r in rows if r.get("status") == EVALUATED]
    if not placed:
        return {}
    trained = {r["method"] for r in placed}
    out = {}
    for spec in SPECS:
        if spec.id in claims:
            checks = [c for c in spec.judge(placed, _context(rows, per_image))
                      if c.outcome != rules.MISSING and _trained(c.what, trained)]
            out[spec.id] = checks
    return out


def _claims_method(row: dict[str, Any]) -> str:
    """The row's method as the claims name it: the variant's ELBO-family row (alpha = 0, whatever
    its scaling) stands in the claims' ELBO (784/d) row."""
    return ELBO_A if row.get("method") in (ELBO, ELBO_A) else str(row.get("method"))


def _context(rows: list[dict[str, Any]], per_image: pd.DataFrame | None) -> Context:
    reps = next((r.get("ss_repeats") for r in rows if not missing(r.get("ss_repeats"))), None)
    return Context(int(reps) if reps else None, per_image)


def _trained(what: str, trained: set[str]) -> bool:
    """A check between methods the variant trains only (ELBO, MMD-VAE and, where the profile
    trains it, Stein-VAE): a check naming another method would read the study's cells."""
    others = {STEIN, ADV, UNREG} - trained
    return not any(o in what for o in others) and (ELBO_A in what or MMD in what)


def verdicts(metrics: pd.DataFrame, best: dict[str, Any],
             per_image: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """One entry per (claim, decoder, variant): verdict, deciding margin and its s.e., checks."""
    out = []
    for (decoder, label), rows in variants(metrics, best).items():
        for claim, checks in judge(rows, decoder, per_image).items():
            if not checks:
                continue
            weakest = rules.weakest(checks)
            methods = sorted({_claims_method(r) for r in rows if r.get("status") == EVALUATED}, key=str)
            out.append({"claim": claim, "decoder": decoder, "variant": label,
                        "methods": " vs ".join(m.replace(ELBO_A, "ELBO") for m in methods),
                        "verdict": rules.verdict(checks), "margin": weakest.margin,
                        "stderr": weakest.stderr, "checks": checks})
    return sorted(out, key=lambda e: (e["claim"], e["variant"] != OURS, e["variant"]))


def _num(e: dict[str, Any]) -> str:
    se = "" if e["stderr"] is None else f" ± {e['stderr']:.2g}"
    return f"{e['margin']:+.3g}{se}"


def sentences(entries: list[dict[str, Any]], failed: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """claim id -> one sentence: the verdict under our settings and under each variant, with the
    deciding margin (positive supports the claim); and, for a claim that compares a method whose
    cell diverged under a variant (`failed`: diverged()), that it did."""
    by: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by.setdefault(e["claim"], []).append(e)
    out = {}
    for spec in SPECS:
        gone = [f for f in failed or [] if f["method"] in spec.methods]
        if gone:
            said = "; ".join(f"{f['method']} diverged with {f['variant']} ({f['error']})" for f in gone)
            by.setdefault(spec.id, [])
            out[spec.id] = f"Ablation ({gone[0]['decoder']}): {said}."
    for claim, es in by.items():
        if not es:
            continue
        ours = next((e for e in es if e["variant"] == OURS), None)
        groups: dict[str, list[str]] = {}
        for e in es:
            if e["variant"] != OURS:
                groups.setdefault(e["verdict"], []).append(f"{e['variant']} ({_num(e)})")
        head = (f"Ablation ({es[0]['decoder']}, {es[0]['methods']}): {ours['verdict']} with our settings "
                f"({_num(ours)})" if ours else f"Ablation ({es[0]['decoder']}): our settings' cells missing")
        parts = [f"{verdict} with {'; '.join(names)}" for verdict, names in sorted(groups.items())]
        out[claim] = head + ("; " + "; ".join(parts) if parts else "") + "." \
            + (" " + out[claim] if claim in out else "")
    return out


def ablation_section(entries: list[dict[str, Any]], failed: list[dict[str, Any]] | None = None) -> Section:
    """The report section: one row per (claim, variant) with its checks; the diverged cells."""
    section = Section("ablation", "Ablation: the authors' settings and scale")
    section.blocks.append(Text(__doc__.split("\n\n", 1)[1].replace("\n", " ")))
    rows = [[e["claim"].upper(), e["decoder"], e["variant"], e["verdict"].upper(), _num(e),
             "; ".join(f"{c.what}: {c.margin:+.3g} ({c.outcome})" for c in e["checks"])] for e in entries]
    header = ["Claim", "Decoder", "Variant", "Verdict", "Deciding margin ± s.e.", "Checks"]
    section.blocks.append(Table(header, rows, "Margins in the claim's unit; positive supports the claim."))
    if failed:
        section.blocks.append(Table(["Decoder", "Variant", "Method", "Why"],
                                    [[f["decoder"], f["variant"], f["method"], f["error"]] for f in failed],
                                    "Ablation cells whose training diverged: not measured, in no check."))
    return section

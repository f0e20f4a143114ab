"""The ablation's variants and verdicts (pipeline.report.claims.ablation) on a synthetic table, and
the ablation profile's grid (conf/profile/ablation.yaml)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from pipeline.params.compose import compose
from pipeline.params.grid import expand
from pipeline.report.claims import ablation, rules

ROOT = Path(__file__).resolve().parents[1]
N = 2000


def _cell(name, method, scaling, mi, grids="ablation_pixelcnn"):
    over = {"objective.divergence": "kl" if method == "ELBO" else "mmd", "model.decoder": "pixelcnn",
            "objective.scaling": scaling, "model.std_param": "softplus"}
    row = {"cell": name, "cell_label": name, "grids": grids, "method": method, "status": "EVALUATED",
           "decoder": "pixelcnn", "latent_dim": 10, "mi": mi, "latent_n": N, "test_nll": 90.0,
           "test_nll_stderr": 0.5}
    return row, {"overrides": over}


def _table(cells):
    rows, best = [], {}
    for c in cells:
        row, entry = _cell(*c)
        rows.append(row)
        best[row["cell"]] = entry
    return pd.DataFrame(rows), best


def test_variants_are_named_by_the_settings_they_change_and_judged_by_the_claims_rules():
    log_n = math.log(N)
    metrics, best = _table([
        ("a", "ELBO", "per_image", 3.0), ("b", "MMD-VAE", "per_image", log_n - 0.1),      # ours
        ("c", "ELBO", "per_image", 3.0, "ablation_pixelcnn,table1"),                    # (the same)
        ("d", "ELBO", "authors", 0.01), ("e", "MMD-VAE", "authors", log_n - 0.1),         # scaling
    ])
    metrics = metrics[metrics["cell"] != "c"]
    found = ablation.variants(metrics, best)
    assert set(found) == {("pixelcnn", "ours"), ("pixelcnn", "objective.scaling=authors")}
    entries = ablation.verdicts(metrics, best)
    c3 = {e["variant"]: e for e in entries if e["claim"] == "c3"}
    assert c3["ours"]["verdict"] == rules.NOT_REPRODUCED  # ELBO keeps 3 nats: fails
    assert c3["objective.scaling=authors"]["verdict"] == rules.REPRODUCED
    assert c3["ours"]["margin"] == __import__("pytest").approx(math.log(2) - 3.0)
    c1 = {e["variant"]: e for e in entries if e["claim"] == "c1"}
    # the pair only; the variant's per-image ELBO stands in the claims' ELBO (784/d) row
    assert [c.what.split(" [")[0] for c in c1["ours"]["checks"]] == ["NLL(MMD-VAE) < NLL(ELBO (784/d))"]
    said = ablation.sentences(entries)["c3"]
    assert said.startswith("Ablation (pixelcnn, ELBO vs MMD-VAE): not reproduced with our settings (-2.31")
    assert "reproduced with objective.scaling=authors (+" in said


def test_a_variant_that_trains_stein_forms_the_checks_against_it():
    """Stein-VAE in the ablation (for the encoder's BatchNorm): C1's MMD-VAE < Stein-VAE check is
    formed from the variant's own cells; the adversarial one, never trained there, is not."""
    metrics, best = _table([("a", "ELBO", "per_image", 3.0), ("b", "MMD-VAE", "per_image", 5.0),
                            ("s", "Stein-VAE", "per_image", 0.01)])
    best["s"]["overrides"]["objective.divergence"] = "stein"
    metrics.loc[metrics["cell"] == "s", "test_nll"] = 95.0
    c1 = next(e for e in ablation.verdicts(metrics, best) if e["claim"] == "c1" and e["variant"] == "ours")
    whats = [c.what.split(" [")[0] for c in c1["checks"]]
    assert "NLL(MMD-VAE) < NLL(Stein-VAE)" in whats and not any("Adversarial" in w for w in whats)
    assert ablation.sentences([c1])["c1"].startswith("Ablation (pixelcnn, ELBO vs MMD-VAE vs Stein-VAE)")


def test_a_diverged_variant_cell_is_named_beside_the_claims_that_compare_its_method():
    """The authors' WGAN-GP adversarial runs away here: its cell forms no check (not measured),
    and the sentences of the claims that compare Adversarial-VAE say it diverged, with why."""
    from pipeline.report.claims.ablation import diverged, sentences

    metrics, best = _table([("a", "ELBO", "per_image", 3.0), ("b", "MMD-VAE", "per_image", 5.0),
                            ("w", "MMD-VAE", "per_image", 5.0), ("v", "Adversarial-VAE", "per_image", 0.0),
                            ("j", "Adversarial-VAE", "per_image", 5.0)])
    for cell in ("w", "v"):
        best[cell]["overrides"]["objective.adversarial.loss"] = "wgan_gp"
    for cell in ("a", "b", "j"):
        best[cell]["overrides"]["objective.adversarial.loss"] = "js"
    metrics.loc[metrics["cell"] == "v", ["status", "error", "decoder"]] = \
        ["DIVERGED", "final validation NELBO 562.7", None]  # an unmeasured row: the sweep names its decoder
    metrics["ss_repeats"] = [float("nan") if c == "v" else 5.0 for c in metrics["cell"]]  # v: unmeasured
    metrics = pd.concat([metrics[metrics["cell"] == "v"], metrics[metrics["cell"] != "v"]])  # v first
    failed = diverged(metrics, best)
    assert failed == [{"decoder": "pixelcnn", "variant": "objective.adversarial.loss=wgan_gp",
                       "method": "Adversarial-VAE", "error": "final validation NELBO 562.7"}]
    said = sentences(ablation.verdicts(metrics, best), failed)
    for claim in ("c1", "c4", "c5", "c6"):  # every claim with an Adversarial-VAE row
        assert "Adversarial-VAE diverged with objective.adversarial.loss=wgan_gp (final validation NELBO" \
            in said[claim], claim
    assert "diverged" not in said.get("c3", "")
    assert said["c3"].startswith("Ablation (pixelcnn, Adversarial-VAE vs ELBO vs MMD-VAE): ")


def test_no_ablation_grid_no_ablation():
    metrics, best = _table([("a", "ELBO", "per_image", 3.0, "table1")])
    assert ablation.verdicts(metrics, best) == [] and ablation.sentences([]) == {}


def test_the_ablation_profile_adds_its_cells_to_the_laptop_study_sharing_ours():
    laptop = {c.id for c in expand(compose(ROOT, []))}
    cells = expand(compose(ROOT, ["profile=ablation"]))
    assert laptop <= {c.id for c in cells}  # the laptop study, whole
    ours = [c for c in cells if "ablation_pixelcnn" in c.grids and "table1" in c.grids]
    assert sorted(c.method for c in ours) == ["ELBO", "MMD-VAE", "Stein-VAE"]  # Table 1's cells are ours
    scaled = [c for c in cells if "ablation_pixelcnn_scaling" in c.grids and c.method == "MMD-VAE"]
    # lambda is per image under either scaling: the scaling variants' MMD-VAE runs at ours
    assert {c.overrides["objective.lambda"] for c in scaled} == {1000.0}
    # the authors' bounded std is the default: its variant switches our former softplus on
    stds = [c.overrides.get("model.std_param", "sigmoid") for c in cells
            if any(g.startswith("ablation") for g in c.grids)]
    assert stds.count("softplus") == 3 and set(stds) == {"sigmoid", "softplus"}  # ELBO, MMD, Stein
    # the authors' BatchNorm encoder is the grids' (for Stein-VAE's collapse): its variant goes without
    norms = [c.overrides.get("model.encoder_norm") for c in cells if "ablation_pixelcnn" in c.grids]
    assert norms.count("none") == 3 and set(norms) == {"batch", "none"}
    # the authors' WGAN-GP adversarial beside ours (JS), each with MMD-VAE, for C5
    adv = [c for c in cells if "ablation_adversarial" in c.grids]
    assert sorted((c.method, c.overrides["objective.adversarial.loss"]) for c in adv) == [
        ("Adversarial-VAE", "js"), ("Adversarial-VAE", "wgan_gp"), ("MMD-VAE", "js"), ("MMD-VAE", "wgan_gp")]


def test_a_profile_drops_a_grid_by_setting_it_to_null():
    p = compose(ROOT, ["profile=smoke", "sweep.grids.table1=null"])
    assert "table1" not in p.sweep.grids and "latent_dim" in p.sweep.grids


def test_a_cells_first_trial_runs_the_base_values_of_the_searched_keys(tmp_path):
    """sweep.first_trial_at_base: a one-trial cell trains at the study's lr, not a random draw;
    a cell that fixes the key itself keeps its own value; off, the first trial is random."""
    from pipeline.params.load import with_overrides
    from pipeline.sweep.search import CellSearcher

    params = with_overrides(compose(ROOT, ["profile=smoke"]), {"sweep.trials_per_cell": 2})
    cells = [c for c in expand(params) if "train.lr" not in c.fixed][:3]
    searcher = CellSearcher(params, cells, str(tmp_path), "val_loss")
    first = [searcher.suggest(f"t{i}")["suggested"] for i in range(3)]
    assert all(s == {"train.lr": params.train.lr} for s in first)
    second = searcher.suggest("t3")["suggested"]["train.lr"]
    assert second != params.train.lr and 1e-4 <= second <= 3e-3
    off = CellSearcher(with_overrides(params, {"sweep.first_trial_at_base": False}), cells, str(tmp_path),
                       "val_loss")
    assert off.suggest("t0")["suggested"]["train.lr"] != params.train.lr
    # a key one grid fixes (Fig. 4's train.lr in conf/config.yaml) is searched in the other grids' cells
    fig4 = [c for c in expand(params) if "train_size" in c.grids]
    assert fig4 and all("train.lr" in c.fixed for c in fig4)
    assert all("train.lr" in c.overrides and "train.lr" not in c.fixed for c in cells)

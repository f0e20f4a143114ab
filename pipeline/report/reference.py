"""The authors' reference figures, shipped beside the report so that the captions citing them point
at something the reader has. They are not part of the repository (their source is the study's
shared data, report.reference_dir): copied at report time when the directory exists, and the
report says so when it does not."""

from __future__ import annotations

from pathlib import Path

from pipeline.report.claims.section import PAPER, REFERENCE_ANCHOR
from pipeline.report.doc import Figure, Section, Text

KNOWN = {  # file -> what it shows (the study's names for the authors' figures)
    "authors_v1_metrics_vs_latent_dim.png": "the authors' Fig. 3 (A-E): MMD, covariance log-det, class "
                                            "mismatch, MMD over training and semi-supervised error against "
                                            "the latent dimension",
    "authors_logdet_vs_train_size.png": "the authors' Fig. 4: covariance log-det of the train (left) and "
                                        "test (right) encodings against the number of training images",
}


def reference_section(base: Path, directory: str) -> Section:
    section = Section(REFERENCE_ANCHOR, "Reference figures (the authors')")
    where = (base / directory).resolve() if not Path(directory).is_absolute() else Path(directory)
    pngs = sorted(where.glob("*.png")) if where.is_dir() else []
    if not pngs:
        section.blocks.append(Text(f"The authors' reference figures were not found in {directory} "
                                   "(report.reference_dir): the comparisons the captions cite cannot be "
                                   "checked against them in this report.", "note"))
        return section
    for png in pngs:
        what = KNOWN.get(png.name, "a reference figure")
        section.blocks.append(Figure(f"reference_{png.stem}", png.read_bytes(),
                                     f"{what[0].upper()}{what[1:]}, by the authors of {PAPER}. Source: "
                                     f"{directory}/{png.name}, copied unchanged into figures/ beside this "
                                     "report.",
                                     title=f"Reference: {png.stem}"))
    return section

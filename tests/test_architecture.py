"""The code's shape, checked from its source (scripts/import_graph.py): stages in a line, no
circles, dvc.yaml's deps what each stage runs, no giant modules."""

from __future__ import annotations

import yaml

from scripts.dvc_deps import _is_code, code_deps, declared
from scripts.import_graph import FLOORS, STAGE_FLOOR, cycles, floor, graph
from tests.conftest import ROOT

EDGES, FILES = graph(ROOT)
MAX_LINES = 300


def test_no_import_runs_up_a_floor():
    """A package imports only from its own floor and those below (errors, params, infra, data,
    model, train, then the stages sweep, evaluation, report in their order); a stage's script
    no higher than its stage."""
    up = []
    for mod, targets in EDGES.items():
        here = FLOORS.index(STAGE_FLOOR[mod.split(".")[1]]) if mod.startswith("stages.") else floor(mod)
        up += [f"{mod} -> {t}" for t in sorted(targets)
               if here is not None and floor(t) is not None and floor(t) > here]
    assert not up, up


def test_no_circle_of_modules():
    assert cycles(EDGES) == []


def test_the_checker_sees_a_circle_and_an_upward_import():
    """Known answers for the two checks above on a made-up graph."""
    edges = {"pipeline.model.a": {"pipeline.model.b"}, "pipeline.model.b": {"pipeline.model.a"},
             "pipeline.train.c": {"pipeline.report.d"}, "pipeline.report.d": set()}
    assert cycles(edges) == [["pipeline.model.a", "pipeline.model.b"]]
    assert floor("pipeline.report.d") > floor("pipeline.train.c")
    assert set(FILES) >= {"stages.prepare", "pipeline.model.objective"}  # the graph reads both trees


def test_dvc_yaml_deps_are_the_code_each_stage_runs():
    """A stage that imports a module its deps do not cover would not rerun when it changes
    (fix: python scripts/dvc_deps.py --write)."""
    have = declared((ROOT / "dvc.yaml").read_text())
    for stage, wanted in code_deps(ROOT).items():
        assert sorted(d for d in have[stage] if _is_code(d, ROOT)) == wanted, stage
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(code_deps(ROOT))


def test_no_module_over_300_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "pipeline").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long

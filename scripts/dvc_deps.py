"""dvc.yaml's code deps from the code: each stage depends on every module its script may run.

    python scripts/dvc_deps.py           # print each stage's deps as computed, and whether dvc.yaml agrees
    python scripts/dvc_deps.py --write   # rewrite the code deps of dvc.yaml (other deps are kept)

A stage's modules are the import closure of stages/<stage>.py (scripts/import_graph.py: lazy
imports included). A folder is listed when the stage runs every module in it, else its files
one by one, so a change to code a stage does not run never reruns it, and every change to code
it runs does. Deps that are not Python code (data, resources, ${...} paths) are kept as written.
tests/test_architecture.py fails when dvc.yaml and the code disagree.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's own scripts package
from scripts.import_graph import closure, graph  # noqa: E402


def code_deps(root: Path = ROOT) -> dict[str, list[str]]:
    """stage -> the sorted code deps it should declare (files, or folders it runs whole)."""
    edges, files = graph(root)
    out = {}
    for script in sorted((root / "stages").glob("*.py")):
        ran = {files[m].relative_to(root) for m in closure(edges, f"stages.{script.stem}")}
        deps: set[str] = set()
        for path in ran:
            folder = path.parent
            # the highest folder under pipeline/ whose every module the stage runs
            best = None
            while folder != Path(".") and folder.parts[0] == "pipeline" and folder != Path("pipeline"):
                if all(p.relative_to(root) in ran for p in (root / folder).rglob("*.py")):
                    best = folder
                folder = folder.parent
            deps.add(str(best) if best else str(path))
        out[script.stem] = sorted(deps)
    return out


def _is_code(dep: str, root: Path) -> bool:
    return dep.endswith(".py") or ((root / dep).is_dir() and any((root / dep).rglob("*.py")))


def declared(text: str) -> dict[str, list[str]]:
    """stage -> its deps as dvc.yaml lists them."""
    out, stage, in_deps = {}, None, False
    for line in text.splitlines():
        if m := re.fullmatch(r"  (\w+):", line):
            stage, in_deps = m.group(1), False
        elif line == "    deps:":
            in_deps = True
            out[stage] = []
        elif in_deps and (m := re.fullmatch(r"      - (.+)", line)):
            out[stage].append(m.group(1).strip())
        elif not line.startswith("      "):
            in_deps = False
    return out


def rewrite(text: str, wanted: dict[str, list[str]], root: Path = ROOT) -> str:
    lines, out, stage, in_deps = text.splitlines(), [], None, False
    for line in lines:
        if m := re.fullmatch(r"  (\w+):", line):
            stage, in_deps = m.group(1), False
        if line == "    deps:" and stage in wanted:
            in_deps = True
            out.append(line)
            out += [f"      - {d}" for d in wanted[stage]]
            continue
        if in_deps and (m := re.fullmatch(r"      - (.+)", line)):
            if not _is_code(m.group(1).strip(), root):
                out.append(line)  # data, resources, ${...}: kept
            continue
        in_deps = in_deps and line.startswith("      ")
        out.append(line)
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code deps")
    args = parser.parse_args(argv)
    path = ROOT / "dvc.yaml"
    wanted = code_deps()
    if args.write:
        path.write_text(rewrite(path.read_text(), wanted))
    have = declared(path.read_text())
    ok = True
    for stage, deps in wanted.items():
        code = [d for d in have.get(stage, []) if _is_code(d, ROOT)]
        same = sorted(code) == deps
        ok &= same
        print(f"{stage}: {'ok' if same else 'differs'}: {', '.join(deps)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

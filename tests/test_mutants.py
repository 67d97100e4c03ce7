"""scripts/mutants.py: every mutant still applies to the tree (a line it changes, changed since,
is reported as stale by `make mutants`; here it fails at once), and one is caught by its tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mutants", REPO / "scripts" / "mutants.py")
mutants = sys.modules["mutants"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutants)


def test_every_mutant_changes_one_line_found_once_and_names_its_tests():
    stale = [m for m in mutants.MUTANTS if not mutants.applies(m)]
    assert stale == []
    assert all(m.find != m.put and m.tests for m in mutants.MUTANTS)
    assert all((REPO / m.tests[0]).is_file() for m in mutants.MUTANTS)


def test_a_mutant_is_caught_and_its_file_put_back(tmp_path):
    root = tmp_path / "copy"
    for name in ("mirsearch", "tests"):
        (root / name).mkdir(parents=True)
    groups = next(m for m in mutants.MUTANTS if m.file == "mirsearch/groups.py")
    for name in ("mirsearch/__init__.py", "mirsearch/groups.py", "tests/test_groups.py"):
        (root / name).write_text((REPO / name).read_text())
    original = (root / groups.file).read_text()
    assert not mutants.survives(groups, root)
    assert (root / groups.file).read_text() == original

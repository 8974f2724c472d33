"""speed/profile_dgm.py traces real DGM iterations and attributes every op (slow tier: one
iteration at MNIST shapes in the tests' unoptimised XLA)."""

import os
import re
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "speed"))
import profile_dgm  # noqa: E402


@pytest.mark.slow
def test_the_table_splits_the_op_time_by_network_order_and_kind(monkeypatch, capsys):
  monkeypatch.setattr(sys, "argv", ["profile_dgm.py", "--task=1", "--steps=1"])
  profile_dgm.main()
  out = capsys.readouterr().out.splitlines()
  assert "dgm.conv=auto" in out[0] and "wall per iteration" in out[0]
  rows = [line.split("|")[1:-1] for line in out[3:]]
  assert rows and all(r[0].strip() in ("D", "G, losses, optimiser") for r in rows)
  assert {r[1].strip() for r in rows} <= {"0", "1", "2", "3"}
  shares = [float(r[4].strip().rstrip("%")) for r in rows]
  assert shares == sorted(shares, reverse=True) and sum(shares) <= 100.05
  # Both networks' forward passes ran.
  assert {r[0].strip() for r in rows if r[1].strip() == "0"} == {"D", "G, losses, optimiser"}
  assert re.search(r"sum of op durations \d+ ms", out[0])

"""The soak script (Benchmarks/soak.py) run briefly against Damselfly, so it never rots.

Forty seconds of the Sidekiq-shaped load (BRPOP processors with reconnect churn, connections
hanging up while blocked, push bursts, the scheduler script, MULTI heartbeats). Checked here: the
script's own bookkeeping (every job pushed was popped or is still queued), no error reply, the
server alive and answering afterwards, and RSS samples written. The RSS slope is printed, not
judged: 40 s is too short and too noisy for it; the hour run is done by hand (docs/reliability.md).
"""

import csv
import json
import os
import subprocess
import sys

from conftest import DAMSELFLY_BIN, REPO, SELFTEST_REDIS, binary_present

import pytest

SOAK_SECONDS = 40


def test_soak_bounded(tmp_path):
    if not binary_present():
        pytest.fail(f"damselfly binary not found at {DAMSELFLY_BIN}")
    if SELFTEST_REDIS:
        pytest.skip("the soak starts its own server; redis is covered by --against-redis")
    out = tmp_path / "soak"
    cmd = [sys.executable, str(REPO / "Benchmarks" / "soak.py"), "--damselfly-bin", DAMSELFLY_BIN,
           "--seconds", str(SOAK_SECONDS), "--processors", "60", "--ghosts", "4", "--churn", "8",
           "--burst-every", "1", "--sample-every", "2", "--no-slope-check", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SOAK_SECONDS + 60)
    sys.stdout.write(proc.stdout)  # the slope line, for whoever reads the CI log
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "soak-summary.json").read_text())
    rec = summary["servers"]["damselfly"]
    assert rec["alive"] and rec["ok"], rec
    assert rec["errors"] == 0, rec["first_errors"]
    # The load really happened, in every shape it promises.
    assert rec["jobs_pushed"] > 500 and rec["jobs_popped"] > 0, rec
    assert rec["jobs_pushed"] == rec["jobs_popped"] + rec["jobs_left"], rec
    assert rec["scheduler_moved"] > 0 and rec["brpop_timeouts"] > 0, rec
    assert rec["reconnects"] > 60 and rec["ghost_hangups"] > 0 and rec["transactions"] > 0, rec
    with open(out / "soak-damselfly.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= SOAK_SECONDS // 2 - 2, rows
    assert all(int(r["rss_kb"]) > 0 for r in rows), rows
    assert os.path.getsize(out / "soak-damselfly.csv") > 0

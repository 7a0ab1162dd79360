"""The audit's start-up: Great Expectations without what only unused expectations need."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO
from warehouse.audit.expectations import DEFERRED_BY_GX

IMPORT_GX = """
import json, sys
from warehouse.audit.expectations import import_gx
gx = import_gx()
deferred = {name: type(sys.modules[name]).__name__ for name in json.loads(sys.argv[1])}
# Validation works with them deferred (the suites use none of them)...
suite = gx.ExpectationSuite(name="t", expectations=[
    gx.expectations.ExpectColumnValuesToNotBeNull(column="a")])
# ...and a deferred module works on first use.
from scipy import stats
entropy = float(stats.entropy([0.5, 0.5], [0.5, 0.5]))
print(json.dumps({"deferred": deferred, "entropy": entropy,
                  "loaded": type(sys.modules["scipy.stats"]).__name__}))
"""


def test_great_expectations_is_imported_without_scipy_stats_and_altair(tmp_path):
    # A script file, not `python -c`: with the spark extra installed, GX imports pyspark, which
    # takes a `-c` program for its doctests and exits 0 before the script has run.
    script = tmp_path / "import_gx.py"
    script.write_text(IMPORT_GX)
    result = subprocess.run(
        [sys.executable, str(script), json.dumps(DEFERRED_BY_GX)],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert report["deferred"] == {name: "_DeferredModule" for name in DEFERRED_BY_GX}
    assert report["entropy"] == 0.0
    assert report["loaded"] == "module"  # imported for real on first use

"""Every file in examples/ runs to the end as a test (each checks its own results as it goes).

The list is read from the folder, so a new example is a test without touching this file;
warnings are errors in the examples too, as in the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.s3_fixtures import ACCESS_KEY, SECRET_KEY, s3_server  # noqa: F401 - fixture

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
SCRIPTS = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py"))
#: a line each example prints only once it got to the end
LAST_WORDS = {"hangar03_tutorial.py": "all three tutorials ran", "quickstart.py": "plain git sees:",
              "tour.py": "after fetch_data:",
              # issue 15, point 3: per-sample means on a LocalCluster of two worker processes
              "dask_cluster.py": "they match the in-process means",
              # issue 15, point 3: the same with the workers reading a lazy clone's samples from S3
              "dask_bucket.py": "the clone still holds no sample bytes"}
#: examples taking more than a few seconds (servers, a loader, the three tutorials): left out of the fast tier
SLOW = {"hangar03_tutorial.py", "tour.py", "dask_cluster.py", "dask_bucket.py"}
#: examples that take an S3 bucket from HANGAR_EXAMPLE_S3: given the session's SeaweedFS (no server of their own)
NEEDS_S3 = {"dask_bucket.py"}


def test_every_example_is_known():
    assert set(SCRIPTS) == set(LAST_WORDS), "add the new example's last printed line to LAST_WORDS"


@pytest.mark.parametrize("script", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in SCRIPTS])
def test_example_runs_to_the_end(tmp_path, script, request):
    (tmp_path / "work").mkdir()
    env = None
    if script in NEEDS_S3:
        server = request.getfixturevalue("s3_server")
        env = dict(os.environ, HANGAR_EXAMPLE_S3=server.new_location(), AWS_ENDPOINT_URL=server.endpoint,
                   AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1")
    proc = subprocess.run([sys.executable, "-W", "error", os.path.join(EXAMPLES, script), str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert LAST_WORDS[script] in proc.stdout, proc.stdout[-3000:]

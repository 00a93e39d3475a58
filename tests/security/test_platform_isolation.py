"""A hostile job on the local platform's process level, against the platform's own files
(issue 12, item 7: a job read other jobs' code and output under data/work, uploads,
recordings, jobs.db and tokens.db)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from gym_raas.results.layout import ResultFile, result_key
from raas_api.local.platform import Isolation, LocalPlatform, PlatformConfig
from raas_operator.jobs.model import JobSpec, Phase

SNOOP = """
    import json, os
    data = {data!r}
    found = {{}}
    for path in [data + "/jobs.db", data + "/tokens.db", data + "/work", data + "/recordings", data]:
        try:
            if os.path.isdir(path):
                found[path] = sorted(os.listdir(path))
            else:
                with open(path, "rb") as handle:
                    found[path] = len(handle.read())
        except OSError as error:
            found[path] = type(error).__name__
    print(json.dumps(found))
"""


@pytest.mark.slow
def test_a_job_cannot_read_the_platforms_store_tokens_or_other_jobs_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code = tmp_path / "snoop"
    code.mkdir()
    (code / "run.py").write_text(textwrap.dedent(SNOOP.format(data=str(data))))
    config = PlatformConfig(data_dir=data, robots=1, isolation=Isolation.PROCESS)
    with LocalPlatform(config) as platform:
        earlier = platform.submit(
            JobSpec.model_validate({"owner": "ada", "source": {"kind": "local", "path": str(code)}})
        )
        assert platform.wait(earlier.job_id, timeout_s=120).status.phase is Phase.SUCCEEDED
        record = platform.submit(
            JobSpec.model_validate({"owner": "eve", "source": {"kind": "local", "path": str(code)}})
        )
        done = platform.wait(record.job_id, timeout_s=120)
        assert done.status.phase is Phase.SUCCEEDED, done.status
        found = json.loads(platform.results.get_bytes(result_key(record.job_id, ResultFile.STDOUT)))
    assert (data / "jobs.db").stat().st_size > 0  # there was something to read
    for path, seen in found.items():
        assert seen in ("FileNotFoundError", "PermissionError", []), (path, seen)

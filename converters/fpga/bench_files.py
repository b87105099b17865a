"""The job and result files between `simulate.run_cocotb` and the cocotb benches it starts.

A bench runs inside the HDL simulator, so the job (EDGE_FPGA_JOB) and the result
(EDGE_FPGA_RESULT) cross the process boundary as JSON files named by environment variables.
"""

from __future__ import annotations

import json
import os


def read_job() -> dict:
    with open(os.environ["EDGE_FPGA_JOB"]) as fh:
        return json.load(fh)


def write_result(result: dict) -> None:
    with open(os.environ["EDGE_FPGA_RESULT"], "w") as fh:
        json.dump(result, fh)

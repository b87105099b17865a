#!/usr/bin/env bash
# Set up (as scripts/setup.sh) and run the whole test suite plus the linter.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` for the large volumes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/ruff check sdk converters hw tests bench examples
.venv/bin/python -m pytest -q "$@"

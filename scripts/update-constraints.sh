#!/usr/bin/env bash
# Resolves gridctl's dependencies afresh (newest versions pyproject.toml allows) in a scratch virtual
# environment and writes them to constraints.txt, the versions scripts/install.sh installs. Run the
# tests on the result before committing it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"${PYTHON:-.venv/bin/python}" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --upgrade pip
"$scratch/venv/bin/python" -m pip install --quiet -e '.[dev]'
{
    echo "# The versions CI tested: scripts/install.sh installs gridctl with these (pip install -c constraints.txt)."
    echo "# Refresh after changing pyproject.toml's dependencies: bash scripts/update-constraints.sh"
    "$scratch/venv/bin/python" -m pip freeze --exclude-editable
} >constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages"

#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment, cached outside the repo and
# keyed by a hash of requirements.txt, then `pip install -e .` the kit into it.
# Prints the venv path on stdout (last line).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
key=$(cat "$root/requirements.txt" | sha256sum | cut -c1-16)
cache=${DLCV_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cs-kit}
venv="$cache/venv-$key"
py=${PYTHON:-python3}
if [ ! -f "$venv/.complete" ]; then
  echo "Creating virtual environment $venv (one-off, a few minutes: torch brings ~5 GB of CUDA libraries)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  "$py" -m venv "$venv"
  # The system pip config points at a local torch CPU wheel whose build lacks torchvision's
  # compiled ops; install from the registry only.
  env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "$venv/bin/python" -m pip install -q --upgrade pip >&2
  env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "$venv/bin/python" -m pip install -q -r "$root/requirements.txt" >&2
  touch "$venv/.complete"
fi
# Editable install of this checkout (cheap; re-run every time so a fresh clone is the one used).
PYTHONWARNINGS=ignore env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$root" >&2 || {
  echo "error: 'pip install -e $root' failed" >&2; exit 1; }
echo "$venv"

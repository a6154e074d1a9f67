#!/usr/bin/env bash
# Freeze the code for a long experiment: a detached worktree of COMMIT (default HEAD) and a
# virtual environment with a non-editable install of it, so edits to the working tree do not
# change a running experiment. Prints the python to run it with.
#   experiments/freeze.sh [COMMIT] [ROOT]   (ROOT default /work/frozen or $FROZEN_ROOT)
set -euo pipefail
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
commit=$(git -C "$repo" rev-parse "${1:-HEAD}")
root=${2:-${FROZEN_ROOT:-/work/frozen}}
tree="$root/$commit"
if [ ! -d "$tree" ]; then
  mkdir -p "$root"
  git -C "$repo" worktree add --detach "$tree" "$commit" >&2
fi
if [ ! -x "$tree/.venv/bin/python" ]; then
  python3 -m venv "$tree/.venv"
  "$tree/.venv/bin/pip" install -q --upgrade pip >&2
  "$tree/.venv/bin/pip" install -q "$tree[frost]" >&2   # non-editable copy of this commit (frost: CIFAR-10-C photos)
fi
echo "$tree/.venv/bin/python $tree/experiments/cifar10_antialias.py"

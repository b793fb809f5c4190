#!/usr/bin/env bash
# Set up (first run) and start the vending machine controller with a simulated board.
# Any options are passed to the server: ./start.sh --port 8080 --no-simulator
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-venv}

if ! command -v python3 >/dev/null 2>&1; then
  echo "python3 is missing. Install it: sudo apt install python3 python3-venv python3-pip" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating the virtual environment in $VENV/ ..."
  if ! python3 -m venv "$VENV"; then
    echo "Could not create a virtual environment. Install venv: sudo apt install python3-venv" >&2
    exit 1
  fi
fi
# Reinstall only when requirements.txt changed since the last install.
if [ ! -f "$VENV/.installed" ] || [ requirements.txt -nt "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
  echo "Installing requirements ..."
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r requirements.txt
  touch "$VENV/.installed"
fi
exec "$VENV/bin/python" src/app.py "$@"

#!/usr/bin/env bash
# Set up a virtual environment with the test requirements and run the whole test suite.
# Extra options go to pytest: ./test.sh -k vend -x
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-venv}

if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating the virtual environment in $VENV/ ..."
  python3 -m venv "$VENV" || {
    echo "Could not create a virtual environment. Install venv: sudo apt install python3-venv" >&2
    exit 1
  }
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r tests/requirements.txt

# The firmware's host build needs g++ and make.
if ! command -v g++ >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing g++ and make for the firmware host tests ..."
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ make >/dev/null; } \
      || echo "Could not install g++/make: the firmware tests will fail under CI." >&2
  else
    echo "g++ or make is missing: sudo apt-get install g++ make (the firmware tests need them)." >&2
  fi
fi

# The browser tests drive Debian's Chromium: install it when we may, else they skip saying why.
if [ -z "${VENDING_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing chromium for the browser tests ..."
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
      || echo "Could not install chromium: the browser tests will be skipped." >&2
  else
    echo "No /usr/bin/chromium: the browser tests will be skipped (sudo apt-get install chromium," \
      "or set VENDING_CHROMIUM to a Chromium binary)." >&2
  fi
fi

set +e
"$VENV/bin/python" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: the suite is missing or a filter matched nothing." >&2
  exit 1
fi
exit "$status"

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

# The MQTT tests need a real broker; Debian's mosquitto is installed when we may.
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing mosquitto for the MQTT tests ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null 2>&1
    } || echo "Could not install mosquitto; the MQTT tests will be skipped." >&2
  else
    echo "mosquitto is not installed; the MQTT tests will be skipped (sudo apt install mosquitto)." >&2
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

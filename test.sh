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

# Debian packages some tests need. Installed when we may (root with apt-get); otherwise the
# tests that need them skip and say why (the firmware tests fail under CI instead).
apt_updated=0
need_package() {  # need_package PACKAGE PRESENT-TEST-COMMAND... (what it is for in $why)
  local package=$1; shift
  if "$@" >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing $package for the $why ..."
    if [ "$apt_updated" -eq 0 ]; then apt-get update -qq >/dev/null 2>&1 && apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null 2>&1 \
      || echo "Could not install $package: the $why will be skipped." >&2
  else
    echo "$package is missing: the $why will be skipped (sudo apt-get install $package)." >&2
  fi
}
why="firmware host tests"; need_package g++ command -v g++
why="firmware host tests"; need_package make command -v make
why="firmware host tests (mbedTLS)"; need_package libmbedtls-dev test -f /usr/include/mbedtls/md.h
why="firmware cross build"; need_package gcc-riscv64-unknown-elf command -v riscv64-unknown-elf-g++
why="firmware cross build"; need_package picolibc-riscv64-unknown-elf test -f /usr/lib/picolibc/riscv64-unknown-elf/picolibc.specs
why="firmware cross build"; need_package gcc-xtensa-lx106 command -v xtensa-lx106-elf-g++
why="firmware cross build"; need_package picolibc-xtensa-lx106-elf test -f /usr/lib/xtensa-lx106-elf/picolibc.specs
why="firmware cross build"; need_package qemu-user command -v qemu-riscv32
why="firmware sketch build"; need_package arduino-builder command -v arduino-builder
why="firmware fuzz target"; need_package clang command -v clang++
why="firmware fuzz target"; need_package libclang-rt-14-dev sh -c 'ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a'
if [ -z "${VENDING_CHROMIUM:-}" ]; then
  why="browser tests"; need_package chromium test -x /usr/bin/chromium
fi
why="shell script checks"; need_package shellcheck command -v shellcheck
why="MQTT tests"; need_package mosquitto sh -c 'command -v mosquitto || test -x /usr/sbin/mosquitto'

set +e
"$VENV/bin/python" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: the suite is missing or a filter matched nothing." >&2
  exit 1
fi
exit "$status"

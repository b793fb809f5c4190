#!/usr/bin/env bash
# Install the vending machine controller as a systemd service on Raspberry Pi OS or Debian.
#
#   sudo deploy/install-pi.sh [--no-apt] [--no-start]
#
# Copies this checkout to $INSTALL_DIR (default /opt/flask-vending-machine), creates its
# virtual environment, a system user ($SERVICE_USER, default vending) in the dialout group,
# the udev rule for stable ESP32 port names, and the vending-machine service, then starts it.
# Run it again after `git pull` to update. DRY_RUN=1 prints the commands without running them.
set -euo pipefail

SOURCE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INSTALL_DIR=${INSTALL_DIR:-/opt/flask-vending-machine}
SERVICE_USER=${SERVICE_USER:-vending}
DATA_DIR=/var/lib/vending-machine
UNIT_NAME=vending-machine.service
UNIT_PATH=/etc/systemd/system/$UNIT_NAME
RULES_PATH=/etc/udev/rules.d/99-esp32-serial.rules
DRY_RUN=${DRY_RUN:-0}
USE_APT=1
START=1

for arg in "$@"; do
  case "$arg" in
    --no-apt) USE_APT=0 ;;
    --no-start) START=0 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*"; }
run() {
  printf '    $ %s\n' "$*"
  if [ "$DRY_RUN" != 1 ]; then "$@"; fi
}

if [ "$DRY_RUN" != 1 ] && [ "$(id -u)" -ne 0 ]; then
  echo "Run as root: sudo $0 $*" >&2
  exit 1
fi
case "$INSTALL_DIR" in
  /*) ;;
  *) echo "INSTALL_DIR must be an absolute path, got $INSTALL_DIR" >&2; exit 2 ;;
esac

if [ "$USE_APT" = 1 ]; then
  say "Installing system packages (python3, venv, pip)"
  run apt-get update
  run apt-get install -y python3 python3-venv python3-pip
fi

if id -u "$SERVICE_USER" >/dev/null 2>&1; then
  say "User $SERVICE_USER exists; making sure it is in the dialout group"
  run usermod -a -G dialout "$SERVICE_USER"
else
  say "Creating system user $SERVICE_USER (no login, member of dialout for serial ports)"
  run useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
    --shell /usr/sbin/nologin --groups dialout "$SERVICE_USER"
fi

if [ "$SOURCE_DIR" != "$INSTALL_DIR" ]; then
  say "Copying the project from $SOURCE_DIR to $INSTALL_DIR"
  run mkdir -p "$INSTALL_DIR"
  printf '    $ tar -C %s -c . | tar -C %s -x  (without venv, .git, instance)\n' "$SOURCE_DIR" "$INSTALL_DIR"
  if [ "$DRY_RUN" != 1 ]; then
    tar -C "$SOURCE_DIR" --exclude=./venv --exclude=./.venv --exclude=./.git --exclude=./instance \
      -cf - . | tar -C "$INSTALL_DIR" --no-same-owner -xf -
  fi
  # The service user must read the code even when the checkout was private to its owner.
  run chmod -R u=rwX,go=rX "$INSTALL_DIR"
fi

say "Creating the virtual environment and installing requirements (takes a few minutes on a Pi)"
if [ ! -x "$INSTALL_DIR/venv/bin/python" ]; then
  run python3 -m venv "$INSTALL_DIR/venv"
fi
run "$INSTALL_DIR/venv/bin/python" -m pip install --quiet --upgrade pip
run "$INSTALL_DIR/venv/bin/python" -m pip install --quiet -r "$INSTALL_DIR/requirements.txt"

say "Installing the udev rule: ESP32 boards appear as /dev/esp32-<serial number>"
run install -m 0644 "$SOURCE_DIR/deploy/99-esp32-serial.rules" "$RULES_PATH"
run udevadm control --reload-rules
run udevadm trigger --subsystem-match=tty

say "Installing $UNIT_PATH (runs as $SERVICE_USER from $INSTALL_DIR, data in $DATA_DIR)"
printf '    $ sed ... deploy/%s > %s\n' "$UNIT_NAME" "$UNIT_PATH"
if [ "$DRY_RUN" != 1 ]; then
  sed -e "s|/opt/flask-vending-machine|$INSTALL_DIR|g" \
      -e "s|^User=vending$|User=$SERVICE_USER|" \
      -e "s|^Group=vending$|Group=$SERVICE_USER|" \
      "$SOURCE_DIR/deploy/$UNIT_NAME" > "$UNIT_PATH"
  chmod 0644 "$UNIT_PATH"
fi
run systemctl daemon-reload
run systemctl enable "$UNIT_NAME"
if [ "$START" = 1 ]; then
  run systemctl restart "$UNIT_NAME"
fi

say "Done. What was installed:"
echo "    code and venv: $INSTALL_DIR (owned by root, read-only for the service)"
echo "    data:          $DATA_DIR (the database; created by systemd, owned by $SERVICE_USER)"
echo "    service:       $UNIT_PATH (enabled at boot$([ "$START" = 1 ] && echo ', started now'))"
echo "    udev rule:     $RULES_PATH"
echo "Next:"
echo "    sudo systemctl status $UNIT_NAME     journalctl -u $UNIT_NAME -f"
echo "    $INSTALL_DIR/venv/bin/python $INSTALL_DIR/check_system.py"
echo "    settings (VENDING_PORT=..., VENDING_LOG_LEVEL=...): /etc/default/vending-machine, then"
echo "    sudo systemctl restart $UNIT_NAME"
# The server advertises itself over mDNS as VENDING_MDNS_NAME (default vending), not as the
# Pi's hostname; say the name it really uses.
setting() {
  if [ -r /etc/default/vending-machine ]; then sed -n "s/^$1=//p" /etc/default/vending-machine | tail -n 1; fi
}
MDNS_NAME=$(setting VENDING_MDNS_NAME); MDNS_NAME=${MDNS_NAME:-vending}
PORT=$(setting VENDING_PORT); PORT=${PORT:-5000}
echo "    open http://$MDNS_NAME.local:$PORT (or http://<this Pi's address>:$PORT) on the shop's network"
echo "    phones sign in once with the link the service printed at start:"
echo "    journalctl -u $UNIT_NAME -o cat | grep -A1 'sign in once' | tail -n 1"

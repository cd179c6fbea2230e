#!/usr/bin/env bash
# Make sure Debian's headless Chromium is present for the browser test (run by `make test`).
# Never downloads a browser through Playwright. Where Chromium truly cannot be installed (not
# root, no apt), it says why and exits 0: the browser test is then skipped with that reason.
set -uo pipefail
BROWSER="${COACHBOT_CHROMIUM:-/usr/bin/chromium}"
REASON_FILE="${1:-.venv/.browser-unavailable}"
rm -f "$REASON_FILE"
if [ -x "$BROWSER" ]; then
  exit 0
fi
why=""
if ! command -v apt-get >/dev/null 2>&1; then
  why="apt-get is not available on this machine, so Debian's chromium cannot be installed"
elif [ "$(id -u)" != "0" ] && ! sudo -n true 2>/dev/null; then
  why="installing chromium needs root (or passwordless sudo): run 'sudo apt-get install -y chromium'"
else
  SUDO=""
  [ "$(id -u)" != "0" ] && SUDO="sudo -n"
  echo ">> Installing Debian's chromium for the browser test (about 30 s)"
  export DEBIAN_FRONTEND=noninteractive
  if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; } </dev/null; then
    why="apt-get install chromium failed (see the output above)"
  fi
fi
if [ -n "$why" ] || [ ! -x "$BROWSER" ]; then
  why="${why:-chromium is not at $BROWSER after installing}"
  echo ">> Browser test will be skipped: $why"
  echo "$why" > "$REASON_FILE"
fi
exit 0

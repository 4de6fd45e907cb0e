#!/usr/bin/env bash
# Installs MariaDB's server from the distribution's packages when no server binary is
# found. orch's sandboxes start their own mariadbd processes, so the packaged service is
# not started (policy-rc.d) and never needed.
set -euo pipefail

if command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || command -v mysqld >/dev/null 2>&1 || [ -x /usr/sbin/mysqld ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "orch: no MariaDB or MySQL server found and no apt-get here; install mariadb-server with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "orch: installing mariadb-server needs root: run 'apt-get install -y mariadb-server' as root" >&2
    exit 1
  fi
fi
echo "orch: installing mariadb-server (Debian packages)..." >&2
$SUDO apt-get update -qq
created_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
if [ -n "$created_policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
echo "orch: $(/usr/sbin/mariadbd --version)" >&2

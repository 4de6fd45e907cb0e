#!/usr/bin/env bash
# Installs what orch's sandboxes and tests need, from the distribution's packages, when it
# is missing: a MariaDB server (mariadb-server; orch starts its own mariadbd processes, so
# the packaged service is never started: policy-rc.d), the openssl command (sandbox
# --tls makes its certificates with it), nftables (a test cuts orch off from a server) and
# Chromium with its WebDriver (a test drives the live topology page in a real browser) and
# etcd with etcdctl (several watchers elect a leader there; the TLS test reads etcd's keys
# with etcdctl).
set -euo pipefail

missing=()
if ! { command -v mariadbd || [ -x /usr/sbin/mariadbd ] || command -v mysqld || [ -x /usr/sbin/mysqld ]; } >/dev/null 2>&1; then
  missing+=(mariadb-server)
fi
if ! command -v openssl >/dev/null 2>&1; then
  missing+=(openssl)
fi
# nft: the partition test cuts orch (not the replicas) off from a server.
if ! { command -v nft || [ -x /usr/sbin/nft ]; } >/dev/null 2>&1; then
  missing+=(nftables)
fi
# etcd: watchers elect their leader there (the HA tests start their own).
if ! { command -v etcd || [ -x /usr/bin/etcd ]; } >/dev/null 2>&1; then
  missing+=(etcd-server)
fi
# etcdctl: the etcd TLS test reads keys with a client that is not orch's.
if ! command -v etcdctl >/dev/null 2>&1; then
  missing+=(etcd-client)
fi
if ! [ -x /usr/bin/chromium ]; then
  missing+=(chromium)
fi
if ! [ -x /usr/bin/chromedriver ]; then
  missing+=(chromium-driver)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "orch: missing ${missing[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "orch: installing ${missing[*]} needs root: run 'apt-get install -y ${missing[*]}' as root" >&2
    exit 1
  fi
fi
echo "orch: installing ${missing[*]} (Debian packages)..." >&2
$SUDO apt-get update -qq
created_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
if [ -n "$created_policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
if [ -x /usr/sbin/mariadbd ]; then echo "orch: $(/usr/sbin/mariadbd --version)" >&2; fi

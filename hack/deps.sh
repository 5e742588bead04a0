#!/usr/bin/env bash
# Installs the Debian packages the tests need, when they are missing.
# A clean machine has Go and apt-get only; everything else comes from here
# or from `make tools`.
set -euo pipefail

# have CHECK: whether what a package gives is there. Paths, not PATH
# lookups, where the binary lives in /usr/sbin (not on every user's PATH).
have() { eval "$1" >/dev/null 2>&1; }

# check|debian-package
PACKAGES=(
  "command -v gcc|gcc"                              # cgo, which the race detector of `go test -race` needs
  "test -x /usr/bin/redis-server|redis-server"      # Celery broker tests
  "test -x /usr/sbin/rabbitmq-server|rabbitmq-server"
  "/usr/bin/python3 -c 'import celery, redis'|python3-celery python3-redis" # the real Celery client and worker
  "test -x /usr/bin/celery|celery"                  # the celery command that CeleryCluster workers run on process nodes
  "test -x /usr/sbin/ip -o -x /sbin/ip|iproute2"    # process nodes: the plane's bridge and each pod's veth
  "command -v nsenter && command -v setpriv|util-linux" # process nodes: enter a pod's namespaces, run as its user
  "command -v ps && command -v pkill|procps"         # process-node tests look at and signal a pod's processes
  "ls /usr/lib/postgresql/*/bin/pg_rewind|postgresql" # PostgresCluster instances on process nodes (initdb, postgres, pg_basebackup, pg_rewind, psql)
)

missing=()
for entry in "${PACKAGES[@]}"; do
  check=${entry%%|*} pkgs=${entry#*|}
  have "$check" || missing+=($pkgs)
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo ">> installing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Debian starts a package's service on install; the tests run their own
# private servers, so keep the system-wide ones from starting.
policy=/usr/sbin/policy-rc.d
if [ ! -e $policy ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee $policy >/dev/null && $sudo chmod +x $policy
  trap '$sudo rm -f $policy' EXIT
fi
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

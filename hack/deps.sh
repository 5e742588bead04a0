#!/usr/bin/env bash
# Installs the Debian packages the tests need, when they are missing.
# A clean machine has Go and apt-get only; everything else comes from here
# or from `make tools`. Later operators add their brokers to PACKAGES.
set -euo pipefail

# command-to-check:debian-package
PACKAGES=(
  "gcc:gcc" # cgo, which the race detector of `go test -race` needs
)

missing=()
for entry in "${PACKAGES[@]}"; do
  cmd=${entry%%:*} pkg=${entry##*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
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
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

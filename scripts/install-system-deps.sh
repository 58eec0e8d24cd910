#!/usr/bin/env bash
# Installs the Debian packages the grader uses (bubblewrap for the sandbox, Fashion-MNIST, and Chromium, in which the
# tests open the class report), when running as root on a Debian-like system and they are missing. Elsewhere it only
# says what is missing.
set -euo pipefail
packages=(bubblewrap dataset-fashion-mnist chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "note: Debian packages not installed: ${missing[*]} (run as root: apt-get install ${missing[*]});" \
       "the grader falls back to rlimits without bubblewrap; the class report's browser tests skip without chromium" >&2
fi

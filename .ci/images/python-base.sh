#!/usr/bin/env bash
# Make a Debian bookworm root filesystem with Python 3.11 and a venv at /opt/venv,
# from Debian's archive alone (no image registry): the stand-in for python:3.x-slim.
#   python-base.sh OUT.tar [MIRROR]
# The local CA certificates of this host (/usr/local/share/ca-certificates) go in too,
# so pip and apt in a build behind a TLS-intercepting proxy trust what the host trusts.
set -euo pipefail
out=$1
mirror=${2:-http://deb.debian.org/debian}
cas=/usr/local/share/ca-certificates

# Like Docker's debian:*-slim: no manuals, docs (copyright kept) or translations.
mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --customize-hook="if [ -d $cas ]; then cp -r $cas/. \"\$1$cas/\"; fi" \
  --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
  --customize-hook='chroot "$1" python3 -m venv /opt/venv' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/apt/* "$1"/var/log/dpkg.log' \
  --customize-hook='find "$1"/usr -name __pycache__ -prune -exec rm -rf {} +' \
  bookworm "$out" "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"

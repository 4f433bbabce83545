#!/bin/sh
# As the official image: redis-server listens on every address with protected mode off
# (the network is the boundary), and runs as `redis` with /data as its directory.
set -eu
if [ "${1:-}" = "redis-server" ]; then
  shift
  chown redis:redis /data
  exec setpriv --reuid=redis --regid=redis --init-groups \
    redis-server --bind 0.0.0.0 --protected-mode no --dir /data "$@"
fi
exec "$@"

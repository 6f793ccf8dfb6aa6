#!/bin/sh
# Start Redis with the irisdag ACL users: hash each password from the
# environment into users.acl.template, write the ACL file next to the data,
# then hand over to the image's entrypoint, which gives /data to the redis
# user and execs redis-server as that user (PID 1: SIGTERM shuts it down
# cleanly, flushing the AOF). Redis ACL files have no comments: they are cut.
# Extra arguments go to redis-server (the loopback test: --port, --bind, --dir).
set -eu
CONF_DIR=$(dirname "$0")
ACL_OUT=${IRISDAG_REDIS_ACL_FILE:-/data/users.acl}

sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
need() { eval "v=\${$1:-}"; [ -n "$v" ] || { echo "start.sh: $1 is not set" >&2; exit 1; }; }
need IRISDAG_REDIS_ADMIN_PASSWORD
need IRISDAG_REDIS_SCORING_PASSWORD
need IRISDAG_REDIS_ROUTING_PASSWORD
need IRISDAG_REDIS_CONSUMER_PASSWORD

umask 077
grep -v -e '^#' -e '^[[:space:]]*$' "$CONF_DIR/users.acl.template" \
  | sed -e "s/@ADMIN_PASSWORD_SHA256@/$(sha "$IRISDAG_REDIS_ADMIN_PASSWORD")/" \
        -e "s/@SCORING_PASSWORD_SHA256@/$(sha "$IRISDAG_REDIS_SCORING_PASSWORD")/" \
        -e "s/@ROUTING_PASSWORD_SHA256@/$(sha "$IRISDAG_REDIS_ROUTING_PASSWORD")/" \
        -e "s/@CONSUMER_PASSWORD_SHA256@/$(sha "$IRISDAG_REDIS_CONSUMER_PASSWORD")/" \
  > "$ACL_OUT"
if command -v docker-entrypoint.sh >/dev/null 2>&1; then
  exec docker-entrypoint.sh redis-server "$CONF_DIR/redis.conf" --aclfile "$ACL_OUT" "$@"
fi
exec redis-server "$CONF_DIR/redis.conf" --aclfile "$ACL_OUT" "$@"

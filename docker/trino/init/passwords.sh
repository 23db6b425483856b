#!/bin/sh
# Writes Trino's password file (bcrypt, cost 10) for the pipeline's user and the analyst from the environment
# (docker/.env), anew at every `compose up`, so it follows a changed password. `printf` is the shell's own: no
# password is ever in a process's arguments; htpasswd reads it from stdin (-i).
set -eu
: "${TRINO_LAKEHOUSE_PASSWORD:?}" "${TRINO_ANALYST_PASSWORD:?}"
umask 077
file=/secrets/password.db
printf '%s\n' "$TRINO_LAKEHOUSE_PASSWORD" | htpasswd -niBC 10 lakehouse > "$file.new"
printf '%s\n' "$TRINO_ANALYST_PASSWORD" | htpasswd -niBC 10 analyst >> "$file.new"
# Trino runs as uid 1000 (user trino of its image).
chown 1000:1000 "$file.new"
mv "$file.new" "$file"

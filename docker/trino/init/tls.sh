#!/bin/sh
# Makes Trino's self-signed TLS keystore (PKCS12) with keytool, anew at every `compose up`, its password from the
# environment (docker/.env: -storepass:env, never an argument), and exports its certificate (PEM) for the clients
# (trino.verify in conf/docker.yaml). The certificate names the compose service `trino` and loopback.
set -eu
: "${TRINO_KEYSTORE_PASSWORD:?}"
umask 077
rm -f /secrets/keystore.p12
keytool -genkeypair -noprompt -alias trino -keyalg RSA -keysize 3072 -validity 825 -dname "CN=trino" \
    -ext "SAN=dns:trino,dns:localhost,ip:127.0.0.1" -storetype PKCS12 -keystore /secrets/keystore.p12 \
    -storepass:env TRINO_KEYSTORE_PASSWORD
keytool -exportcert -rfc -alias trino -keystore /secrets/keystore.p12 -storepass:env TRINO_KEYSTORE_PASSWORD \
    -file /ca/trino.pem.new
# Trino runs as uid 1000 (user trino of its image); the certificate is public.
chown 1000:1000 /secrets/keystore.p12
chmod 0644 /ca/trino.pem.new
mv /ca/trino.pem.new /ca/trino.pem

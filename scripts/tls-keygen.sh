#!/usr/bin/env bash
# Makes the certificates of `memfabric-validator migrate --tls DIR` with
# openssl: a CA (ca.pem; its key ca.key stays in DIR, delete it if you like)
# and, signed by it, source.pem/source.key (client) and
# destination.pem/destination.key (server, DNS name memfabric-destination).
# ECDSA P-256 keys in PKCS#8, certificates valid for 30 days.
# Usage: scripts/tls-keygen.sh DIR   (DIR is created; existing files are kept
# and the script refuses to overwrite them).
set -euo pipefail
dir=${1:?usage: scripts/tls-keygen.sh DIR}
command -v openssl >/dev/null || { echo "tls-keygen: openssl not found (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
for f in ca.pem ca.key source.pem source.key destination.pem destination.key; do
    if [ -e "$dir/$f" ]; then
        echo "tls-keygen: $dir/$f exists; not overwriting anything" >&2
        exit 2
    fi
done
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }
key "$dir/ca.key"
openssl req -x509 -new -key "$dir/ca.key" -days 30 -subj "/CN=memfabric migration CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.pem" 2>/dev/null
leaf() { # name, extensions
    local ext
    ext=$(mktemp)
    printf '%s\n' "$2" >"$ext"
    key "$dir/$1.key"
    openssl req -new -key "$dir/$1.key" -subj "/CN=memfabric-$1" -out "$dir/$1.csr" 2>/dev/null
    openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 30 \
        -extfile "$ext" -out "$dir/$1.pem" 2>/dev/null
    rm -f "$dir/$1.csr" "$ext"
}
leaf source "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
leaf destination "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:memfabric-destination"
rm -f "$dir/ca.srl"
echo "tls-keygen: wrote $dir/{ca,source,destination}.{pem,key}"

#!/usr/bin/env bash
# Verify a Hookline webhook delivery with openssl, e.g. while debugging a receiver.
#
# Usage: verify.sh SECRET HEADERS_FILE BODY_FILE
#   HEADERS_FILE holds "Name: value" lines (curl -D writes them); BODY_FILE the exact body bytes.
# Prints "valid" (exit 0) or "invalid: <why>" (exit 1).
# Shell string comparison is not constant-time: use this to debug, not in a production receiver.
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: verify.sh SECRET HEADERS_FILE BODY_FILE" >&2
  exit 2
fi
secret=$1 headers=$2 body=$3

header() {
  grep -i "^$1:" "$headers" | head -n 1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//; s/ *$//'
}
timestamp=$(header x-hookline-timestamp)
signatures=$(header x-hookline-signature)
if [[ -z "$timestamp" || -z "$signatures" ]]; then
  echo "invalid: missing X-Hookline-Signature or X-Hookline-Timestamp"
  exit 1
fi

age=$(( $(date +%s) - timestamp ))
if (( ${age#-} > 300 )); then
  echo "invalid: timestamp outside the 5 minute tolerance"
  exit 1
fi

digest=$( { printf '%s.' "$timestamp"; cat "$body"; } | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')
# During a secret rotation the header holds two space-separated signatures.
for candidate in $signatures; do
  if [[ "$candidate" == "sha256=$digest" ]]; then
    echo "valid"
    exit 0
  fi
done
echo "invalid: signature mismatch"
exit 1

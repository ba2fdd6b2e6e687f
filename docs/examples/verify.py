#!/usr/bin/env python3
"""Verify a Hookline webhook delivery with Python's standard library.

Usage: verify.py SECRET HEADERS_FILE BODY_FILE
  HEADERS_FILE holds "Name: value" lines; BODY_FILE the exact body bytes.
Prints "valid" (exit 0) or "invalid: <why>" (exit 1).
"""
import base64
import hashlib
import hmac
import sys
import time

TOLERANCE_SECONDS = 5 * 60


def verify_hookline(secret, headers, body, now=None):
    """Checks X-Hookline-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>."""
    headers = {name.lower(): value for name, value in headers.items()}
    timestamp = headers.get("x-hookline-timestamp")
    signatures = headers.get("x-hookline-signature")
    if timestamp is None or signatures is None:
        raise ValueError("missing X-Hookline-Signature or X-Hookline-Timestamp")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise ValueError("timestamp outside the 5 minute tolerance")
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    expected = "sha256=" + digest.hexdigest()
    # During a secret rotation the header holds two space-separated signatures.
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures.split()):
        raise ValueError("signature mismatch")


def verify_standard_webhooks(secret, headers, body, now=None):
    """Checks webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>."""
    headers = {name.lower(): value for name, value in headers.items()}
    message_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (message_id and timestamp and signatures):
        raise ValueError("missing webhook-id, webhook-timestamp or webhook-signature")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise ValueError("timestamp outside the 5 minute tolerance")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures.split()):
        raise ValueError("signature mismatch")


def read_headers(path):
    headers = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip()] = value.strip()
    return headers


def main(argv):
    if len(argv) != 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    secret, headers_path, body_path = argv[1:]
    headers = read_headers(headers_path)
    with open(body_path, "rb") as body_file:
        body = body_file.read()
    try:
        verify_hookline(secret, headers, body)
        verify_standard_webhooks(secret, headers, body)
    except ValueError as why:
        print(f"invalid: {why}")
        return 1
    print("valid")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env node
// Verify a Hookline webhook delivery with Node's standard library.
//
// Usage: node verify.js SECRET HEADERS_FILE BODY_FILE
//   HEADERS_FILE holds "Name: value" lines; BODY_FILE the exact body bytes.
// Prints "valid" (exit 0) or "invalid: <why>" (exit 1).
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");

const TOLERANCE_SECONDS = 5 * 60;

// Checks X-Hookline-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>.
function verifyHookline(secret, headers, body, now = Date.now() / 1000) {
  const timestamp = headers["x-hookline-timestamp"];
  const signatures = headers["x-hookline-signature"];
  if (!timestamp || !signatures) {
    throw new Error("missing X-Hookline-Signature or X-Hookline-Timestamp");
  }
  if (Math.abs(now - Number(timestamp)) > TOLERANCE_SECONDS) {
    throw new Error("timestamp outside the 5 minute tolerance");
  }
  const expected = Buffer.from(
    "sha256=" +
      crypto
        .createHmac("sha256", secret)
        .update(Buffer.concat([Buffer.from(`${timestamp}.`), body]))
        .digest("hex"),
  );
  // During a secret rotation the header holds two space-separated signatures.
  const matches = signatures.split(" ").some((candidate) => {
    const given = Buffer.from(candidate);
    return given.length === expected.length && crypto.timingSafeEqual(given, expected);
  });
  if (!matches) {
    throw new Error("signature mismatch");
  }
}

function readHeaders(path) {
  const headers = {};
  for (const line of fs.readFileSync(path, "utf8").split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon > 0) {
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
  }
  return headers;
}

function main(argv) {
  if (argv.length !== 3) {
    console.error("usage: node verify.js SECRET HEADERS_FILE BODY_FILE");
    return 2;
  }
  const [secret, headersPath, bodyPath] = argv;
  try {
    verifyHookline(secret, readHeaders(headersPath), fs.readFileSync(bodyPath));
  } catch (why) {
    console.log(`invalid: ${why.message}`);
    return 1;
  }
  console.log("valid");
  return 0;
}

module.exports = { verifyHookline };

if (require.main === module) {
  process.exitCode = main(process.argv.slice(2));
}

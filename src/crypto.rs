//! Secrets at rest: authenticated encryption under the server's master key, and the random
//! material (tokens, keys) Hookline hands out.
//!
//! A sealed value is `version(1) ‖ key id(4) ‖ nonce(24) ‖ XChaCha20-Poly1305 ciphertext+tag`.
//! The associated data names where the value lives (table, column, row id), so a ciphertext copied
//! into another row or column does not decrypt. The key id lets a rotated-out key still open old
//! rows while new rows use the current key.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

const FORMAT_VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// Why a sealed value could not be opened or a key could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed with key {0}, which is not configured (master_key / previous_master_keys)")]
    UnknownKey(String),
    #[error("sealed value failed authentication: wrong key, or the value was moved or altered")]
    Tampered,
}

/// `count` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    bytes
}

/// A fresh random secret: `prefix` followed by URL-safe base64 of 32 random bytes.
pub fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// Hex SHA-256, for values that only ever need to be recognised again (API tokens).
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// A short fingerprint of a stored (sealed) secret: forms that replace a secret carry it, so a
/// form sent twice (a reload, a double click) is recognised instead of replacing the secret again.
pub fn fingerprint(sealed: &[u8]) -> String {
    hex::encode(&Sha256::digest(sealed)[..8])
}

/// Decodes a configured master key: base64 of exactly 32 bytes. The error never repeats the input.
pub fn decode_key(encoded: &str) -> Result<[u8; 32], String> {
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|_| "must be base64 (e.g. from `openssl rand -base64 32`)".to_owned())?;
    bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| format!("must decode to 32 bytes, not {}", bytes.len()))
}

/// A new master key, base64-encoded as configuration expects it.
pub fn generate_key() -> String {
    STANDARD.encode(random_bytes::<32>())
}

struct Key {
    id: [u8; KEY_ID_LEN],
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(material: &[u8; 32]) -> Key {
        let digest = Sha256::digest([b"hookline key id:".as_slice(), material].concat());
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Key {
            id,
            cipher: XChaCha20Poly1305::new(material.into()),
        }
    }
}

/// The keyring that seals and opens secrets at rest: the current key first, retired keys after.
pub struct Cipher {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cipher")
            .field("current_key_id", &self.current_key_id())
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Cipher {
    /// A keyring from the current key and any retired ones.
    pub fn new(current: [u8; 32], retired: &[[u8; 32]]) -> Cipher {
        let keys = std::iter::once(&current)
            .chain(retired)
            .map(Key::new)
            .collect();
        Cipher { keys }
    }

    /// The id of the key new values are sealed with, as hex (safe to log).
    pub fn current_key_id(&self) -> String {
        hex::encode(self.keys[0].id)
    }

    /// Encrypts `plaintext` bound to `context` (e.g. `"endpoints.secret:wh_…"`).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let key = &self.keys[0];
        let nonce = random_bytes::<NONCE_LEN>();
        let ciphertext = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory input");
        let mut sealed = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        sealed.push(FORMAT_VERSION);
        sealed.extend_from_slice(&key.id);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Decrypts a value sealed for the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < HEADER_LEN + 16 || sealed[0] != FORMAT_VERSION {
            return Err(CryptoError::Malformed);
        }
        let key_id = &sealed[1..1 + KEY_ID_LEN];
        let nonce = &sealed[1 + KEY_ID_LEN..HEADER_LEN];
        let key = self
            .keys
            .iter()
            .find(|key| key.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(hex::encode(key_id)))?;
        key.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Tampered)
    }

    /// Seals a UTF-8 secret.
    pub fn seal_str(&self, context: &str, plaintext: &str) -> Vec<u8> {
        self.seal(context, plaintext.as_bytes())
    }

    /// Opens a value sealed by [`Cipher::seal_str`].
    pub fn open_str(&self, context: &str, sealed: &[u8]) -> Result<String, CryptoError> {
        String::from_utf8(self.open(context, sealed)?).map_err(|_| CryptoError::Malformed)
    }
}

/// Reads a key file, or creates one (mode 0600) when `create` is set and it does not exist yet.
/// Returns the key and whether it was just created.
pub fn load_or_create_key_file(path: &Path, create: bool) -> anyhow::Result<([u8; 32], bool)> {
    use anyhow::Context;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = decode_key(&text)
                .map_err(|why| anyhow::anyhow!("master key file {}: {why}", path.display()))?;
            Ok((key, false))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && create => {
            let encoded = generate_key();
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options
                .open(path)
                .with_context(|| format!("creating master key file {}", path.display()))?;
            file.write_all(format!("{encoded}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing master key file {}", path.display()))?;
            let key = decode_key(&encoded).expect("a generated key decodes");
            Ok((key, true))
        }
        Err(error) => {
            Err(error).with_context(|| format!("reading master key file {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(seed: u8) -> Cipher {
        Cipher::new([seed; 32], &[])
    }

    #[test]
    fn round_trips_and_uses_fresh_nonces() {
        let cipher = cipher(1);
        let a = cipher.seal_str("t.c:1", "whsec_abc");
        let b = cipher.seal_str("t.c:1", "whsec_abc");
        assert_ne!(a, b, "same plaintext sealed twice must differ");
        assert_eq!(cipher.open_str("t.c:1", &a).unwrap(), "whsec_abc");
        assert!(
            !a.windows(9).any(|w| w == b"whsec_abc"),
            "plaintext visible"
        );
    }

    #[test]
    fn a_value_moved_to_another_row_does_not_open() {
        let cipher = cipher(1);
        let sealed = cipher.seal_str("services.secret:svc_1", "s3cret");
        assert_eq!(
            cipher.open_str("services.secret:svc_2", &sealed),
            Err(CryptoError::Tampered)
        );
    }

    #[test]
    fn altered_bytes_and_wrong_keys_are_refused() {
        let sealed = cipher(1).seal_str("ctx", "value");
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(cipher(1).open("ctx", &flipped), Err(CryptoError::Tampered));
        assert!(matches!(
            cipher(2).open("ctx", &sealed),
            Err(CryptoError::UnknownKey(_))
        ));
        assert_eq!(
            cipher(1).open("ctx", &sealed[..10]),
            Err(CryptoError::Malformed)
        );
    }

    #[test]
    fn retired_keys_still_open_old_values() {
        let old = cipher(1).seal_str("ctx", "value");
        let rotated = Cipher::new([2; 32], &[[1; 32]]);
        assert_eq!(rotated.open_str("ctx", &old).unwrap(), "value");
        let new = rotated.seal_str("ctx", "value");
        assert_eq!(
            &new[1..5],
            &Key::new(&[2; 32]).id,
            "new values use the current key"
        );
    }

    #[test]
    fn key_decoding_explains_without_echoing() {
        assert!(decode_key(&generate_key()).is_ok());
        let error = decode_key("c2hvcnQ=").unwrap_err();
        assert!(error.contains("32 bytes"), "{error}");
        assert!(
            !decode_key("not base64!")
                .unwrap_err()
                .contains("not base64!")
        );
    }

    #[test]
    fn key_files_are_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db.key");
        let (created_key, created) = load_or_create_key_file(&path, true).unwrap();
        assert!(created);
        let (read_key, created_again) = load_or_create_key_file(&path, true).unwrap();
        assert!(!created_again);
        assert_eq!(created_key, read_key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(load_or_create_key_file(&dir.path().join("absent"), false).is_err());
    }

    #[test]
    fn tokens_are_prefixed_and_distinct() {
        let a = random_token("hkl_");
        assert!(a.starts_with("hkl_") && a.len() == 4 + 43, "{a}");
        assert_ne!(a, random_token("hkl_"));
        assert_eq!(sha256_hex("abc").len(), 64);
    }
}

//! Session tickets shared across replicas: `session_ticket_keys = "secrets/tickets"`, a file of
//! keys the operator rotates like nginx's `ssl_session_ticket_key`, so a client that resumes
//! lands on any replica behind the balancer.
//!
//! File format: one or more 80-byte keys back to back, binary (`openssl rand 80 > tickets`;
//! rotation prepends a new key: `{ openssl rand 80; head -c 160 tickets; } > tickets.new`).
//! The first key encrypts; every key decrypts. Each key is a 16-byte name (sent in clear at
//! the start of a ticket, to find the key) and 64 secret bytes, from which HKDF-SHA256 derives
//! an AES-256-GCM key. A ticket is `name || nonce || AES-256-GCM(session state, aad = name)`;
//! all primitives are aws-lc-rs's (the provider rustls already uses). Without this setting each
//! process keeps rustls's own rotating keys, and tickets only resume on the process that issued
//! them.

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use rustls::server::ProducesTickets;

use crate::files::Files;

/// Bytes per key in the file: 16 name + 64 secret, as nginx's 80-byte keys.
pub const KEY_LEN: usize = 80;
const NAME_LEN: usize = 16;
/// More keys than this is a mistake (a wrong file): rotation needs the current and a few old.
const MAX_KEYS: usize = 16;
/// Lifetime hint sent to clients. Tickets stop resuming once the operator removes their key;
/// this only tells clients not to try after it (rustls's own ticketer rotates every 6 h and
/// keeps the previous key: 12 h as well).
const LIFETIME_SECS: u32 = 12 * 60 * 60;
const HKDF_INFO: &[u8] = b"pinproxy session ticket key, AES-256-GCM";

struct Key {
    name: [u8; NAME_LEN],
    aead: RandomizedNonceKey,
}

/// A [`ProducesTickets`] over the keys of one file.
pub struct SharedTicketer {
    keys: Vec<Key>,
}

impl std::fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material; the count is what an operator can check.
        f.debug_struct("SharedTicketer")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Reads the key file; the error is a message for the `session_ticket_keys` field.
pub fn load(path: &Path, files: &mut Files) -> Result<Arc<dyn ProducesTickets>, String> {
    let data = files
        .read(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let ticketer =
        SharedTicketer::from_bytes(&data).map_err(|m| format!("{}: {m}", path.display()))?;
    Ok(Arc::new(ticketer))
}

impl SharedTicketer {
    pub fn from_bytes(data: &[u8]) -> Result<Self, String> {
        if data.is_empty() || !data.len().is_multiple_of(KEY_LEN) {
            return Err(format!(
                "holds {} bytes; expected one or more {KEY_LEN}-byte keys (make one with `openssl rand {KEY_LEN}`)",
                data.len()
            ));
        }
        let count = data.len() / KEY_LEN;
        if count > MAX_KEYS {
            return Err(format!(
                "holds {count} keys; at most {MAX_KEYS} (the current one first, then the previous ones)"
            ));
        }
        let mut keys: Vec<Key> = Vec::with_capacity(count);
        for (i, chunk) in data.chunks_exact(KEY_LEN).enumerate() {
            let (name, secret) = chunk.split_at(NAME_LEN);
            if chunk.iter().all(|b| *b == chunk[0]) {
                return Err(format!(
                    "key #{} is all one byte value: a placeholder, not a key",
                    i + 1
                ));
            }
            let mut name_arr = [0u8; NAME_LEN];
            name_arr.copy_from_slice(name);
            if keys.iter().any(|k| k.name == name_arr) {
                return Err(format!(
                    "key #{} has the name (first 16 bytes) of an earlier key",
                    i + 1
                ));
            }
            let mut aes = [0u8; 32];
            Salt::new(HKDF_SHA256, &[])
                .extract(secret)
                .expand(&[HKDF_INFO], &AES_256_GCM)
                .and_then(|okm| okm.fill(&mut aes))
                .map_err(|_| "cannot derive an AES key".to_string())?;
            let aead = RandomizedNonceKey::new(&AES_256_GCM, &aes)
                .map_err(|_| "cannot make an AES-256-GCM key".to_string())?;
            keys.push(Key {
                name: name_arr,
                aead,
            });
        }
        Ok(SharedTicketer { keys })
    }
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.keys.first()?;
        let mut sealed = plain.to_vec();
        let nonce = key
            .aead
            .seal_in_place_append_tag(Aad::from(key.name), &mut sealed)
            .ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(&key.name);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        // Attacker-controlled input: every length is checked before slicing.
        if cipher.len() < NAME_LEN + NONCE_LEN {
            return None;
        }
        let (name, rest) = cipher.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let key = self.keys.iter().find(|k| k.name[..] == *name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(key.name), &mut buf)
            .ok()?;
        let len = plain.len();
        buf.truncate(len);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> Vec<u8> {
        (0..KEY_LEN as u8)
            .map(|i| i.wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn first_key_encrypts_and_every_key_decrypts() {
        let old = SharedTicketer::from_bytes(&key(1)).expect("one key");
        let ticket = old.encrypt(b"session state").expect("sealed");
        assert_eq!(&ticket[..NAME_LEN], &key(1)[..NAME_LEN]);
        let rotated = SharedTicketer::from_bytes(&[key(2), key(1)].concat()).expect("two keys");
        assert_eq!(
            rotated.decrypt(&ticket).as_deref(),
            Some(&b"session state"[..])
        );
        let fresh = rotated.encrypt(b"new").expect("sealed");
        assert_eq!(&fresh[..NAME_LEN], &key(2)[..NAME_LEN]);
        assert_eq!(old.decrypt(&fresh), None, "an unknown key name");
        let retired = SharedTicketer::from_bytes(&key(2)).expect("one key");
        assert_eq!(
            retired.decrypt(&ticket),
            None,
            "a removed key no longer resumes"
        );
    }

    #[test]
    fn tampered_and_short_tickets_are_refused() {
        let t = SharedTicketer::from_bytes(&key(3)).expect("key");
        let mut ticket = t.encrypt(b"state").expect("sealed");
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert_eq!(t.decrypt(&ticket), None);
        assert_eq!(t.decrypt(&ticket[..20]), None);
        assert_eq!(t.decrypt(&[]), None);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(
            SharedTicketer::from_bytes(&[7u8; 48])
                .err()
                .is_some_and(|m| m.contains("48 bytes"))
        );
        assert!(
            SharedTicketer::from_bytes(&[0u8; 80])
                .err()
                .is_some_and(|m| m.contains("placeholder"))
        );
        assert!(
            SharedTicketer::from_bytes(&[key(1), key(1)].concat())
                .err()
                .is_some_and(|m| m.contains("name"))
        );
        assert!(SharedTicketer::from_bytes(&[]).is_err());
    }
}

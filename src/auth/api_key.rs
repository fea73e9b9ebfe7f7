//! The simple app key: a header whose value's SHA-256 must be one of the configured digests.
//!
//! The config holds digests, not keys, so a leaked config leaks no key; the comparison runs in
//! constant time over every digest, so timing tells nothing about how close a guess was.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::{AuthResult, Failure};

#[derive(Debug)]
pub struct ApiKeys {
    sha256: Vec<[u8; 32]>,
}

impl ApiKeys {
    pub fn new(sha256: Vec<[u8; 32]>) -> Self {
        ApiKeys { sha256 }
    }

    pub fn check(&self, key: &[u8]) -> Result<(), Failure> {
        let digest = Sha256::digest(key);
        let mut found = Choice::from(0);
        for d in &self.sha256 {
            found |= d.as_slice().ct_eq(digest.as_slice());
        }
        if bool::from(found) {
            Ok(())
        } else {
            Err(Failure::new(
                AuthResult::UnknownKey,
                "key matches none of the configured sha256 digests",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_listed_digest_passes() {
        let keys = ApiKeys::new(vec![Sha256::digest(b"app-key-1").into()]);
        assert!(keys.check(b"app-key-1").is_ok());
        assert_eq!(
            keys.check(b"app-key-2").map_err(|f| f.result),
            Err(AuthResult::UnknownKey)
        );
    }
}

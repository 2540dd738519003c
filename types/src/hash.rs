use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::TypesError;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);
    pub const LEN: usize = 32;

    /// SHA-256 of `bytes`.
    pub fn digest(bytes: &[u8]) -> Hash {
        Hash(Sha256::digest(bytes).into())
    }

    /// SHA-256 of the concatenation of `parts`, without allocating it.
    pub fn digest_parts(parts: &[&[u8]]) -> Hash {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        Hash(hasher.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Hash, TypesError> {
        Ok(Hash(decode_hex_array(s, "hash")?))
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Hash, TypesError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| TypesError::BadLength {
            what: "hash",
            expected: 32,
            got: bytes.len(),
        })?;
        Ok(Hash(array))
    }
}

pub(crate) fn decode_hex_array<const N: usize>(
    s: &str,
    what: &'static str,
) -> Result<[u8; N], TypesError> {
    let bytes = hex::decode(s).map_err(|e| TypesError::BadHex {
        what,
        reason: e.to_string(),
    })?;
    let got = bytes.len();
    bytes.try_into().map_err(|_| TypesError::BadLength {
        what,
        expected: N,
        got,
    })
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits identify a hash in logs; Display gives all 64.
        write!(f, "Hash({})", &self.to_hex()[..8])
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_known_answer() {
        // SHA-256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(
            Hash::digest(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Hash::digest_parts(&[b"a", b"bc"]), Hash::digest(b"abc"));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Hash::digest(b"x");
        assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
        assert!(matches!(
            Hash::from_hex("abcd"),
            Err(TypesError::BadLength { got: 2, .. })
        ));
        assert!(matches!(
            Hash::from_hex("zz"),
            Err(TypesError::BadHex { .. })
        ));
    }
}

//! ed25519 keys and signatures (ed25519-consensus, ZIP-215 rules), and
//! domain-separated signing.

use std::fmt;

use ed25519_consensus::{SigningKey, VerificationKey};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{TypesError, hash::decode_hex_array, limits};

/// What a signature is for. Each domain is a distinct byte string prefixed to
/// the signed message, and no prefix is a prefix of another, so a signature
/// made in one domain never verifies in another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    /// A transaction body (`b"commons/tx/v1"`, fixed by the design).
    Tx,
    /// A consensus vote for a block.
    Vote,
    /// A consensus timeout for a round.
    Timeout,
    /// A leader's block proposal.
    Proposal,
    /// A validator proving its key when opening a peer connection.
    PeerHandshake,
}

impl Domain {
    pub const ALL: [Domain; 5] = [
        Domain::Tx,
        Domain::Vote,
        Domain::Timeout,
        Domain::Proposal,
        Domain::PeerHandshake,
    ];

    pub fn prefix(self) -> &'static [u8] {
        match self {
            Domain::Tx => b"commons/tx/v1",
            Domain::Vote => b"commons/vote/v1",
            Domain::Timeout => b"commons/timeout/v1",
            Domain::Proposal => b"commons/proposal/v1",
            Domain::PeerHandshake => b"commons/handshake/v1",
        }
    }
}

/// A chain's identity, mixed into every signed message so signatures never
/// travel between chains. 1 to 32 bytes of `[a-z0-9-]`: the restricted
/// alphabet and the fixed domain prefixes keep `prefix || chain_id || body`
/// unambiguous in practice, and transaction bodies repeat the chain id, which
/// execution checks against the chain's own.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChainId(String);

impl ChainId {
    pub fn new(id: impl Into<String>) -> Result<ChainId, TypesError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= limits::MAX_CHAIN_ID_BYTES
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(ChainId(id))
        } else {
            Err(TypesError::BadChainId { got: id })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ChainId {
    type Error = TypesError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ChainId::new(s)
    }
}

impl From<ChainId> for String {
    fn from(c: ChainId) -> String {
        c.0
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.0)
    }
}

/// The bytes a signature in `domain` on `chain` covers:
/// `domain prefix || chain_id || message`.
pub fn signing_bytes(domain: Domain, chain: &ChainId, message: &[u8]) -> Vec<u8> {
    let prefix = domain.prefix();
    let mut out = Vec::with_capacity(prefix.len() + chain.0.len() + message.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(chain.0.as_bytes());
    out.extend_from_slice(message);
    out
}

/// An ed25519 public key, kept as its 32-byte encoding; it is an account id
/// and a validator id. Whether the bytes are a valid curve point is decided
/// when a signature is checked, so a bad key is just a failing signature.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub const LEN: usize = 32;

    pub fn from_slice(bytes: &[u8]) -> Result<PublicKey, TypesError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| TypesError::BadLength {
            what: "public key",
            expected: 32,
            got: bytes.len(),
        })?;
        Ok(PublicKey(array))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<PublicKey, TypesError> {
        Ok(PublicKey(decode_hex_array(s, "public key")?))
    }

    /// Checks `signature` over `signing_bytes(domain, chain, message)`.
    pub fn verify(
        &self,
        domain: Domain,
        chain: &ChainId,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), TypesError> {
        self.verify_raw(&signing_bytes(domain, chain, message), signature)
    }

    /// Checks `signature` over already domain-prefixed bytes.
    pub fn verify_raw(&self, signed: &[u8], signature: &Signature) -> Result<(), TypesError> {
        let key = VerificationKey::try_from(self.0).map_err(|_| TypesError::BadSignature)?;
        key.verify(&signature.to_ed25519(), signed)
            .map_err(|_| TypesError::BadSignature)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", &self.to_hex()[..8])
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicKey::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// An ed25519 signature in its 64-byte encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    pub const LEN: usize = 64;

    pub fn from_slice(bytes: &[u8]) -> Result<Signature, TypesError> {
        let array: [u8; 64] = bytes.try_into().map_err(|_| TypesError::BadLength {
            what: "signature",
            expected: 64,
            got: bytes.len(),
        })?;
        Ok(Signature(array))
    }

    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    pub(crate) fn to_ed25519(self) -> ed25519_consensus::Signature {
        ed25519_consensus::Signature::from(self.0)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(&self.0[..8]))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Signature(
            decode_hex_array(&s, "signature").map_err(serde::de::Error::custom)?,
        ))
    }
}

/// An ed25519 signing key. Its seed never appears in `Debug` output; it is
/// exported only through [`SecretKey::to_seed`].
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    pub fn generate<R: RngCore + CryptoRng>(rng: R) -> SecretKey {
        SecretKey(SigningKey::new(rng))
    }

    /// The key whose seed is `seed`: deterministic, for tests, the simulator
    /// and keys loaded from files.
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from(seed))
    }

    pub fn to_seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verification_key().to_bytes())
    }

    /// Signs `signing_bytes(domain, chain, message)`.
    pub fn sign(&self, domain: Domain, chain: &ChainId, message: &[u8]) -> Signature {
        self.sign_raw(&signing_bytes(domain, chain, message))
    }

    /// Signs already domain-prefixed bytes.
    pub fn sign_raw(&self, signed: &[u8]) -> Signature {
        Signature(self.0.sign(signed).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {:?})", self.public_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> ChainId {
        ChainId::new("test-chain").unwrap()
    }

    #[test]
    fn sign_and_verify_in_one_domain() {
        let key = SecretKey::from_seed([7; 32]);
        let sig = key.sign(Domain::Tx, &chain(), b"body");
        assert_eq!(
            key.public_key().verify(Domain::Tx, &chain(), b"body", &sig),
            Ok(())
        );
        assert_eq!(
            key.public_key().verify(Domain::Tx, &chain(), b"bodz", &sig),
            Err(TypesError::BadSignature)
        );
    }

    #[test]
    fn signatures_never_cross_domains() {
        let key = SecretKey::from_seed([9; 32]);
        for signed_in in Domain::ALL {
            let sig = key.sign(signed_in, &chain(), b"same message");
            for checked_in in Domain::ALL {
                let result = key
                    .public_key()
                    .verify(checked_in, &chain(), b"same message", &sig);
                assert_eq!(
                    result.is_ok(),
                    signed_in == checked_in,
                    "{signed_in:?} vs {checked_in:?}"
                );
            }
        }
    }

    #[test]
    fn vote_signature_never_verifies_as_transaction() {
        let key = SecretKey::from_seed([3; 32]);
        let vote = key.sign(Domain::Vote, &chain(), b"block");
        assert_eq!(
            key.public_key()
                .verify(Domain::Tx, &chain(), b"block", &vote),
            Err(TypesError::BadSignature)
        );
    }

    #[test]
    fn no_domain_prefix_is_a_prefix_of_another() {
        for a in Domain::ALL {
            for b in Domain::ALL {
                if a != b {
                    assert!(!b.prefix().starts_with(a.prefix()), "{a:?} prefixes {b:?}");
                }
            }
        }
    }

    #[test]
    fn signatures_never_cross_chains() {
        let key = SecretKey::from_seed([5; 32]);
        let other = ChainId::new("other-chain").unwrap();
        let sig = key.sign(Domain::Tx, &chain(), b"body");
        assert!(
            key.public_key()
                .verify(Domain::Tx, &other, b"body", &sig)
                .is_err()
        );
    }

    #[test]
    fn chain_id_rules() {
        assert!(ChainId::new("commons-1").is_ok());
        assert!(ChainId::new("").is_err());
        assert!(ChainId::new("Caps").is_err());
        assert!(ChainId::new("a".repeat(33)).is_err());
        assert!(ChainId::new("a".repeat(32)).is_ok());
    }

    #[test]
    fn secret_key_debug_hides_the_seed() {
        let key = SecretKey::from_seed([0xab; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains("abab"), "{shown}");
    }

    #[test]
    fn malformed_key_and_signature_lengths_are_errors() {
        assert!(matches!(
            PublicKey::from_slice(&[0; 31]),
            Err(TypesError::BadLength {
                expected: 32,
                got: 31,
                ..
            })
        ));
        assert!(matches!(
            Signature::from_slice(&[0; 65]),
            Err(TypesError::BadLength {
                expected: 64,
                got: 65,
                ..
            })
        ));
    }
}

//! The transaction envelope: `SignedTx { body, signatures }`, decoded under
//! explicit limits. Signed bytes are carried exactly as signed and never
//! re-encoded. The tx id commits to the body and the signers' keys, not to
//! the signatures ([`SignedTx::id`]; `docs/protocol.md`, "Transaction id").

use prost::Message;
use sha2::{Digest, Sha256};

pub use commons_proto::v1 as pb;

/// The tx id's domain: version 2, the id of body and signers (version 1 was
/// `SHA-256(body)`).
const TX_ID_DOMAIN: &[u8] = b"commons/tx-id/v2";

use crate::{
    ChainId, Domain, Hash, PublicKey, SecretKey, Signature, TypesError, batch::VerifyItem, limits,
    signing_bytes,
};

/// A transaction as it travels: the body bytes and who signed them. The first
/// signer pays the fee and owns the nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTx {
    pub body: Vec<u8>,
    pub signatures: Vec<(PublicKey, Signature)>,
}

impl SignedTx {
    /// Decodes an encoded `commons.v1.SignedTx`, refusing anything over
    /// [`limits::MAX_TX_BYTES`] before parsing it, and malformed keys,
    /// signatures or signer counts after.
    pub fn decode(bytes: &[u8]) -> Result<SignedTx, TypesError> {
        if bytes.len() > limits::MAX_TX_BYTES {
            return Err(TypesError::TooLarge {
                what: "transaction",
                got: bytes.len(),
                limit: limits::MAX_TX_BYTES,
            });
        }
        let raw = pb::SignedTx::decode(bytes).map_err(|e| TypesError::Decode {
            what: "transaction",
            reason: e.to_string(),
        })?;
        SignedTx::from_proto(raw)
    }

    /// Checks a decoded protobuf envelope against the limits.
    pub fn from_proto(raw: pb::SignedTx) -> Result<SignedTx, TypesError> {
        if raw.signatures.is_empty() {
            return Err(TypesError::Decode {
                what: "transaction",
                reason: "no signatures".into(),
            });
        }
        if raw.signatures.len() > limits::MAX_TX_SIGNATURES {
            return Err(TypesError::TooMany {
                what: "transaction signatures",
                got: raw.signatures.len(),
                limit: limits::MAX_TX_SIGNATURES,
            });
        }
        if raw.body.len() > limits::MAX_TX_BYTES {
            return Err(TypesError::TooLarge {
                what: "transaction body",
                got: raw.body.len(),
                limit: limits::MAX_TX_BYTES,
            });
        }
        let signatures = raw
            .signatures
            .iter()
            .map(|s| {
                Ok((
                    PublicKey::from_slice(&s.public_key)?,
                    Signature::from_slice(&s.signature)?,
                ))
            })
            .collect::<Result<Vec<_>, TypesError>>()?;
        Ok(SignedTx {
            body: raw.body.to_vec(),
            signatures,
        })
    }

    pub fn to_proto(&self) -> pb::SignedTx {
        pb::SignedTx {
            body: self.body.clone().into(),
            signatures: self
                .signatures
                .iter()
                .map(|(k, s)| pb::TxSignature {
                    public_key: k.0.to_vec().into(),
                    signature: s.0.to_vec().into(),
                })
                .collect(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// The transaction id: `SHA-256("commons/tx-id/v2" ‖ n ‖ key₁ ‖ … ‖
    /// keyₙ ‖ body)`, n the number of signers as a 4-byte big-endian
    /// integer and the 32-byte keys in envelope order (the first pays).
    ///
    /// It names who signed as well as what: the same body signed by two
    /// accounts is two transactions, each with its own status and receipt
    /// (an id of the body alone let one account's transaction take another's
    /// place: the second was dropped as a duplicate of the first, or its
    /// status showed the first one's receipt). It leaves the signatures out,
    /// so a signature re-encoded or made again by the same signers cannot
    /// make a new transaction of the same one; what was verified is named by
    /// the envelope hash ([`SignedTx::id_and_envelope_hash`]).
    pub fn id(&self) -> Hash {
        let count = u32::try_from(self.signatures.len()).unwrap_or(u32::MAX);
        let mut hasher = Sha256::new();
        hasher.update(TX_ID_DOMAIN);
        hasher.update(count.to_be_bytes());
        for (key, _) in &self.signatures {
            hasher.update(key.0);
        }
        hasher.update(&self.body);
        Hash(hasher.finalize().into())
    }

    /// The id, and `SHA-256(id || key_1 || signature_1 || …)`: the hash
    /// that names this exact envelope, where the id names the body and the
    /// signers but not the signatures. The same transaction may travel with
    /// other (forged) signatures under the same id, so a record that a
    /// transaction's signatures were checked must be kept under the envelope
    /// hash, never under the id. Keys and signatures have fixed lengths: the
    /// concatenation is unambiguous.
    pub fn id_and_envelope_hash(&self) -> (Hash, Hash) {
        let id = self.id();
        let mut hasher = Sha256::new();
        hasher.update(id.as_bytes());
        for (key, signature) in &self.signatures {
            hasher.update(key.0);
            hasher.update(signature.0);
        }
        (id, Hash(hasher.finalize().into()))
    }

    /// Signs `body` on `chain` by each of `signers`, in order.
    pub fn sign(body: Vec<u8>, chain: &ChainId, signers: &[&SecretKey]) -> SignedTx {
        let signed = signing_bytes(Domain::Tx, chain, &body);
        let signatures = signers
            .iter()
            .map(|k| (k.public_key(), k.sign_raw(&signed)))
            .collect();
        SignedTx { body, signatures }
    }

    /// The bytes every signature on this transaction covers.
    pub fn signed_bytes(&self, chain: &ChainId) -> Vec<u8> {
        signing_bytes(Domain::Tx, chain, &self.body)
    }

    /// The items to batch-verify, borrowing `signed` (from
    /// [`SignedTx::signed_bytes`]).
    pub fn verify_items<'a>(
        &'a self,
        signed: &'a [u8],
    ) -> impl Iterator<Item = VerifyItem<'a>> + 'a {
        self.signatures.iter().map(move |(k, s)| VerifyItem {
            public_key: *k,
            signed,
            signature: *s,
        })
    }

    /// Decodes the body. Its size is already bounded by [`SignedTx::decode`].
    pub fn decode_body(&self) -> Result<pb::TxBody, TypesError> {
        pb::TxBody::decode(self.body.as_slice()).map_err(|e| TypesError::Decode {
            what: "transaction body",
            reason: e.to_string(),
        })
    }

    pub fn fee_payer(&self) -> Option<PublicKey> {
        self.signatures.first().map(|(k, _)| *k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> ChainId {
        ChainId::new("tx-test").unwrap()
    }

    fn body() -> Vec<u8> {
        pb::TxBody {
            chain_id: "tx-test".into(),
            nonce: 1,
            fee: 10,
            action: Some(pb::Action {
                kind: Some(pb::action::Kind::Transfer(pb::Transfer {
                    to: vec![2; 32].into(),
                    amount: 5,
                })),
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn round_trip_keeps_signed_bytes() {
        let key = SecretKey::from_seed([1; 32]);
        let tx = SignedTx::sign(body(), &chain(), &[&key]);
        let back = SignedTx::decode(&tx.encode()).unwrap();
        assert_eq!(back, tx);
        assert_eq!(back.id(), tx.id());
        assert_eq!(back.decode_body().unwrap().nonce, 1);
        let signed = back.signed_bytes(&chain());
        let items: Vec<_> = back.verify_items(&signed).collect();
        assert_eq!(crate::batch::verify_each(&items), vec![true]);
    }

    #[test]
    fn the_id_names_the_body_and_its_signers_not_the_signatures() {
        let (a, b) = (SecretKey::from_seed([1; 32]), SecretKey::from_seed([2; 32]));
        let by_a = SignedTx::sign(body(), &chain(), &[&a]);
        let by_b = SignedTx::sign(body(), &chain(), &[&b]);
        assert_ne!(by_a.id(), by_b.id(), "one body, two accounts: two ids");
        let ab = SignedTx::sign(body(), &chain(), &[&a, &b]);
        let ba = SignedTx::sign(body(), &chain(), &[&b, &a]);
        assert_ne!(ab.id(), ba.id(), "the first signer pays: order counts");
        assert_ne!(ab.id(), by_a.id());
        // The same signers with other signature bytes (a forgery, or the
        // same key signing again): the same id, another envelope.
        let mut forged = by_a.clone();
        forged.signatures[0].1 = b.sign_raw(b"something else");
        assert_eq!(forged.id(), by_a.id());
        assert_ne!(
            forged.id_and_envelope_hash().1,
            by_a.id_and_envelope_hash().1
        );
        let mut other_body = body();
        other_body.push(0);
        assert_ne!(SignedTx::sign(other_body, &chain(), &[&a]).id(), by_a.id());
    }

    /// The vectors of `docs/protocol.md` ("Transaction id"), read from the
    /// document itself so that it cannot drift from the code.
    #[test]
    fn the_tx_id_vectors_of_the_protocol_document_hold() {
        let root = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        let path = std::path::Path::new(&root).join("../docs/protocol.md");
        let doc = std::fs::read_to_string(&path).expect("docs/protocol.md");
        let field = |line: &str, name: &str| -> Option<String> {
            line.trim().strip_prefix(name).map(|v| v.trim().to_string())
        };
        let (mut body, mut keys, mut checked) = (None::<Vec<u8>>, Vec::new(), 0);
        for line in doc.lines() {
            if let Some(v) = field(line, "tx-id body:") {
                body = Some(hex::decode(v).expect("body hex"));
                keys.clear();
            } else if let Some(v) = field(line, "tx-id signer seed:") {
                let seed: [u8; 32] = hex::decode(v)
                    .expect("seed hex")
                    .try_into()
                    .expect("32 bytes");
                keys.push(SecretKey::from_seed(seed));
            } else if let Some(v) = field(line, "tx-id signer key:") {
                let key = keys.last().expect("a seed before its key").public_key();
                assert_eq!(hex::encode(key.0), v, "public key of the last seed");
            } else if let Some(v) = field(line, "tx-id:") {
                let body = body.clone().expect("a body before its id");
                let signers: Vec<&SecretKey> = keys.iter().collect();
                let tx = SignedTx::sign(body, &chain(), &signers);
                assert_eq!(hex::encode(tx.id().0), v, "vector {checked}");
                checked += 1;
            }
        }
        assert!(
            checked >= 3,
            "only {checked} vectors found in {}",
            path.display()
        );
    }

    #[test]
    fn over_long_input_is_refused_before_parsing() {
        let bytes = vec![0u8; limits::MAX_TX_BYTES + 1];
        let err = SignedTx::decode(&bytes).unwrap_err();
        assert_eq!(
            err,
            TypesError::TooLarge {
                what: "transaction",
                got: limits::MAX_TX_BYTES + 1,
                limit: limits::MAX_TX_BYTES
            }
        );
        assert!(
            err.to_string().contains("exceeds the limit of 65536 bytes"),
            "{err}"
        );
    }

    #[test]
    fn malformed_envelopes_are_clear_errors() {
        assert!(matches!(
            SignedTx::decode(&[0xff, 0xff, 0xff]),
            Err(TypesError::Decode {
                what: "transaction",
                ..
            })
        ));
        let no_sigs = pb::SignedTx {
            body: body().into(),
            signatures: vec![],
        }
        .encode_to_vec();
        assert!(matches!(
            SignedTx::decode(&no_sigs),
            Err(TypesError::Decode { .. })
        ));
        let short_key = pb::SignedTx {
            body: body().into(),
            signatures: vec![pb::TxSignature {
                public_key: vec![1; 31].into(),
                signature: vec![0; 64].into(),
            }],
        }
        .encode_to_vec();
        assert!(matches!(
            SignedTx::decode(&short_key),
            Err(TypesError::BadLength {
                what: "public key",
                ..
            })
        ));
        let key = SecretKey::from_seed([1; 32]);
        let many = SignedTx::sign(body(), &chain(), &[&key, &key, &key, &key, &key]);
        assert!(matches!(
            SignedTx::decode(&many.encode()),
            Err(TypesError::TooMany { limit: 4, .. })
        ));
    }
}

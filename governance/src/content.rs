//! What a proposal asks for, its canonical binary encoding, and the checks
//! it must pass at submission.
//!
//! # Encoding (version 1)
//!
//! All integers are big-endian. `str` is a `u32` byte length followed by that
//! many bytes of UTF-8; `key` is 32 bytes; `count` is a `u32`.
//!
//! ```text
//! content  = version:u8(=1) title:str description:str kind:u8 payload
//! kind 1  text              (no payload)
//! kind 2  parameter change  count { name:str value:u64 }
//! kind 3  treasury spend    recipient:key amount:u64
//! kind 4  validator change  count { op:u8 key [power:u64] }   op 1 add (power), 2 remove, 3 reweight (power)
//! kind 5  exclude account   account:key
//! kind 6  reinstate account account:key
//! kind 7  software upgrade  name:str height:u64 info:str
//! ```
//!
//! Decoding refuses input over [`limits::MAX_PROPOSAL_BYTES`] before reading
//! a byte, checks every length and count against its ceiling in
//! [`limits`] before allocating for it, and refuses trailing bytes. Every
//! field has exactly one encoding, so the encoding is canonical: whenever
//! `decode(b)` succeeds, `encode(decode(b)) == b`.

use commons_types::{Amount, Height, PublicKey, Validator, ValidatorSet};
use serde::{Deserialize, Serialize};

use crate::{GovError, ParamChange, ParamSet, limits};

/// Version byte of the encoding this crate writes and reads.
pub const CONTENT_VERSION: u8 = 1;

const KIND_TEXT: u8 = 1;
const KIND_PARAM_CHANGE: u8 = 2;
const KIND_TREASURY_SPEND: u8 = 3;
const KIND_VALIDATOR_CHANGE: u8 = 4;
const KIND_EXCLUDE: u8 = 5;
const KIND_REINSTATE: u8 = 6;
const KIND_UPGRADE: u8 = 7;

const OP_ADD: u8 = 1;
const OP_REMOVE: u8 = 2;
const OP_REWEIGHT: u8 = 3;

/// A proposal as its proposer wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalContent {
    pub title: String,
    pub description: String,
    pub action: ProposalAction,
}

/// What happens if the proposal passes. The ledger executes it in the block
/// of the tally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposalAction {
    /// A signal: passing it changes nothing on chain.
    Text,
    /// Set registered parameters to new values (see [`ParamSet::with_changes`]).
    ParamChange(Vec<ParamChange>),
    /// Move `amount` from the treasury to `recipient`.
    TreasurySpend {
        recipient: PublicKey,
        amount: Amount,
    },
    /// Change the validator set (see [`apply_validator_changes`]); the
    /// result takes effect at the next epoch boundary.
    ValidatorChange(Vec<ValidatorChange>),
    /// Bar an account from sending, settling and claiming.
    ExcludeAccount { account: PublicKey },
    /// Lift an exclusion.
    ReinstateAccount { account: PublicKey },
    /// Signal that validators switch to software `name` at `height`.
    SoftwareUpgrade {
        name: String,
        height: Height,
        info: String,
    },
}

/// One change of a validator-set proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValidatorChange {
    Add { key: PublicKey, power: u64 },
    Remove { key: PublicKey },
    Reweight { key: PublicKey, power: u64 },
}

impl ValidatorChange {
    pub fn key(&self) -> PublicKey {
        match *self {
            ValidatorChange::Add { key, .. }
            | ValidatorChange::Remove { key }
            | ValidatorChange::Reweight { key, .. } => key,
        }
    }
}

impl ProposalContent {
    /// Decodes content from a `Propose` transaction (module doc has the
    /// layout). Never panics; refuses over-size input before parsing.
    pub fn decode(bytes: &[u8]) -> Result<ProposalContent, GovError> {
        if bytes.len() > limits::MAX_PROPOSAL_BYTES {
            return Err(GovError::ContentTooLarge {
                got: bytes.len(),
                limit: limits::MAX_PROPOSAL_BYTES,
            });
        }
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8("version")?;
        if version != CONTENT_VERSION {
            return Err(GovError::UnknownVersion {
                got: version,
                expected: CONTENT_VERSION,
            });
        }
        let title = r.string("title", limits::MAX_TITLE_BYTES)?;
        let description = r.string("description", limits::MAX_DESCRIPTION_BYTES)?;
        let action = match r.u8("kind")? {
            KIND_TEXT => ProposalAction::Text,
            KIND_PARAM_CHANGE => {
                let n = r.count("parameter changes", limits::MAX_PARAM_CHANGES)?;
                let mut changes = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = r.string("parameter name", limits::MAX_PARAM_NAME_BYTES)?;
                    let value = r.u64("parameter value")?;
                    changes.push(ParamChange { name, value });
                }
                ProposalAction::ParamChange(changes)
            }
            KIND_TREASURY_SPEND => ProposalAction::TreasurySpend {
                recipient: r.key("recipient")?,
                amount: Amount(r.u64("amount")?),
            },
            KIND_VALIDATOR_CHANGE => {
                let n = r.count("validator changes", limits::MAX_VALIDATOR_CHANGES)?;
                let mut changes = Vec::with_capacity(n);
                for _ in 0..n {
                    let change = match r.u8("validator change op")? {
                        OP_ADD => ValidatorChange::Add {
                            key: r.key("validator key")?,
                            power: r.u64("validator power")?,
                        },
                        OP_REMOVE => ValidatorChange::Remove {
                            key: r.key("validator key")?,
                        },
                        OP_REWEIGHT => ValidatorChange::Reweight {
                            key: r.key("validator key")?,
                            power: r.u64("validator power")?,
                        },
                        tag => {
                            return Err(GovError::UnknownTag {
                                what: "validator change op",
                                tag,
                            });
                        }
                    };
                    changes.push(change);
                }
                ProposalAction::ValidatorChange(changes)
            }
            KIND_EXCLUDE => ProposalAction::ExcludeAccount {
                account: r.key("account")?,
            },
            KIND_REINSTATE => ProposalAction::ReinstateAccount {
                account: r.key("account")?,
            },
            KIND_UPGRADE => ProposalAction::SoftwareUpgrade {
                name: r.string("upgrade name", limits::MAX_UPGRADE_NAME_BYTES)?,
                height: Height(r.u64("upgrade height")?),
                info: r.string("upgrade info", limits::MAX_UPGRADE_INFO_BYTES)?,
            },
            tag => {
                return Err(GovError::UnknownTag {
                    what: "proposal kind",
                    tag,
                });
            }
        };
        let extra = bytes.len().saturating_sub(r.pos);
        if extra != 0 {
            return Err(GovError::TrailingBytes { extra });
        }
        Ok(ProposalContent {
            title,
            description,
            action,
        })
    }

    /// The canonical encoding. Content whose fields exceed the ceilings in
    /// [`limits`] encodes to bytes that [`ProposalContent::decode`] refuses;
    /// [`ProposalContent::validate`] catches that first.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64 + self.title.len() + self.description.len());
        w.push(CONTENT_VERSION);
        put_str(&mut w, &self.title);
        put_str(&mut w, &self.description);
        match &self.action {
            ProposalAction::Text => w.push(KIND_TEXT),
            ProposalAction::ParamChange(changes) => {
                w.push(KIND_PARAM_CHANGE);
                put_len(&mut w, changes.len());
                for c in changes {
                    put_str(&mut w, &c.name);
                    w.extend_from_slice(&c.value.to_be_bytes());
                }
            }
            ProposalAction::TreasurySpend { recipient, amount } => {
                w.push(KIND_TREASURY_SPEND);
                w.extend_from_slice(recipient.as_bytes());
                w.extend_from_slice(&amount.0.to_be_bytes());
            }
            ProposalAction::ValidatorChange(changes) => {
                w.push(KIND_VALIDATOR_CHANGE);
                put_len(&mut w, changes.len());
                for c in changes {
                    match c {
                        ValidatorChange::Add { key, power } => {
                            w.push(OP_ADD);
                            w.extend_from_slice(key.as_bytes());
                            w.extend_from_slice(&power.to_be_bytes());
                        }
                        ValidatorChange::Remove { key } => {
                            w.push(OP_REMOVE);
                            w.extend_from_slice(key.as_bytes());
                        }
                        ValidatorChange::Reweight { key, power } => {
                            w.push(OP_REWEIGHT);
                            w.extend_from_slice(key.as_bytes());
                            w.extend_from_slice(&power.to_be_bytes());
                        }
                    }
                }
            }
            ProposalAction::ExcludeAccount { account } => {
                w.push(KIND_EXCLUDE);
                w.extend_from_slice(account.as_bytes());
            }
            ProposalAction::ReinstateAccount { account } => {
                w.push(KIND_REINSTATE);
                w.extend_from_slice(account.as_bytes());
            }
            ProposalAction::SoftwareUpgrade { name, height, info } => {
                w.push(KIND_UPGRADE);
                put_str(&mut w, name);
                w.extend_from_slice(&height.0.to_be_bytes());
                put_str(&mut w, info);
            }
        }
        w
    }

    /// Checks everything a proposal must satisfy before it may be submitted,
    /// against the chain as it is at `height`: the size limits of the
    /// current parameters, a non-empty single-line title, and the validity of
    /// the action itself:
    ///
    /// - parameter change: [`crate::validate_param_change`] against `params`;
    /// - treasury spend: a positive amount (whether the treasury holds it is
    ///   decided at execution, since the treasury fills with fees meanwhile);
    /// - validator change: [`apply_validator_changes`] on `validators` yields
    ///   a valid set;
    /// - software upgrade: a name of `[A-Za-z0-9._-]`, and a height after the
    ///   latest block at which the vote could end under current parameters
    ///   (`height + deposit_period_blocks + voting_period_blocks`);
    /// - exclusion and reinstatement: nothing more (both are idempotent).
    pub fn validate(
        &self,
        params: &ParamSet,
        validators: &ValidatorSet,
        height: Height,
    ) -> Result<(), GovError> {
        let gov = params.gov();
        let encoded_len = self.encoded_len();
        if u64::try_from(encoded_len).map_or(true, |n| n > gov.max_proposal_bytes) {
            return Err(GovError::ContentTooLarge {
                got: encoded_len,
                limit: usize::try_from(gov.max_proposal_bytes).unwrap_or(usize::MAX),
            });
        }
        check_len("title", self.title.len(), gov.max_title_bytes)?;
        check_len(
            "description",
            self.description.len(),
            gov.max_description_bytes,
        )?;
        if self.title.trim().is_empty() {
            return Err(GovError::Empty { field: "title" });
        }
        // A title is one line; control characters in titles or descriptions
        // could rewrite a member's terminal when the CLI prints them.
        if let Some(found) = self.title.chars().find(|c| c.is_control()) {
            return Err(GovError::BadCharacter {
                field: "title",
                found,
            });
        }
        if let Some(found) = self
            .description
            .chars()
            .find(|&c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(GovError::BadCharacter {
                field: "description",
                found,
            });
        }
        match &self.action {
            ProposalAction::Text
            | ProposalAction::ExcludeAccount { .. }
            | ProposalAction::ReinstateAccount { .. } => Ok(()),
            ProposalAction::ParamChange(changes) => params.with_changes(changes).map(|_| ()),
            ProposalAction::TreasurySpend { amount, .. } => {
                if amount.is_zero() {
                    return Err(GovError::ZeroAmount {
                        what: "treasury spend",
                    });
                }
                Ok(())
            }
            ProposalAction::ValidatorChange(changes) => {
                apply_validator_changes(validators, changes).map(|_| ())
            }
            ProposalAction::SoftwareUpgrade {
                name,
                height: upgrade_height,
                info,
            } => {
                check_len(
                    "upgrade name",
                    name.len(),
                    limits::MAX_UPGRADE_NAME_BYTES as u64,
                )?;
                check_len(
                    "upgrade info",
                    info.len(),
                    limits::MAX_UPGRADE_INFO_BYTES as u64,
                )?;
                if name.is_empty() {
                    return Err(GovError::Empty {
                        field: "upgrade name",
                    });
                }
                if let Some(found) = name
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
                {
                    return Err(GovError::BadCharacter {
                        field: "upgrade name",
                        found,
                    });
                }
                let periods = gov
                    .deposit_period_blocks
                    .checked_add(gov.voting_period_blocks)
                    .and_then(|p| p.checked_add(1))
                    .ok_or(GovError::Overflow {
                        what: "upgrade deadline",
                    })?;
                let earliest = height
                    .0
                    .checked_add(periods)
                    .ok_or(GovError::HeightOverflow {
                        height,
                        blocks: periods,
                    })?;
                if upgrade_height.0 < earliest {
                    return Err(GovError::UpgradeTooSoon {
                        height: *upgrade_height,
                        earliest: Height(earliest),
                    });
                }
                Ok(())
            }
        }
    }

    /// Length of [`ProposalContent::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        // Encoding is cheap and bounded by the caller's content; computing
        // the length separately would be a second copy of the layout to keep
        // in step.
        self.encode().len()
    }
}

/// Applies validator changes to `current`: removed validators leave, the
/// reweighted keep their place with the new power, the added are appended
/// in the order of the changes. Refused: an empty or over-long list, a key
/// changed twice, adding a present key, removing or reweighting an absent
/// one, and any result that [`ValidatorSet::new`] refuses (empty, too many,
/// zero power, total power too large).
///
/// Run at submission against the current set and again by the ledger at
/// execution, whose result is the set it hands to consensus for the next
/// epoch.
pub fn apply_validator_changes(
    current: &ValidatorSet,
    changes: &[ValidatorChange],
) -> Result<ValidatorSet, GovError> {
    if changes.is_empty() {
        return Err(GovError::Empty {
            field: "validator changes",
        });
    }
    if changes.len() > limits::MAX_VALIDATOR_CHANGES {
        return Err(GovError::TooManyEntries {
            what: "validator changes",
            got: changes.len(),
            limit: limits::MAX_VALIDATOR_CHANGES,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for change in changes {
        let key = change.key();
        if !seen.insert(key) {
            return Err(GovError::DuplicateValidatorChange { key });
        }
        let present = current.index_of(&key).is_some();
        match change {
            ValidatorChange::Add { .. } if present => {
                return Err(GovError::ValidatorPresent { key });
            }
            ValidatorChange::Remove { .. } | ValidatorChange::Reweight { .. } if !present => {
                return Err(GovError::ValidatorAbsent { key });
            }
            _ => {}
        }
    }
    let mut next: Vec<Validator> = Vec::with_capacity(current.len() + changes.len());
    for v in current.validators() {
        let change = changes.iter().find(|c| c.key() == v.public_key);
        match change {
            Some(ValidatorChange::Remove { .. }) => {}
            Some(ValidatorChange::Reweight { power, .. }) => next.push(Validator {
                public_key: v.public_key,
                power: *power,
            }),
            Some(ValidatorChange::Add { .. }) | None => next.push(*v),
        }
    }
    for change in changes {
        if let ValidatorChange::Add { key, power } = *change {
            next.push(Validator {
                public_key: key,
                power,
            });
        }
    }
    Ok(ValidatorSet::new(next)?)
}

fn check_len(field: &'static str, got: usize, limit: u64) -> Result<(), GovError> {
    if u64::try_from(got).map_or(true, |n| n > limit) {
        return Err(GovError::FieldTooLong {
            field,
            got,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        });
    }
    Ok(())
}

fn put_len(w: &mut Vec<u8>, len: usize) {
    // Lengths beyond u32 only arise from content over the limits, which
    // decode refuses anyway; saturating keeps encode total.
    w.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_str(w: &mut Vec<u8>, s: &str) {
    put_len(w, s.len());
    w.extend_from_slice(s.as_bytes());
}

/// A cursor over untrusted bytes. `pos <= bytes.len()` always.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], GovError> {
        let have = self.bytes.len().saturating_sub(self.pos);
        let truncated = GovError::Truncated {
            field,
            offset: self.pos,
            need: n,
            have,
        };
        let end = self.pos.checked_add(n).ok_or(truncated.clone())?;
        let out = self.bytes.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], GovError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, GovError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, GovError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, GovError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn key(&mut self, field: &'static str) -> Result<PublicKey, GovError> {
        Ok(PublicKey(self.array(field)?))
    }

    /// A `u32` count, refused above `limit` before anything is allocated.
    fn count(&mut self, what: &'static str, limit: usize) -> Result<usize, GovError> {
        let n = self.u32(what)?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n > limit {
            return Err(GovError::TooManyEntries {
                what,
                got: n,
                limit,
            });
        }
        Ok(n)
    }

    /// A length-prefixed UTF-8 string, its length refused above `limit`
    /// before the bytes are read.
    fn string(&mut self, field: &'static str, limit: usize) -> Result<String, GovError> {
        let n = self.u32(field)?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n > limit {
            return Err(GovError::FieldTooLong {
                field,
                got: n,
                limit,
            });
        }
        let raw = self.take(n, field)?;
        let s = std::str::from_utf8(raw).map_err(|_| GovError::NotUtf8 { field })?;
        Ok(s.to_owned())
    }
}

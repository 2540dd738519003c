//! The canonical binary encoding: fixed-width big-endian integers, 32-byte
//! hashes and keys, 64-byte signatures, `u32` length prefixes, one tag byte
//! for enums and options. Every length is checked against its limit before
//! anything is allocated, tags outside their range are errors, and a decode
//! that leaves bytes over fails. Each value therefore has exactly one
//! encoding, so `encode(decode(b)) == b` for every `b` that decodes: the
//! bytes a signature covers can be rebuilt from the decoded value without
//! ambiguity (and block ids are hashed over the received bytes directly).

use commons_types::{Hash, Signature};

/// Why bytes from outside did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input ends early: {what} needs {needed} more bytes, {left} left")]
    Truncated {
        what: &'static str,
        needed: usize,
        left: usize,
    },
    #[error("{what} has length {got}, more than the limit of {limit}")]
    TooLong {
        what: &'static str,
        got: usize,
        limit: usize,
    },
    #[error("unknown tag {tag} for {what}")]
    BadTag { what: &'static str, tag: u8 },
    #[error("{left} bytes left over after {what}")]
    TrailingBytes { what: &'static str, left: usize },
    #[error("{what} is not canonical: {reason}")]
    NotCanonical {
        what: &'static str,
        reason: &'static str,
    },
}

/// Appends canonical encodings to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer { buf: Vec::new() }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn hash(&mut self, h: &Hash) {
        self.buf.extend_from_slice(h.as_bytes());
    }

    pub fn signature(&mut self, s: &Signature) {
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// A length prefix. Every length written was bounded by a limit far below
    /// `u32::MAX` when the value was built or decoded.
    pub fn len(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&n.to_be_bytes());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.buf.extend_from_slice(b);
    }

    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
}

/// Reads canonical encodings from a slice, never past its end.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes between `start` and the current position: what was just
    /// decoded, exactly as received.
    pub fn since(&self, start: usize) -> &'a [u8] {
        self.bytes.get(start..self.pos).unwrap_or(&[])
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let left = self.remaining();
        if n > left {
            return Err(DecodeError::Truncated {
                what,
                needed: n,
                left,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    pub fn hash(&mut self, what: &'static str) -> Result<Hash, DecodeError> {
        Ok(Hash(self.array(what)?))
    }

    pub fn signature(&mut self, what: &'static str) -> Result<Signature, DecodeError> {
        Ok(Signature(self.array(what)?))
    }

    /// A boolean tag: 0 or 1, nothing else.
    pub fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::BadTag { what, tag }),
        }
    }

    /// A length prefix, refused above `limit` before anything is allocated.
    /// It is also refused if the rest of the input could not hold `len`
    /// items of `min_item_bytes` each, so a small message cannot claim a
    /// huge list.
    pub fn len(
        &mut self,
        what: &'static str,
        limit: usize,
        min_item_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let got = u32::from_be_bytes(self.array(what)?) as usize;
        if got > limit {
            return Err(DecodeError::TooLong { what, got, limit });
        }
        let needed = got.saturating_mul(min_item_bytes);
        if needed > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                needed,
                left: self.remaining(),
            });
        }
        Ok(got)
    }

    pub fn bytes(&mut self, what: &'static str, limit: usize) -> Result<Vec<u8>, DecodeError> {
        let n = self.len(what, limit, 1)?;
        Ok(self.take(n, what)?.to_vec())
    }

    pub fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(DecodeError::TrailingBytes { what, left }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_bounded_before_allocation() {
        let mut w = Writer::new();
        w.len(1_000_000);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert!(matches!(
            r.bytes("payload", 10),
            Err(DecodeError::TooLong {
                got: 1_000_000,
                limit: 10,
                ..
            })
        ));
        let mut r = Reader::new(&bytes);
        assert!(matches!(
            r.bytes("payload", usize::MAX),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn flags_are_canonical() {
        let mut r = Reader::new(&[2]);
        assert_eq!(
            r.flag("tc"),
            Err(DecodeError::BadTag { what: "tc", tag: 2 })
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut r = Reader::new(&[0, 0]);
        assert_eq!(r.u8("x"), Ok(0));
        assert_eq!(
            r.finish("x"),
            Err(DecodeError::TrailingBytes { what: "x", left: 1 })
        );
    }
}

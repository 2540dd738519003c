//! A small canonical binary encoding for values that are hashed or stored:
//! fixed-width big-endian integers, fixed-size arrays as raw bytes, and
//! variable-length bytes with a `u32` length prefix. One value has exactly one
//! encoding, so equal values give equal hashes on every machine.
//!
//! Decoding is bounded: every length is checked against the bytes remaining
//! (and the caller's limit) before anything is allocated, and a value must
//! consume its input exactly.

use crate::{Hash, PublicKey, Signature, TypesError};

/// Appends canonical encodings to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    pub fn with_capacity(n: usize) -> Writer {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn array(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    pub fn hash(&mut self, v: &Hash) -> &mut Self {
        self.array(&v.0)
    }

    pub fn key(&mut self, v: &PublicKey) -> &mut Self {
        self.array(&v.0)
    }

    pub fn signature(&mut self, v: &Signature) -> &mut Self {
        self.array(&v.0)
    }

    /// Variable-length bytes, prefixed by their length as `u32`. Callers
    /// bound lengths far below `u32::MAX`; longer input is a bug.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).expect("encoded field longer than u32::MAX bytes");
        self.u32(len);
        self.array(v)
    }

    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    /// A count of items that follow, as `u32`.
    pub fn len(&mut self, n: usize) -> &mut Self {
        let n = u32::try_from(n).expect("encoded list longer than u32::MAX items");
        self.u32(n)
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }
}

/// Reads canonical encodings, refusing truncated input and over-long lengths.
#[derive(Debug)]
pub struct Reader<'a> {
    input: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// `what` names the value being decoded, for error messages.
    pub fn new(input: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { input, what }
    }

    fn err(&self, reason: impl Into<String>) -> TypesError {
        TypesError::Decode {
            what: self.what,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], TypesError> {
        if self.input.len() < n {
            return Err(self.err(format!(
                "truncated: needed {n} more bytes, {} left",
                self.input.len()
            )));
        }
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        Ok(head)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], TypesError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, TypesError> {
        Ok(self.fixed::<1>()?[0])
    }

    pub fn bool(&mut self) -> Result<bool, TypesError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.err(format!("boolean byte {other}"))),
        }
    }

    pub fn u16(&mut self) -> Result<u16, TypesError> {
        Ok(u16::from_be_bytes(self.fixed()?))
    }

    pub fn u32(&mut self) -> Result<u32, TypesError> {
        Ok(u32::from_be_bytes(self.fixed()?))
    }

    pub fn u64(&mut self) -> Result<u64, TypesError> {
        Ok(u64::from_be_bytes(self.fixed()?))
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], TypesError> {
        self.fixed()
    }

    pub fn hash(&mut self) -> Result<Hash, TypesError> {
        Ok(Hash(self.fixed()?))
    }

    pub fn key(&mut self) -> Result<PublicKey, TypesError> {
        Ok(PublicKey(self.fixed()?))
    }

    pub fn signature(&mut self) -> Result<Signature, TypesError> {
        Ok(Signature(self.fixed()?))
    }

    /// Length-prefixed bytes of at most `max` bytes.
    pub fn bytes(&mut self, max: usize) -> Result<&'a [u8], TypesError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(self.err(format!("field of {len} bytes exceeds the limit of {max}")));
        }
        self.take(len)
    }

    pub fn string(&mut self, max: usize) -> Result<String, TypesError> {
        let bytes = self.bytes(max)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }

    /// A list count of at most `max` items, each at least `min_item_bytes`
    /// long: a count that the remaining input cannot hold is refused before
    /// the caller allocates for it.
    pub fn len(&mut self, max: usize, min_item_bytes: usize) -> Result<usize, TypesError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(self.err(format!("list of {n} items exceeds the limit of {max}")));
        }
        if n.saturating_mul(min_item_bytes.max(1)) > self.input.len() {
            return Err(self.err(format!(
                "list of {n} items cannot fit in the {} bytes left",
                self.input.len()
            )));
        }
        Ok(n)
    }

    pub fn remaining(&self) -> usize {
        self.input.len()
    }

    /// Ends decoding: trailing bytes make the encoding non-canonical.
    pub fn finish(self) -> Result<(), TypesError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(self.err(format!("{} trailing bytes", self.input.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = Writer::new();
        w.u8(7)
            .bool(true)
            .u16(513)
            .u32(70_000)
            .u64(u64::MAX)
            .hash(&Hash([3; 32]));
        w.str("héllo").len(2).u64(1).u64(2);
        let bytes = w.finish();
        let mut r = Reader::new(&bytes, "test");
        assert_eq!(r.u8().unwrap(), 7);
        assert!(r.bool().unwrap());
        assert_eq!(r.u16().unwrap(), 513);
        assert_eq!(r.u32().unwrap(), 70_000);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.hash().unwrap(), Hash([3; 32]));
        assert_eq!(r.string(16).unwrap(), "héllo");
        assert_eq!(r.len(10, 8).unwrap(), 2);
        assert_eq!((r.u64().unwrap(), r.u64().unwrap()), (1, 2));
        r.finish().unwrap();
    }

    #[test]
    fn refuses_truncated_oversized_and_trailing_input() {
        let mut r = Reader::new(&[0, 0], "x");
        assert!(r.u32().is_err());
        let mut w = Writer::new();
        w.bytes(&[1; 10]);
        let bytes = w.finish();
        assert!(Reader::new(&bytes, "x").bytes(9).is_err());
        assert!(Reader::new(&bytes, "x").bytes(10).is_ok());
        // A count claiming four billion items is refused before allocation.
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff], "x");
        assert!(r.len(usize::MAX, 1).is_err());
        let mut r = Reader::new(&[1, 2], "x");
        r.u8().unwrap();
        assert!(r.finish().is_err());
        assert!(Reader::new(&[2], "x").bool().is_err());
    }
}

//! sha256 digests (`sha256:<64 lowercase hex>`) and a reader that hashes what passes through.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::error::ImageError;

const PREFIX: &str = "sha256:";

/// A sha256 digest. Displays as `sha256:<hex>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 hex>`. Other algorithms are refused by name.
    pub(crate) fn parse(s: &str) -> Result<Self, ImageError> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(ImageError::InvalidDigest {
                digest: s.to_owned(),
                reason: "expected <algorithm>:<hex>",
            });
        };
        if alg != "sha256" {
            return Err(ImageError::InvalidDigest {
                digest: s.to_owned(),
                reason: "only sha256 digests are supported",
            });
        }
        Self::from_hex(hex).map_err(|_| ImageError::InvalidDigest {
            digest: s.to_owned(),
            reason: "expected 64 lowercase hex digits after sha256:",
        })
    }

    /// Parses a bare 64-digit lowercase hex string.
    pub(crate) fn from_hex(hex: &str) -> Result<Self, ImageError> {
        if is_full_hex(hex) {
            Ok(Digest {
                hex: hex.to_owned(),
            })
        } else {
            Err(ImageError::InvalidDigest {
                digest: hex.to_owned(),
                reason: "expected 64 lowercase hex digits",
            })
        }
    }

    /// The digest of `bytes`.
    pub(crate) fn of(bytes: &[u8]) -> Self {
        Digest {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// The 64 hex digits, without the algorithm.
    pub(crate) fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex)
    }
}

/// True for exactly 64 lowercase hex digits.
pub(crate) fn is_full_hex(s: &str) -> bool {
    s.len() == 64 && is_hex(s)
}

/// True for a non-empty string of lowercase hex digits.
pub(crate) fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A reader that hashes and counts every byte read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads the rest of the stream (so the digest covers all of it) and returns the digest,
    /// the byte count and the inner reader.
    pub(crate) fn drain(mut self) -> io::Result<(Digest, u64, R)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.finish())
    }

    /// Returns the digest and count of what has been read so far, and the inner reader.
    pub(crate) fn finish(self) -> (Digest, u64, R) {
        let digest = Digest {
            hex: hex::encode(self.hasher.finalize()),
        };
        (digest, self.count, self.inner)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_sha256() {
        let d = Digest::of(b"hello");
        let s = d.to_string();
        assert_eq!(
            s,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(&s).unwrap(), d);
        assert_eq!(Digest::from_hex(d.hex()).unwrap(), d);
    }

    #[test]
    fn refuses_bad_digests() {
        for bad in [
            "sha256:abc",
            "sha512:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
        ] {
            let err = Digest::parse(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn hashing_reader_counts_and_hashes_everything_after_drain() {
        let data = vec![7u8; 100_000];
        let mut r = HashingReader::new(&data[..]);
        let mut first = [0u8; 10];
        r.read_exact(&mut first).unwrap();
        let (digest, count, _) = r.drain().unwrap();
        assert_eq!(count, 100_000);
        assert_eq!(digest, Digest::of(&data));
    }
}

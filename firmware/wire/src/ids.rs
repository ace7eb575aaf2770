//! Validated identifiers carried in frames: box ids, service names and stream
//! ids, plus the [`Role`] that decides which side allocates which stream ids.

use std::fmt;

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    /// The identifier was empty.
    #[error("identifier is empty")]
    Empty,
    /// The identifier is longer than [`BoxId::MAX_LEN`] bytes.
    #[error("identifier is {0} bytes long; at most 64 are allowed")]
    TooLong(usize),
    /// The identifier contains a character outside `[A-Za-z0-9._-]`.
    #[error("identifier contains {0:?}; only ASCII letters, digits, '.', '_' and '-' are allowed")]
    BadChar(char),
}

fn check_token(s: &str) -> Result<(), InvalidId> {
    if s.is_empty() {
        return Err(InvalidId::Empty);
    }
    if s.len() > BoxId::MAX_LEN {
        return Err(InvalidId::TooLong(s.len()));
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(InvalidId::BadChar(c)),
        None => Ok(()),
    }
}

/// The identity of a box (CNAPT ID). On the tunnel it is the subject of the
/// box's TLS certificate, so a session can be bound to it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BoxId(String);

impl BoxId {
    /// Longest accepted id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates `s`: 1..=64 bytes of `[A-Za-z0-9._-]`.
    pub fn new(s: &str) -> Result<Self, InvalidId> {
        check_token(s)?;
        Ok(Self(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BoxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BoxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BoxId({})", self.0)
    }
}

/// The name of a service (an entry of the daemons' service tables) that an
/// OPEN asks the peer to connect to. Same alphabet and length as [`BoxId`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);

impl ServiceName {
    /// Validates `s`: 1..=64 bytes of `[A-Za-z0-9._-]`.
    pub fn new(s: &str) -> Result<Self, InvalidId> {
        check_token(s)?;
        Ok(Self(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceName({})", self.0)
    }
}

/// Which end of a session a participant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The connectivity box (CNAPT): opens server-service streams.
    Box,
    /// The server-side relay (SNAPT): opens client-service streams.
    Server,
}

impl Role {
    /// The other end.
    pub fn peer(self) -> Role {
        match self {
            Role::Box => Role::Server,
            Role::Server => Role::Box,
        }
    }
}

/// A stream (or datagram flow) id. Box-opened ids are even, server-opened ids
/// odd, so the two sides never collide: id = 2 × index + (opener is server).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

impl StreamId {
    /// The `index`-th stream opened by `opener`, if it fits in 32 bits.
    pub fn new(opener: Role, index: u32) -> Option<Self> {
        let low = match opener {
            Role::Box => 0,
            Role::Server => 1,
        };
        index.checked_mul(2)?.checked_add(low).map(StreamId)
    }

    /// Which side opened this stream.
    pub fn opener(self) -> Role {
        if self.0 & 1 == 0 {
            Role::Box
        } else {
            Role::Server
        }
    }

    /// Position of this stream among those opened by [`Self::opener`].
    pub fn index(self) -> u32 {
        self.0 >> 1
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_of_the_two_sides_never_collide() {
        for i in 0..100 {
            let b = StreamId::new(Role::Box, i).unwrap();
            let s = StreamId::new(Role::Server, i).unwrap();
            assert_ne!(b, s);
            assert_eq!((b.opener(), b.index()), (Role::Box, i));
            assert_eq!((s.opener(), s.index()), (Role::Server, i));
        }
        assert!(StreamId::new(Role::Server, u32::MAX).is_none());
    }

    #[test]
    fn ids_reject_empty_long_and_odd_characters() {
        assert_eq!(BoxId::new(""), Err(InvalidId::Empty));
        assert_eq!(BoxId::new(&"a".repeat(65)), Err(InvalidId::TooLong(65)));
        assert_eq!(BoxId::new("box 1"), Err(InvalidId::BadChar(' ')));
        assert!(BoxId::new("box-01.site_a").is_ok());
        assert_eq!(ServiceName::new("ssh/22"), Err(InvalidId::BadChar('/')));
    }
}

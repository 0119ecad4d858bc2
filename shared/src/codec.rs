//! The wire codec: MessagePack with named fields (maps, never positional arrays), so that a
//! worker in any language can read and write envelopes and fields can be added compatibly.
//!
//! Decoding checks the size limit first, then the `v` field, then the whole shape, so that a
//! message from a newer or older peer is reported as a version problem, not as garbage.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Room to leave in a message, beside its payload, for its headers (a message id, say):
/// a payload may use at most the broker's max payload less this.
pub const HEADER_ROOM: usize = 1024;

/// A message type that travels on the wire.
pub trait Envelope: Serialize + DeserializeOwned {
    /// What the message is, for error messages ("assignment", "result", ...).
    const KIND: &'static str;
    /// The protocol versions this build reads.
    const READS: &'static [u16] = &[crate::envelope::PROTOCOL_VERSION];
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("{kind} of {bytes} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        kind: &'static str,
        bytes: usize,
        limit: usize,
    },
    #[error("{kind} has protocol version {found}; this build reads {supported:?}")]
    WrongVersion {
        kind: &'static str,
        found: u16,
        supported: &'static [u16],
    },
    #[error("malformed {kind}: {source}")]
    Malformed {
        kind: &'static str,
        #[source]
        source: rmp_serde::decode::Error,
    },
    #[error("could not encode {kind}: {source}")]
    Encode {
        kind: &'static str,
        #[source]
        source: rmp_serde::encode::Error,
    },
}

/// Deepest nesting of maps and arrays a message may have. Deeper input is refused before it
/// can exhaust a thread's stack (tokio's are 2 MiB); plans are held to less by their parsers.
pub const MAX_DEPTH: usize = 200;

#[derive(serde::Deserialize)]
struct VersionOnly {
    v: u16,
}

pub fn encode<T: Envelope>(value: &T) -> Result<Vec<u8>, CodecError> {
    rmp_serde::to_vec_named(value).map_err(|source| CodecError::Encode {
        kind: T::KIND,
        source,
    })
}

pub fn decode<T: Envelope>(bytes: &[u8], limit: usize) -> Result<T, CodecError> {
    if bytes.len() > limit {
        return Err(CodecError::TooLarge {
            kind: T::KIND,
            bytes: bytes.len(),
            limit,
        });
    }
    let malformed = |source| CodecError::Malformed {
        kind: T::KIND,
        source,
    };
    let VersionOnly { v } = from_slice(bytes).map_err(malformed)?;
    if !T::READS.contains(&v) {
        return Err(CodecError::WrongVersion {
            kind: T::KIND,
            found: v,
            supported: T::READS,
        });
    }
    from_slice(bytes).map_err(malformed)
}

fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
    deserializer.set_max_depth(MAX_DEPTH);
    T::deserialize(&mut deserializer)
}

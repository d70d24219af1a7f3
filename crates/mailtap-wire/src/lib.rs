//! Packet input for mailtap: capture-file reading ([`source`]), checked
//! zero-copy packet decoding ([`decode`]) and IPv4/IPv6 fragment reassembly
//! ([`defrag`]).
//!
//! Nothing in this crate panics on any input bytes: every length is checked
//! before a slice is taken, and malformed input becomes an error value with a
//! stable name usable as a counter.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod decode;
pub mod defrag;
pub mod source;

pub use decode::{
    decode, flow_hash, DecodeError, Decoded, FragmentRef, IpVersion, TcpFlags, TcpPacket,
};
pub use defrag::{DefragConfig, DefragCounters, Defragmenter};
pub use source::{Block, CaptureReader, LinkType, PacketRef, SourceError};

#[cfg(test)]
pub(crate) mod testutil;

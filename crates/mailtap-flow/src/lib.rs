//! Connection tracking for one shard: flow table, Zeek-style uids, TCP
//! reassembly per direction, connection state and history, conn.log records,
//! and the hand-off of in-order bytes and content gaps to an application
//! analyzer chosen by port or by dynamic protocol detection.
//!
//! A shard owns one [`FlowTable`]; nothing here is shared between threads.

pub mod bypass;
pub mod conn;
pub mod key;
pub mod reassembly;
pub mod site;
pub mod table;
pub mod uid;

pub use bypass::{KernelBypass, KernelCounts};
pub use key::FlowKey;
pub use site::LocalNets;
pub use table::{AnalyzerFactory, Detect, FlowConfig, FlowCounters, FlowTable, Segment};
pub use uid::UidGenerator;

//! The commands of the `duplex` binary that are more than a call into the
//! library: what they print and how they ask. They live on the binary's side
//! so that the library holds the replicator only.

#[cfg(feature = "localdb")]
pub mod bench;
pub mod control;
pub mod ddl;
#[cfg(feature = "localdb")]
pub mod demo;
pub mod journal;
pub mod keys;
pub mod parity;
pub mod resync;
pub mod run;
pub mod status;

//! Throwaway local database servers, for the test suite and `duplex demo`.

mod harness;
pub mod mysql;
pub mod pg;

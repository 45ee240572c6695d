//! Throwaway local database servers, for the test suite and `duplex demo`.

pub mod mysql;
pub mod pg;

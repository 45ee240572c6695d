//! Throwaway local database servers, for the test suite, `duplex demo` and
//! `duplex bench` (the `localdb` feature). `pg` and `mysql` hold what each
//! engine needs; `harness` what both do alike.

mod harness;
pub mod mysql;
pub mod pg;

pub use harness::HarnessError;

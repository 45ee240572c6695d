//! The one integration-test binary: every end-to-end scenario (in `scenarios/`) against
//! real throwaway servers, sharing one harness (`support/`). One binary links the
//! crate once; a scenario is picked by name, e.g. `cargo test --test main conflicts`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod scenarios;
mod support;

//! The `regex` crate's API, served by `regex-lite` (see this crate's Cargo.toml for why).
pub use regex_lite::*;

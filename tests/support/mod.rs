//! Helpers shared by the integration tests. Each test file includes this with `mod support;`
//! and uses the submodules it needs.
// Every test file is a crate of its own that compiles all of this module but uses only part of
// it; the dead-code lint works per crate, so without this allowance each crate would warn about
// the helpers that only the other test files use.
#![allow(dead_code)]

pub mod engine;
pub mod files;
pub mod mosquitto;
pub mod mqtt;
pub mod net;
pub mod outbox;
pub mod pair;
pub mod process;
pub mod profiles;
pub mod sources;
pub mod tls;

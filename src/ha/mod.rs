//! The gateway pair (issue 15), its sans-IO layer: `lease` is the election (a majority-quorum
//! lease over gw1, gw2 and a witness), `link` the peer link's handshake and frame
//! authentication, `wire` the versioned bytes of the election's messages (inside link frames)
//! and of the voter's record, `replica` the replication stream's rules over the store's records
//! (opaque bytes here; not wired into the daemon yet). All take time and random nonces as
//! inputs: no tokio, no clock, no IO, no randomness of their own. `agent::ha` is the shell that
//! drives them over sockets; docs/ha-design.md says what they guarantee.

pub mod lease;
pub mod link;
pub mod replica;
pub mod wire;

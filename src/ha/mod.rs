//! The gateway pair (issue 15), its sans-IO layer only: nothing here is wired into the daemon
//! yet and no config section enables it. `lease` is the election (a majority-quorum lease over
//! gw1, gw2 and a witness), `link` the peer link's handshake and frame authentication, `replica`
//! the replication stream's rules over the store's records (opaque bytes here). All take time
//! and random nonces as inputs: no tokio, no clock, no IO, no randomness of their own.
//! docs/ha-design.md says what they guarantee and what the next step must build around them.

pub mod lease;
pub mod link;
pub mod replica;

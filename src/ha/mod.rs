//! The gateway pair (issue 15), its sans-IO layer only: nothing here is wired into the daemon
//! yet and no config section enables it. `lease` is the election (a majority-quorum lease over
//! gw1, gw2 and a witness). It takes time as input: no tokio, no clock, no IO.
//! docs/ha-design.md says what it guarantees and what the next step must build around it.

pub mod lease;

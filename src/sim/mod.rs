//! Simulated devices and scenarios, for `demo`, `sim`, tests and benchmarks.
//!
//! The servers (`modbus`, `snmp`) speak the real protocols on loopback and read the values
//! to serve from a shared `SimValues` table that a scenario drives.

pub mod snmp;
pub mod values;

pub use values::{SimFault, SimValues};

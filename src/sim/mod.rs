//! Simulated devices and scenarios, for `demo`, `sim`, tests and benchmarks.
//!
//! The servers (`modbus`, `snmp`) speak the real protocols on loopback and read the values
//! to serve from a shared `SimValues` table that a scenario drives.

#[cfg(feature = "embedded-broker")]
pub mod broker;
pub mod config;
pub mod devices;
pub mod modbus;
pub mod proxy;
pub mod scenario;
pub mod snmp;
pub mod values;

pub use values::{SimFault, SimValues};

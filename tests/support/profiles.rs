//! Built-in device profiles by name.

use std::sync::Arc;

use hallmonitor::profiles::{ModbusProfile, Profile, SnmpProfile, builtins};

/// The built-in Modbus profile `name`.
pub fn modbus_builtin(name: &str) -> Arc<ModbusProfile> {
    match builtins().remove(name).unwrap().unwrap() {
        Profile::Modbus(p) => p,
        Profile::Snmp(_) => panic!("{name} is not a modbus profile"),
    }
}

/// The built-in SNMP profile `name`.
pub fn snmp_builtin(name: &str) -> Arc<SnmpProfile> {
    match builtins().remove(name).unwrap().unwrap() {
        Profile::Snmp(p) => p,
        Profile::Modbus(_) => panic!("{name} is not an SNMP profile"),
    }
}

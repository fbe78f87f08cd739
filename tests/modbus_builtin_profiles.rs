//! The built-in Modbus profiles decode known device values correctly: each profile's points
//! (address, type, scale) run through the poller's decoder. (An integration test: profiles sit
//! below sources, so the profile module itself may not call the decoder.)

mod support;

use hallmonitor::profiles::modbus::{ModbusPoint, ModbusProfile, Table, ValueType};
use hallmonitor::sources::modbus::decode::decode_point;
use support::profiles::modbus_builtin;

fn point<'a>(p: &'a ModbusProfile, name: &str) -> &'a ModbusPoint {
    p.points.iter().find(|pt| pt.id.as_str() == name).unwrap_or_else(|| panic!("no point {name}"))
}

#[test]
fn pm5000_reads_float32_abcd_at_one_based_registers() {
    let p = modbus_builtin("schneider-pm5000");
    let ia = point(&p, "current_a");
    assert_eq!((ia.table, ia.address, ia.value_type), (Table::Holding, 2999, ValueType::F32));
    // 12.5 A as FLOAT32 ABCD = 0x41480000.
    assert_eq!(decode_point(ia, &[0x4148, 0x0000]).unwrap(), 12.5);
    let van = point(&p, "voltage_an");
    assert_eq!(van.address, 3027);
    assert_eq!(van.metric.as_str(), "voltage_v");
    // 3.25 kW total -> 3250 W.
    let pt = point(&p, "power_total");
    assert_eq!(pt.address, 3059);
    assert_eq!(decode_point(pt, &[0x4050, 0x0000]).unwrap(), 3250.0);
    // Energy: INT64 Wh at 3204 -> kWh.
    let e = point(&p, "energy_delivered");
    assert_eq!(e.address, 3203);
    assert_eq!(decode_point(e, &[0, 0, 0x0001, 0xE240]).unwrap(), 123.456);
}

#[test]
fn generic_crah_has_the_cooling_points() {
    let p = modbus_builtin("generic-crah");
    for metric in ["supply_air_temp_c", "return_air_temp_c", "humidity_pct", "fan_speed_pct", "alarm"] {
        assert!(p.points.iter().any(|pt| pt.metric.as_str() == metric), "{metric} missing");
    }
    let supply = point(&p, "supply_air_temp");
    assert_eq!(decode_point(supply, &[0x00B4]).unwrap(), 18.0);
    let fan = point(&p, "alarm_fan_failure");
    assert_eq!(decode_point(fan, &[0b0100]).unwrap(), 1.0);
    assert_eq!(decode_point(fan, &[0b1011]).unwrap(), 0.0);
}

#[test]
fn th_probe_reads_signed_tenths() {
    let p = modbus_builtin("modbus-th-probe");
    let t = point(&p, "temperature");
    assert_eq!((t.table, t.address, t.metric.as_str()), (Table::Input, 1, "inlet_temp_c"));
    assert_eq!(decode_point(t, &[0x00F5]).unwrap(), 24.5);
    assert_eq!(decode_point(t, &[0xFFF6]).unwrap(), -1.0);
    let h = point(&p, "humidity");
    assert_eq!(decode_point(h, &[0x0226]).unwrap(), 55.0);
}

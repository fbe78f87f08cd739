//! Publishing to the NOC over MQTT. Only this module speaks MQTT.

pub mod message;

//! `[mqtt]`, `[[buses]]` and `[[devices]]`: the lane hardware and how to reach it.
//! What each device's registers or payloads mean is in its device profile.

use super::{Invalid, SiteConfig};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
}

fn default_mqtt_port() -> u16 {
    1883
}

/// One RS-485 bus (a serial port shared by several slaves).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    pub name: String,
    pub port: String,
}

/// One device instance: a profile, where it is, and which lane it serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub name: String,
    pub profile: String,
    pub lane: String,
}

pub fn validate_all(config: &SiteConfig, out: &mut Vec<Invalid>) {
    for (i, d) in config.devices.iter().enumerate() {
        if config.lane(&d.lane).is_none() {
            out.push(Invalid::new(
                format!("devices[{i}].lane"),
                format!("no lane with id {:?}", d.lane),
            ));
        }
    }
}

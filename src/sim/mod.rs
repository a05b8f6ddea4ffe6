//! The simulated lot behind `parking-bridge demo`: simulated lane devices speaking
//! the real protocols on loopback (`devices`), an embedded MQTT broker (`broker`),
//! seeded traffic (`traffic`), synthetic camera pictures (`picture`), and the demo
//! itself (`demo`), and its soak mode (`soak`, with a pluggable, noisy RS-485
//! adapter `serial_link` and a closable relay `tcp_gate` in front of the broker);
//! and the mock platform as a command (`mock_platform`).

pub mod broker;
pub mod demo;
pub mod devices;
pub mod mock_platform;
pub mod picture;
pub mod serial_link;
pub mod soak;
pub mod tcp_gate;
pub mod traffic;
pub mod verify;
pub mod view;

//! The simulated lot behind `parking-bridge demo`: simulated lane devices speaking
//! the real protocols on loopback (`devices`), an embedded MQTT broker (`broker`),
//! seeded traffic (`traffic`), synthetic camera pictures (`picture`), and the demo
//! itself (`demo`), and its soak mode (`soak`).

pub mod broker;
pub mod demo;
pub mod devices;
pub mod picture;
pub mod soak;
pub mod traffic;
pub mod verify;
pub mod view;

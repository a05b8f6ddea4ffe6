//! The simulated lot behind `parking-bridge demo`. TODO(issue 6).

pub mod devices;

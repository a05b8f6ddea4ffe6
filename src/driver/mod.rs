//! Device drivers: Modbus RTU/TCP pollers and MQTT camera subscribers. They emit
//! [`crate::event::RawEvent`] facts only and have no write path. TODO(issue 4).

//! Driver metrics in the prometheus default registry (`/metrics` gathers it).
//! Labels are config names (device, bus), never plate text. Link state is not here:
//! it is `parking_bridge_device_up{lane,device}` of the operations module, from the
//! health table the lane task keeps (the same fact `/healthz` and the status page use).

use prometheus::{GaugeVec, IntCounterVec, register_gauge_vec, register_int_counter_vec};
use std::sync::LazyLock;

// Registration only fails for a duplicate or malformed metric name; these names are
// constants registered once each, so the expects cannot fire.
pub static POLLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parking_bridge_modbus_polls_total",
        "Modbus poll cycles per device",
        &["device"]
    )
    .expect("metric registered once")
});
pub static TIMEOUTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parking_bridge_modbus_timeouts_total",
        "Modbus requests without a valid answer in time",
        &["device"]
    )
    .expect("metric registered once")
});
pub static EXCEPTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parking_bridge_modbus_exceptions_total",
        "Modbus exception responses (profile or wiring fault)",
        &["device"]
    )
    .expect("metric registered once")
});
pub static CRC_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parking_bridge_modbus_crc_errors_total",
        "RTU frames with a bad CRC",
        &["bus"]
    )
    .expect("metric registered once")
});
pub static GARBAGE_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parking_bridge_modbus_garbage_bytes_total",
        "Bytes on a bus that were not part of a valid answer",
        &["bus"]
    )
    .expect("metric registered once")
});
pub static REOPENS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parking_bridge_bus_reopens_total",
        "Times a serial port / TCP connection was (re)opened",
        &["bus"]
    )
    .expect("metric registered once")
});
pub static PAYLOAD_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parking_bridge_camera_payload_errors_total",
        "Camera messages that could not be decoded",
        &["device"]
    )
    .expect("metric registered once")
});
pub static PLATE_READS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parking_bridge_camera_reads_total",
        "Plate recognitions decoded per camera",
        &["device"]
    )
    .expect("metric registered once")
});
pub static VALUES: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "parking_bridge_device_value",
        "Numeric device points (counters, diagnostics)",
        &["device", "point"]
    )
    .expect("metric registered once")
});

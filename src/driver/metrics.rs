//! Driver metrics in the prometheus default registry (`/metrics` gathers it).
//! Labels are config names (device, bus), never plate text. Link state is not here:
//! it is `parking_bridge_device_up{lane,device}` of the operations module, from the
//! health table the lane task keeps (the same fact `/healthz` and the status page use).

use prometheus::{GaugeVec, IntCounterVec};
use std::sync::LazyLock;

pub static POLLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::metrics::counter_vec(
        "parking_bridge_modbus_polls_total",
        "Modbus poll cycles per device",
        &["device"],
    )
});
pub static TIMEOUTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::metrics::counter_vec(
        "parking_bridge_modbus_timeouts_total",
        "Modbus requests without a valid answer in time",
        &["device"],
    )
});
pub static EXCEPTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::metrics::counter_vec(
        "parking_bridge_modbus_exceptions_total",
        "Modbus exception responses (profile or wiring fault)",
        &["device"],
    )
});
pub static CRC_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::metrics::counter_vec(
        "parking_bridge_modbus_crc_errors_total",
        "RTU frames with a bad CRC",
        &["bus"],
    )
});
pub static GARBAGE_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::metrics::counter_vec(
        "parking_bridge_modbus_garbage_bytes_total",
        "Bytes on a bus that were not part of a valid answer",
        &["bus"],
    )
});
pub static REOPENS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::metrics::counter_vec(
        "parking_bridge_bus_reopens_total",
        "Times a serial port / TCP connection was (re)opened",
        &["bus"],
    )
});
pub static MQTT_OVERSIZE: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    crate::metrics::counter(
        "parking_bridge_mqtt_oversize_total",
        "MQTT messages above the packet limit refused (each costs a clean-session reconnect)",
    )
});
pub static PAYLOAD_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::metrics::counter_vec(
        "parking_bridge_camera_payload_errors_total",
        "Camera messages that could not be decoded",
        &["device"],
    )
});
pub static UNROUTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::metrics::counter_vec(
        "parking_bridge_camera_unrouted_total",
        "Messages on a topic shared by several cameras that named none of them",
        &["topic"],
    )
});
pub static PLATE_READS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::metrics::counter_vec(
        "parking_bridge_camera_reads_total",
        "Plate recognitions decoded per camera",
        &["device"],
    )
});
pub static VALUES: LazyLock<GaugeVec> = LazyLock::new(|| {
    crate::metrics::float_gauge_vec(
        "parking_bridge_device_value",
        "Numeric device points (counters, diagnostics)",
        &["device", "point"],
    )
});

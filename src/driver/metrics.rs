//! Driver metrics in the prometheus default registry (`/metrics` gathers it).
//! Labels are config names (device, bus), never plate text. Link state is not here:
//! it is `parking_bridge_device_up{lane,device}` of the operations module, from the
//! health table the lane task keeps (the same fact `/healthz` and the status page use).

use prometheus::{GaugeVec, IntCounter, IntCounterVec};

crate::metrics::statics! {
    pub POLLS: IntCounterVec = ("parking_bridge_modbus_polls_total", "Modbus poll cycles per device", ["device"]);
    pub PICTURES_SHED: IntCounterVec = ("parking_bridge_pictures_shed_total", "Camera pictures dropped (their reads kept) because the lane task was behind", ["device"]);
    pub TIMEOUTS: IntCounterVec = ("parking_bridge_modbus_timeouts_total", "Modbus requests without a valid answer in time", ["device"]);
    pub EXCEPTIONS: IntCounterVec = ("parking_bridge_modbus_exceptions_total", "Modbus exception responses (profile or wiring fault)", ["device"]);
    pub CRC_ERRORS: IntCounterVec = ("parking_bridge_modbus_crc_errors_total", "RTU frames with a bad CRC", ["bus"]);
    pub GARBAGE_BYTES: IntCounterVec = ("parking_bridge_modbus_garbage_bytes_total", "Bytes on a bus that were not part of a valid answer", ["bus"]);
    pub REOPENS: IntCounterVec = ("parking_bridge_bus_reopens_total", "Times a serial port / TCP connection was (re)opened", ["bus"]);
    pub MQTT_OVERSIZE: IntCounter = ("parking_bridge_mqtt_oversize_total", "MQTT messages above the packet limit refused (each costs a clean-session reconnect)");
    pub PAYLOAD_ERRORS: IntCounterVec = ("parking_bridge_camera_payload_errors_total", "Camera messages that could not be decoded", ["device"]);
    pub UNROUTED: IntCounterVec = ("parking_bridge_camera_unrouted_total", "Messages on a topic shared by several cameras that named none of them", ["topic"]);
    pub PLATE_READS: IntCounterVec = ("parking_bridge_camera_reads_total", "Plate recognitions decoded per camera", ["device"]);
    pub VALUES: GaugeVec = ("parking_bridge_device_value", "Numeric device points (counters, diagnostics)", ["device", "point"]);
}

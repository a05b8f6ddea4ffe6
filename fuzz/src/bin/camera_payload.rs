//! afl target `camera_payload`: see `harness::camera_payload` (fuzz/src/harness.rs).

#[path = "../harness.rs"]
mod harness;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        harness::camera_payload(data);
    });
}

//! afl target `camera_push`: see `harness::camera_push` (fuzz/src/harness.rs).

#[path = "../harness.rs"]
mod harness;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        harness::camera_push(data);
    });
}

//! afl target `device_profile`: see `harness::device_profile` (fuzz/src/harness.rs).

#[path = "../harness.rs"]
mod harness;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        harness::device_profile(data);
    });
}

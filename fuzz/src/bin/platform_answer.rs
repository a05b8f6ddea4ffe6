//! afl target `platform_answer`: see `harness::platform_answer` (fuzz/src/harness.rs).

#[path = "../harness.rs"]
mod harness;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        harness::platform_answer(data);
    });
}

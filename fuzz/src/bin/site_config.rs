//! afl target `site_config`: see `harness::site_config` (fuzz/src/harness.rs).

#[path = "../harness.rs"]
mod harness;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        harness::site_config(data);
    });
}

//! afl target `journal_replay`: see `harness::journal_replay` (fuzz/src/harness.rs).

#[path = "../harness.rs"]
mod harness;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        harness::journal_replay(data);
    });
}

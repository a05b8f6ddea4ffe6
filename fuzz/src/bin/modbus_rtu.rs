//! afl target `modbus_rtu`: see `harness::modbus_rtu` (fuzz/src/harness.rs).

#[path = "../harness.rs"]
mod harness;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        harness::modbus_rtu(data);
    });
}

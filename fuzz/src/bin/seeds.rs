//! Writes every target's seed corpus: `seeds OUT_DIR` makes `OUT_DIR/<target>/seed-N`.
//! Not a fuzz target; `scripts/fuzz.sh` runs it before afl.

#[path = "../harness.rs"]
mod harness;

fn main() {
    let Some(out) = std::env::args().nth(1) else {
        eprintln!("usage: seeds OUT_DIR");
        std::process::exit(2);
    };
    for target in harness::TARGETS {
        let dir = std::path::Path::new(&out).join(target);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("{}: {e}", dir.display());
            std::process::exit(1);
        }
        for (i, seed) in harness::seeds(target).iter().enumerate() {
            if let Err(e) = std::fs::write(dir.join(format!("seed-{i:03}")), seed) {
                eprintln!("{}: {e}", dir.display());
                std::process::exit(1);
            }
        }
    }
}

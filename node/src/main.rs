//! The `ifx` binary. Not built yet: see docs/ARCHITECTURE.md for what exists so far.

fn main() {
    eprintln!("ifx: the node, its CLI and `ifx testnet` are not implemented yet (issue #2 is open); see docs/ARCHITECTURE.md");
    std::process::exit(2);
}

//! The `cofferfs` binary: everything lives in the library's `cli` layer.

fn main() {
    std::process::exit(cofferfs::cli::main());
}

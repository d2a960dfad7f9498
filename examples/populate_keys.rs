//! Benchmark helper: adds N file key rows to a volume through `Keyring::new_file_key` (what a
//! file create does), for `scripts/bench-rotate.sh`. Usage: populate_keys CIPHERDIR N PASSWORD

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, n, pw] = &args[..] else {
        eprintln!("usage: populate_keys CIPHERDIR N PASSWORD");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N is a number");
    let vol =
        cofferfs::volume::Volume::open(dir.as_ref(), pw.as_bytes(), None).expect("volume opens");
    for _ in 0..n {
        vol.keyring().new_file_key(None).expect("row inserted");
    }
    vol.keyring().store().checkpoint().expect("checkpoint");
}

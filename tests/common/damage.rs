//! Helpers to find and damage the ciphertext of a volume built through a real mount (and
//! unmounted since): plaintext path → ciphertext path through the library, raw key rows.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cofferfs::volume::Volume;
use cofferfs::volume::reencrypt::resolve;

use super::mount::PASSWORD;

/// The ciphertext path of plaintext path `plain` (the volume must not be mounted).
pub fn cipher_path(cipherdir: &Path, plain: &str) -> PathBuf {
    let vol = open_unmounted(cipherdir);
    cipherdir.join(resolve(&vol, Path::new(plain)).unwrap())
}

/// Opens an unmounted volume in this process (see `open_volume` for why it may wait).
pub fn open_unmounted(cipherdir: &Path) -> Volume {
    super::open_volume(cipherdir, PASSWORD.as_bytes()).unwrap()
}

/// The file id in a ciphertext file's header, as lower-case hex.
pub fn header_id(blob: &Path) -> String {
    std::fs::read(blob).unwrap()[6..22]
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Flips one bit of byte `off` of `path`.
pub fn flip_byte(path: &Path, off: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, off).unwrap();
    f.write_all_at(&[b[0] ^ 1], off).unwrap();
}

/// Runs SQL on the header store.
pub fn db_exec(cipherdir: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(cipherdir.join("cofferfs.db")).unwrap();
    conn.execute_batch(sql).unwrap();
}

/// The file ids (lower-case hex) of every key row.
pub fn key_row_ids(cipherdir: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(cipherdir.join("cofferfs.db")).unwrap();
    let mut st = conn
        .prepare("SELECT lower(hex(file_id)) FROM file_keys ORDER BY 1")
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Offset of byte `k` inside chunk `index` at the default 4 KiB chunk size.
pub fn chunk_off(index: u64, k: u64) -> u64 {
    22 + index * (4096 + 28) + k
}

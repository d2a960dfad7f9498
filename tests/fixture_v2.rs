//! Format stability: `tests/fixtures/v2` is a cipherdir written by the first cofferfs with
//! format v2 (final-chunk flag; password "fixture password"). Every later version must mount
//! and read it. It was made with:
//!
//! ```text
//! cofferfs init --argon2-memory 1024 --argon2-time 1 --argon2-lanes 1 --passfile PW v2
//! cofferfs mount --passfile PW v2 M && cd M
//! printf 'hello, cofferfs v2\n' > hello.txt; mkdir dir
//! python3 -c 'import sys; sys.stdout.buffer.write(bytes((i*7)%256 for i in range(10000)))' \
//!     > dir/nested.bin
//! ln -s dir/nested.bin link; printf long > LLL…L (200 × L)
//! python3 -c 'import sys; sys.stdout.buffer.write(bytes((i*13)%256 for i in range(8192)))' \
//!     > exact.bin
//! truncate -s 20000 sparse; printf x | dd of=sparse bs=1 seek=4096 conv=notrunc; : > empty
//! cd / && cofferfs umount M
//! ```

mod common;

use common::header_version;
use common::mount::{Mounted, check_v2_fixture_contents, cofferfs_with};

#[test]
fn the_v2_fixture_mounts_and_reads() {
    let mut m = Mounted::fixture("v2", &[]);
    check_v2_fixture_contents(&m);
    m.unmount();

    // Every file is v2; the sparse file's holes are in the middle, its last chunk is sealed.
    let mut files = 0;
    for e in std::fs::read_dir(&m.cipherdir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        let own = name.starts_with("cofferfs.db") || name.starts_with(".cofferfs");
        if p.is_file() && !p.is_symlink() && !own {
            assert_eq!(header_version(&p), 2, "{name}");
            files += 1;
        }
    }
    assert_eq!(files, 5, "hello, long, exact, sparse, empty in the root");
    let (code, out, err) = cofferfs_with(
        &["fsck", m.cipherdir.to_str().unwrap()],
        common::FIXTURE_PASSWORD,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("/sparse: 3 hole chunks (all zero, read as zeros): 0, 2, 3"),
        "{out}"
    );
}

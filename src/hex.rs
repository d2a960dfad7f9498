//! Lower-case hex of bytes: how ids (volume ids, share ids, file ids in messages) are shown to
//! people and written into names. The one copy for the whole crate: it imports nothing, so
//! every layer may use it (`format` and `crypto` included).

use std::fmt::Write;

/// `bytes` as lower-case hex, two digits per byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(s, "{b:02x}").expect("writing to a String cannot fail");
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_lower_case_digits_per_byte() {
        assert_eq!(super::encode(&[]), "");
        assert_eq!(super::encode(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }
}

//! How the command line shows things to people, the same way in every verb: times, a slot's
//! key derivation, progress bars (on a terminal only). Ids are shown with [`crate::hex`].

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::keystore::{SlotKind, SlotRecord};

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the epoch (Howard Hinnant's civil-from-days).
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// How a slot derives its key, for humans: `argon2id m=65536 KiB t=3 p=4` or `hkdf-sha256`.
pub fn describe_kdf(s: &SlotRecord) -> String {
    match s.kind {
        SlotKind::Password => format!("argon2id m={} KiB t={} p={}", s.kdf.m_kib, s.kdf.t, s.kdf.p),
        SlotKind::Keyfile => "hkdf-sha256".to_owned(),
        SlotKind::Transit => match s.transit() {
            Ok(Some(p)) => crate::cli::transit::describe(&p),
            _ => "transit (damaged params)".to_owned(),
        },
        SlotKind::Pkcs11 => match s.pkcs11() {
            Ok(Some(p)) => crate::cli::pkcs11::describe(&p),
            _ => "pkcs11 (damaged params)".to_owned(),
        },
    }
}

/// A byte progress bar on stderr when it is a terminal; hidden otherwise.
pub fn progress_bar(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

/// A progress bar counting items (`rotate`'s file keys) on stderr when it is a terminal;
/// hidden otherwise.
pub fn count_bar(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({eta})")
            .expect("the template is valid"),
    );
    bar.set_message(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formatting() {
        assert_eq!(super::format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::format_utc(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(super::format_utc(-1), "1969-12-31 23:59:59 UTC");
    }
}

//! `cofferfs info`: what a volume is, without a password and without showing any secret.

use super::CliError;
use super::volume_args::VolumeArgs;
use crate::volume;

/// Arguments of `cofferfs info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The volume.
    #[command(flatten)]
    pub volume: VolumeArgs,
}

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

/// Runs `info`.
pub fn run(a: InfoArgs) -> Result<(), CliError> {
    let loc = a.volume.locate()?;
    let store = volume::open_store_read_only_at(&loc)?;
    let p = store.params().map_err(volume::VolumeError::from)?;
    let slots = store.slots().map_err(volume::VolumeError::from)?;
    let files = store.file_count().map_err(volume::VolumeError::from)?;
    let id = volume::location::hex(&p.volume_id);
    println!("cipherdir:       {}", loc.cipherdir().display());
    println!("header store:    {}", loc.store().display());
    println!("format version:  {}", p.format_version);
    println!("volume id:       {id}");
    println!("chunk size:      {}", p.chunk_len);
    println!(
        "names:           {}",
        if p.plaintext_names {
            "plaintext"
        } else {
            "encrypted (AES-SIV)"
        }
    );
    println!("kek generation:  {}", p.kek_generation);
    if let Some(r) = store.rotation_counts().map_err(volume::VolumeError::from)? {
        println!(
            "rotation:        in progress, generation {} -> {}: {} of {} key rows re-wrapped \
             (`cofferfs rotate` finishes it)",
            r.from,
            r.to,
            r.done,
            r.done + r.left
        );
    }
    println!("files:           {files}");
    println!("created:         {}", format_utc(p.created));
    println!("key slots:       {}", slots.len());
    for s in slots {
        println!(
            "  slot {}: {} {:?}, {}, created {}",
            s.slot_id,
            s.kind,
            s.label,
            super::keys::list::describe_kdf(&s),
            format_utc(s.created)
        );
    }
    Ok(())
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

//! What `mount`'s command line asks for, turned into fuser mount options: the `-o` list (with
//! the nosuid/nodev rule) and the `--idle` duration.

use std::time::Duration;

use fuser::MountOption;

use super::MountArgs;
use crate::cli::{CliError, exit};

/// Parses a duration as systemd and gocryptfs's `-idle` write them: one or more numbers,
/// each with a unit (`ms`, `s`, `m`/`min`, `h`, `d`), fractions allowed, spaces between parts
/// allowed: `90s`, `10m`, `1h30m`, `0.5s`, `1.5h`, `2h 15min`. A bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = |why: &str| {
        format!("bad duration {s:?}: {why} (examples: 90s, 10m, 1h30m, 0.5s, 2h 15min)")
    };
    let text = s.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad("out of range"));
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| bad("a number must come first in each part"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "" => return Err(bad("every part but a lone number needs a unit")),
            _ => return Err(bad("unknown unit (use ms, s, m, min, h or d)")),
        };
        total += n * unit;
        rest = rest[unit_len..].trim_start();
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad("out of range"))
}

/// The fuser mount options of `a`: the source name, `--ro`, and each `-o` option checked
/// (`suid` and `dev` only with `--allow-suid-dev`, then with a warning).
pub(super) fn mount_options(a: &MountArgs) -> Result<Vec<MountOption>, CliError> {
    let fsname = a
        .fsname
        .clone()
        .unwrap_or_else(|| a.volume.cipherdir.display().to_string());
    // A comma would split the option string; fall back to a plain name.
    let fsname = if fsname.contains(',') {
        "cofferfs".to_owned()
    } else {
        fsname
    };
    let mut opts = vec![
        MountOption::FSName(fsname),
        // fuser's direct mount(2) drops Subtype; the kernel takes it as a data option and then
        // lists the mount as type fuse.cofferfs.
        MountOption::CUSTOM("subtype=cofferfs".into()),
        MountOption::DefaultPermissions,
    ];
    if a.ro {
        opts.push(MountOption::RO);
    }
    let (mut suid, mut dev) = (false, false);
    for o in a
        .options
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
    {
        opts.push(match o {
            "noatime" => MountOption::NoAtime,
            "atime" => MountOption::Atime,
            "noexec" => MountOption::NoExec,
            "exec" => MountOption::Exec,
            "nosuid" | "nodev" => continue,
            "suid" | "dev" if !a.allow_suid_dev => {
                return Err(CliError::new(
                    exit::USAGE,
                    format!(
                        "-o {o} refused: mode bits, owners and device numbers come from the \
                         cipherdir, which is not authenticated (anyone who can write it could \
                         plant a setuid program or a device node); add --allow-suid-dev to \
                         allow it anyway"
                    ),
                ));
            }
            "suid" => {
                suid = true;
                continue;
            }
            "dev" => {
                dev = true;
                continue;
            }
            "sync" => MountOption::Sync,
            "async" => MountOption::Async,
            "dirsync" => MountOption::DirSync,
            // Pushed above: `run` turns it into `--ro`.
            "ro" => continue,
            other => {
                return Err(CliError::new(
                    exit::USAGE,
                    format!("unsupported mount option {other:?}"),
                ));
            }
        });
    }
    // nosuid,nodev unless allowed above: fuser defaults to them too, but the rule is ours and
    // must not hang on a library's default.
    opts.push(if suid {
        MountOption::Suid
    } else {
        MountOption::NoSuid
    });
    opts.push(if dev {
        MountOption::Dev
    } else {
        MountOption::NoDev
    });
    if suid || dev {
        eprintln!(
            "cofferfs: warning: mounted with {}: anyone who can write the cipherdir can plant a setuid program or device node",
            [(suid, "suid"), (dev, "dev")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let secs = Duration::from_secs;
        assert_eq!(parse_duration("90").unwrap(), secs(90));
        assert_eq!(parse_duration("10m").unwrap(), secs(600));
        assert_eq!(parse_duration("2h").unwrap(), secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), secs(5400));
        assert_eq!(parse_duration("2h 15min").unwrap(), secs(8100));
        assert_eq!(parse_duration("1.5h").unwrap(), secs(5400));
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        assert_eq!(
            parse_duration("1m30s250ms").unwrap(),
            Duration::from_millis(90_250)
        );
        assert_eq!(parse_duration("2d").unwrap(), secs(172_800));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "m", "5x", "1h30", "-1s", "1..5s", "s5", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}

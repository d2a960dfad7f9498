//! The mount-helper form of the command line: `cofferfs CIPHERDIR MOUNTPOINT -o OPTS`.
//!
//! `mount -t fuse.cofferfs`, an `/etc/fstab` line and systemd mount units all go through
//! `mount.fuse3`, which runs the filesystem as `cofferfs SOURCE MOUNTPOINT -o OPTIONS`: no
//! subcommand, and every setting folded into one comma-separated `-o` string. This module turns
//! that form into the equivalent `cofferfs mount …` before clap sees it, so the helper form
//! gets exactly the checks, daemonizing and error messages of `cofferfs mount` (it returns only
//! once the mount is ready, which is what mount(8) waits for).
//!
//! Options are taken as libmount writes them: a value may be double-quoted to hold commas
//! (`extpass="pass show a,b"`). Options that only mean something to mount(8) or fstab
//! (`_netdev`, `nofail`, `noauto`, `user`, `x-systemd.*`, …) are ignored, as every FUSE
//! filesystem does. `mount.fuse3` adds `dev,suid` to every mount made by root unless the line
//! says `nodev`/`nosuid`; since they cannot be told from the user's own, they are dropped
//! (the mount stays `nosuid,nodev`) unless the line also says `allow_suid_dev`.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use super::{CliError, exit};

/// How a helper-form option maps onto `cofferfs mount`.
enum Mapped {
    /// A `mount` flag without a value (`--ro`).
    Flag(&'static str),
    /// A `mount` option that takes the option's value (`--passfile PATH`).
    WithValue(&'static str),
    /// Passed on in `mount -o`.
    MountOption,
    /// Meaningful only to mount(8), fstab, systemd or libfuse's own helpers: ignored.
    Ignored,
}

/// The mapping of one option name (the part before `=`).
fn map(name: &str) -> Mapped {
    match name {
        "passfile" => Mapped::WithValue("--passfile"),
        "extpass" => Mapped::WithValue("--extpass"),
        "keyfile" => Mapped::WithValue("--keyfile"),
        "pin_file" | "pin-file" => Mapped::WithValue("--pin-file"),
        "pin_extpass" | "pin-extpass" => Mapped::WithValue("--pin-extpass"),
        "header_store" | "header-store" => Mapped::WithValue("--header-store"),
        "idle" => Mapped::WithValue("--idle"),
        "slot" => Mapped::WithValue("--slot"),
        "threads" => Mapped::WithValue("--threads"),
        "max_inodes" | "max-inodes" => Mapped::WithValue("--max-inodes"),
        "fsname" => Mapped::WithValue("--fsname"),
        "ro" => Mapped::Flag("--ro"),
        "allow_other" => Mapped::Flag("--allow-other"),
        "no_writeback_cache" => Mapped::Flag("--no-writeback-cache"),
        "no_xattr" => Mapped::Flag("--no-xattr"),
        "nosyslog" => Mapped::Flag("--nosyslog"),
        "allow_suid_dev" => Mapped::Flag("--allow-suid-dev"),
        // mount(2) defaults (`rw`, `relatime`), or always in force (`default_permissions`),
        // or the helper's own (`subtype`): nothing to do.
        "rw" | "relatime" | "defaults" | "default_permissions" | "subtype" => Mapped::Ignored,
        // For mount(8), fstab and systemd only; mount.fuse3 strips most of them itself.
        "_netdev" | "nofail" | "noauto" | "auto" | "user" | "users" | "nouser" | "owner"
        | "group" | "comment" => Mapped::Ignored,
        n if n.starts_with("x-") => Mapped::Ignored,
        // Everything else goes to `mount -o`, which knows the generic ones (noexec, nodev,
        // noatime, sync, …) and refuses what it does not know with a clear message.
        _ => Mapped::MountOption,
    }
}

/// Splits a libmount option string at commas outside double quotes; quotes are removed.
fn split_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.retain(|o| !o.is_empty());
    out
}

/// True when `argv` is the helper form: the first argument is neither an option nor a known
/// subcommand, and names a directory (or at least looks like a path), so a mistyped
/// subcommand still gets clap's "did you mean" message.
pub fn is_helper_form(argv: &[OsString], subcommands: &[String]) -> bool {
    let Some(first) = argv.get(1) else {
        return false;
    };
    let s = first.to_string_lossy();
    if s.starts_with('-') || subcommands.iter().any(|c| *c == s) {
        return false;
    }
    argv.len() >= 3 && (s.contains('/') || Path::new(first).is_dir())
}

/// Rewrites the helper form `cofferfs CIPHERDIR MNT [-o OPTS]… [ARGS]…` into `cofferfs mount
/// [FLAGS] [ARGS]… CIPHERDIR MNT`. Arguments other than `-o` are passed on unchanged (so
/// `-f` works for a test at a terminal). Errors are usage errors, before any secret is read.
pub fn rewrite(argv: &[OsString]) -> Result<Vec<OsString>, CliError> {
    let usage = |m: String| CliError::new(exit::USAGE, m);
    let mut positional: Vec<OsString> = Vec::new();
    let mut option_strings: Vec<String> = Vec::new();
    let mut passed: Vec<OsString> = Vec::new();
    let mut rest = argv.iter().skip(1);
    while let Some(arg) = rest.next() {
        let s = arg.to_str();
        if s == Some("-o") {
            let v = rest
                .next()
                .ok_or_else(|| usage("-o needs a value".into()))?;
            option_strings.push(utf8(v)?);
        } else if let Some(v) = s.and_then(|s| s.strip_prefix("-o")) {
            option_strings.push(v.to_owned());
        } else if s.is_some_and(|s| s.starts_with('-')) {
            passed.push(arg.clone());
        } else {
            positional.push(arg.clone());
        }
    }
    let [cipherdir, mountpoint] = <[OsString; 2]>::try_from(positional).map_err(|p| {
        usage(format!(
            "the mount-helper form is `cofferfs CIPHERDIR MOUNTPOINT -o OPTIONS` ({} paths given)",
            p.len()
        ))
    })?;

    let opts: Vec<String> = option_strings
        .iter()
        .flat_map(|s| split_options(s))
        .collect();
    let allow_suid_dev = opts.iter().any(|o| o == "allow_suid_dev");
    let mut out: Vec<OsString> = vec![argv[0].clone(), "mount".into()];
    let mut mount_o: Vec<String> = Vec::new();
    for o in &opts {
        let (name, value) = match o.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (o.as_str(), None),
        };
        match (map(name), value) {
            (Mapped::WithValue(flag), Some(v)) if !v.is_empty() => {
                out.push(flag.into());
                out.push(v.into());
            }
            (Mapped::WithValue(_), _) => {
                return Err(usage(format!(
                    "mount option {name:?} needs a value ({name}=…)"
                )));
            }
            (Mapped::Flag(flag), None) => out.push(flag.into()),
            (Mapped::Flag(_), Some(_)) => {
                return Err(usage(format!("mount option {name:?} takes no value")));
            }
            (Mapped::Ignored, _) => {}
            (Mapped::MountOption, _) if (name == "suid" || name == "dev") && !allow_suid_dev => {}
            (Mapped::MountOption, _) => mount_o.push(o.clone()),
        }
    }
    if !mount_o.is_empty() {
        out.push("-o".into());
        out.push(mount_o.join(",").into());
    }
    out.extend(passed);
    out.push(OsString::from("--"));
    out.push(cipherdir);
    out.push(mountpoint);
    Ok(out)
}

fn utf8(v: &OsStr) -> Result<String, CliError> {
    v.to_str().map(str::to_owned).ok_or_else(|| {
        CliError::new(
            exit::USAGE,
            "mount options must be valid UTF-8 (paths in -o too)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn rewritten(a: &[&str]) -> Vec<String> {
        rewrite(&argv(a))
            .unwrap()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn what_mount_fuse3_passes_for_root_becomes_a_mount_command() {
        assert_eq!(
            rewritten(&[
                "cofferfs",
                "/c",
                "/m",
                "-o",
                "rw,relatime,passfile=/etc/p,allow_other,idle=5m,noatime,dev,suid"
            ]),
            [
                "cofferfs",
                "mount",
                "--passfile",
                "/etc/p",
                "--allow-other",
                "--idle",
                "5m",
                "-o",
                "noatime",
                "--",
                "/c",
                "/m"
            ]
        );
    }

    #[test]
    fn pin_options_become_pin_flags() {
        assert_eq!(
            rewritten(&["cofferfs", "/c", "/m", "-o", "slot=1,pin_file=/etc/pin"]),
            [
                "cofferfs",
                "mount",
                "--slot",
                "1",
                "--pin-file",
                "/etc/pin",
                "--",
                "/c",
                "/m"
            ]
        );
    }

    #[test]
    fn threads_option_becomes_the_threads_flag() {
        assert_eq!(
            rewritten(&["cofferfs", "/c", "/m", "-o", "threads=2,ro"]),
            [
                "cofferfs",
                "mount",
                "--threads",
                "2",
                "--ro",
                "--",
                "/c",
                "/m"
            ]
        );
    }

    #[test]
    fn max_inodes_option_becomes_the_max_inodes_flag() {
        assert_eq!(
            rewritten(&["cofferfs", "/c", "/m", "-o", "max_inodes=500"]),
            ["cofferfs", "mount", "--max-inodes", "500", "--", "/c", "/m"]
        );
    }

    #[test]
    fn fstab_only_options_are_ignored_and_generic_ones_passed_on() {
        assert_eq!(
            rewritten(&[
                "cofferfs",
                "/c",
                "/m",
                "-o",
                "ro,_netdev,nofail,noauto,user,x-systemd.automount,nosuid,nodev,noexec",
                "-okeyfile=/k,header_store=/s/db"
            ]),
            [
                "cofferfs",
                "mount",
                "--ro",
                "--keyfile",
                "/k",
                "--header-store",
                "/s/db",
                "-o",
                "nosuid,nodev,noexec",
                "--",
                "/c",
                "/m"
            ]
        );
    }

    #[test]
    fn a_quoted_value_keeps_its_commas() {
        assert_eq!(
            rewritten(&["cofferfs", "/c", "/m", "-o", "extpass=\"pass show a,b\",ro"]),
            [
                "cofferfs",
                "mount",
                "--extpass",
                "pass show a,b",
                "--ro",
                "--",
                "/c",
                "/m"
            ]
        );
    }

    #[test]
    fn suid_and_dev_pass_only_with_allow_suid_dev() {
        let r = rewritten(&["cofferfs", "/c", "/m", "-o", "suid,dev,allow_suid_dev"]);
        assert_eq!(
            r,
            [
                "cofferfs",
                "mount",
                "--allow-suid-dev",
                "-o",
                "suid,dev",
                "--",
                "/c",
                "/m"
            ]
        );
    }

    #[test]
    fn other_arguments_pass_through() {
        assert_eq!(
            rewritten(&["cofferfs", "/c", "-f", "/m"]),
            ["cofferfs", "mount", "-f", "--", "/c", "/m"]
        );
    }

    #[test]
    fn bad_helper_forms_are_usage_errors() {
        for a in [
            &["cofferfs", "/c", "/m", "-o", "passfile"][..],
            &["cofferfs", "/c", "/m", "-o", "passfile="],
            &["cofferfs", "/c", "/m", "-o", "ro=1"],
            &["cofferfs", "/c", "/m", "/x"],
            &["cofferfs", "/c", "/m", "-o"],
        ] {
            let e = rewrite(&argv(a)).unwrap_err();
            assert_eq!(e.code, exit::USAGE, "{a:?}: {}", e.message);
        }
    }

    #[test]
    fn subcommands_options_and_typos_are_not_the_helper_form() {
        let subs = vec!["mount".to_owned(), "rotate".to_owned()];
        assert!(!is_helper_form(
            &argv(&["cofferfs", "mount", "/c", "/m"]),
            &subs
        ));
        assert!(!is_helper_form(&argv(&["cofferfs", "--help"]), &subs));
        assert!(!is_helper_form(&argv(&["cofferfs", "rotat", "/c"]), &subs));
        assert!(is_helper_form(&argv(&["cofferfs", "/c", "/m"]), &subs));
        assert!(is_helper_form(
            &argv(&["cofferfs", "./c", "m", "-o", "ro"]),
            &subs
        ));
    }
}

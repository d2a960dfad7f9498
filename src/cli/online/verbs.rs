//! The online form of each management command: the same arguments and secrets as offline,
//! sent to the daemon instead of opening the volume.

use std::io::IsTerminal;
use std::path::Path;

use super::{proof, send, send_and_print, send_raw};
use crate::cli::fsck::FsckArgs;
use crate::cli::keys::add::AddArgs;
use crate::cli::keys::remove::RemoveArgs;
use crate::cli::passwd::PasswdArgs;
use crate::cli::reencrypt::ReencryptArgs;
use crate::cli::rotate::RotateArgs;
use crate::cli::unlock::{KdfArgs, UnlockArgs, read_keyfile};
use crate::cli::{CliError, exit};
use crate::control::protocol::{Kdf, NewSecret, Request, SecretBytes};
use crate::crypto::KdfParams;
use crate::volume::Location;

/// `--argon2-*` as given (the daemon fills in the slot's own for unset ones), warning as
/// offline when the memory is weak.
fn kdf_change(k: &KdfArgs) -> Kdf {
    if k.argon2_memory.is_some_and(|m| m < 8192) {
        eprintln!("cofferfs: warning: Argon2id memory below 8 MiB makes password guessing cheap");
    }
    Kdf {
        m_kib: k.argon2_memory,
        t: k.argon2_time,
        p: k.argon2_lanes,
    }
}

/// `passwd` of a mounted volume.
pub fn passwd(sock: &Path, loc: &Location, a: &PasswdArgs) -> Result<(), CliError> {
    let secret = a.unlock.read_for(loc, None, "Password: ")?;
    let new = a.new_password.read()?;
    send_and_print(
        sock,
        &Request::Passwd {
            auth: proof(&secret, None),
            slot: a.slot,
            new_secret: SecretBytes::from_slice(&new),
            kdf: kdf_change(&a.kdf),
        },
    )
}

/// `keys add` of a mounted volume.
pub fn keys_add(
    sock: &Path,
    loc: &Location,
    a: &AddArgs,
    unlock: &UnlockArgs,
) -> Result<(), CliError> {
    let secret = unlock.read_for(loc, None, "Password: ")?;
    let (new, label, keyfile) = if let Some(key) = &a.transit {
        let (slot_key, params) =
            crate::cli::transit::new_slot_key(&a.transit_mount, key, &a.vault)?;
        let new = NewSecret::Transit {
            secret: SecretBytes::from_slice(slot_key.expose()),
            params: params.encode(),
        };
        (new, format!("transit:{key}"), false)
    } else if a.pkcs11.pkcs11_module.is_some() {
        let volume_id = crate::keystore::HeaderStore::peek_volume_id(loc.store())
            .map_err(crate::volume::VolumeError::from)?;
        let (slot_key, params) = crate::cli::pkcs11::new_slot_key(&a.pkcs11, &a.pin, &volume_id)?;
        let label = format!("pkcs11:{}/{}", params.token, params.key);
        let new = NewSecret::Pkcs11 {
            secret: SecretBytes::from_slice(slot_key.expose()),
            params: params.encode(),
        };
        (new, label, false)
    } else if let Some(path) = &a.keyfile {
        let bytes = read_keyfile(path)?;
        let new = NewSecret::Keyfile {
            secret: SecretBytes::from_slice(&bytes),
        };
        (new, "keyfile".to_owned(), true)
    } else {
        let kdf = a.kdf.resolve(KdfParams::default())?;
        let pw = a.new_password.read()?;
        let new = NewSecret::Password {
            secret: SecretBytes::from_slice(&pw),
            kdf: Kdf {
                m_kib: Some(kdf.m_kib),
                t: Some(kdf.t),
                p: Some(kdf.p),
            },
        };
        (new, "password".to_owned(), false)
    };
    send_and_print(
        sock,
        &Request::KeysAdd {
            auth: proof(&secret, None),
            label: a.label.clone().unwrap_or(label),
            new,
        },
    )?;
    if keyfile {
        println!("Keep the key file safe: whoever holds it can open the volume.");
    }
    Ok(())
}

/// `keys remove` of a mounted volume.
pub fn keys_remove(sock: &Path, loc: &Location, a: &RemoveArgs) -> Result<(), CliError> {
    let secret = a
        .unlock
        .read_for_keeping(loc, None, Some(a.slot), "Password: ")?;
    send_and_print(
        sock,
        &Request::KeysRemove {
            auth: proof(&secret, None),
            slot: a.slot,
        },
    )
}

/// `fsck` of a mounted volume: a check only.
pub fn fsck(sock: &Path, loc: &Location, a: &FsckArgs) -> Result<(), CliError> {
    if a.repair {
        return Err(CliError::new(
            exit::LOCKED,
            format!(
                "{} is mounted: `fsck --repair` needs it unmounted (a check without --repair \
                 works online)",
                loc.cipherdir().display()
            ),
        ));
    }
    let secret = a.unlock.read_for(loc, a.slot, "Password: ")?;
    let reply = send_raw(
        sock,
        &Request::Fsck {
            auth: proof(&secret, a.slot),
        },
    )?;
    if let Some(text) = reply.data.get("text").and_then(|t| t.as_str()) {
        print!("{text}");
    }
    if reply.ok {
        println!("{}", reply.message);
        return Ok(());
    }
    if reply.data.get("text").is_some() {
        println!("{}", reply.message);
    }
    Err(CliError::new(reply.code, reply.message))
}

/// `reencrypt PATH…` of a mounted volume (the daemon rewrites through the mount; an open
/// file waits for its last close: see `online::reencrypt`).
pub fn reencrypt(sock: &Path, loc: &Location, a: &ReencryptArgs) -> Result<(), CliError> {
    if a.all {
        return Err(CliError::new(
            exit::LOCKED,
            format!(
                "{} is mounted: `reencrypt --all` needs it unmounted (named paths work online)",
                loc.cipherdir().display()
            ),
        ));
    }
    let secret = a.unlock.read_for(loc, a.slot, "Password: ")?;
    let paths = a
        .paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let reply = send_raw(
        sock,
        &Request::Reencrypt {
            auth: proof(&secret, a.slot),
            paths,
        },
    )?;
    for line in reply.data["lines"].as_array().into_iter().flatten() {
        let text = line.as_str().unwrap_or_default();
        if text.starts_with("skipped") {
            eprintln!("cofferfs: {text}");
        } else {
            println!("{text}");
        }
    }
    if reply.ok {
        println!("{}", reply.message);
        return Ok(());
    }
    if reply.data["lines"].is_array() {
        println!("{}", reply.message);
    }
    Err(CliError::new(reply.code, reply.message))
}

/// `rotate` of a mounted volume: the daemon begins the rotation (one short transaction) and
/// its rotation thread re-wraps the key rows while the mount goes on; the command returns at
/// once (`status` follows it), or with `--wait` once the last row is done.
pub fn rotate(sock: &Path, loc: &Location, a: &RotateArgs) -> Result<(), CliError> {
    let secret = a.unlock.read_for(loc, a.slot, "Password: ")?;
    send_and_print(
        sock,
        &Request::Rotate {
            auth: proof(&secret, a.slot),
            drop_other_slots: a.drop_other_slots,
            // The offline default means "the daemon's own" (smaller batches online).
            batch_rows: Some(a.batch_rows)
                .filter(|&n| n != crate::keystore::keyring::DEFAULT_BATCH_ROWS),
        },
    )?;
    drop(secret);
    if a.wait {
        wait_for_rotation(sock)?;
    }
    Ok(())
}

/// Polls the daemon's `status` until its rotation has finished (or failed).
fn wait_for_rotation(sock: &Path) -> Result<(), CliError> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "re-wrapping file keys {bar:40} {pos}/{len} ({eta})",
            )
            .expect("a valid template"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    loop {
        let r = send(sock, &Request::Status)?;
        let rot = &r.data["rotation"];
        bar.set_length(rot["total"].as_u64().unwrap_or(0));
        bar.set_position(rot["done"].as_u64().unwrap_or(0));
        match rot["state"].as_str() {
            Some("finished") => {
                bar.finish_and_clear();
                println!(
                    "Rotation finished: {} key rows re-wrapped in {:.3} s; the old KEK is \
                     destroyed.",
                    rot["done"].as_u64().unwrap_or(0),
                    rot["secs"].as_f64().unwrap_or(0.0)
                );
                return Ok(());
            }
            Some("running") => {}
            _ => {
                bar.finish_and_clear();
                return Err(CliError::new(
                    exit::OTHER,
                    format!(
                        "the rotation did not finish: {}",
                        rot["error"].as_str().unwrap_or("stopped (unmounted?)")
                    ),
                ));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

//! `cofferfs generate man DIR` and `cofferfs generate completions SHELL`: pages and scripts
//! generated from the clap definitions, so every verb is in them.

use std::process::Command;

fn cofferfs(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cofferfs"))
        .args(args)
        .output()
        .unwrap()
}

const VERBS: [&str; 14] = [
    "init",
    "info",
    "mount",
    "umount",
    "fsck",
    "reencrypt",
    "share",
    "open-share",
    "shares",
    "keys",
    "passwd",
    "rotate",
    "speed",
    "generate",
];

#[test]
fn man_pages_are_valid_roff_for_every_verb_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    let out = cofferfs(&["generate", "man", out_dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let main = std::fs::read_to_string(out_dir.join("cofferfs.1")).unwrap();
    assert!(main.starts_with(".ie") || main.starts_with(".TH"), "{main}");
    assert!(main.contains(".TH cofferfs 1"), "{main}");
    for verb in VERBS {
        // roff writes a hyphen as `\-`.
        assert!(
            main.contains(&verb.replace('-', "\\-")),
            "cofferfs.1 lacks {verb}"
        );
        let page = std::fs::read_to_string(out_dir.join(format!("cofferfs-{verb}.1")))
            .unwrap_or_else(|e| panic!("cofferfs-{verb}.1: {e}"));
        assert!(
            page.contains(&format!(".TH cofferfs-{verb} 1")),
            "{verb}: {page}"
        );
    }
    let mount = std::fs::read_to_string(out_dir.join("cofferfs-mount.1")).unwrap();
    assert!(mount.contains("passfile") && mount.contains("nosyslog"));
    // The helper form is documented in the main page.
    assert!(main.contains("fuse.cofferfs"), "{main}");

    // man(1) renders it without a warning (man-db is on the project's machines; `-l` reads
    // a local file).
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(out_dir.join("cofferfs-mount.1"))
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C")
        .output()
        .expect("man (man-db) is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("--passfile"), "{text}");
}

#[test]
fn bash_completion_script_is_produced_and_parses() {
    let out = cofferfs(&["generate", "completions", "bash"]);
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("complete -F _cofferfs"), "{script}");
    for verb in VERBS {
        assert!(script.contains(verb), "completion lacks {verb}");
    }
    // bash accepts it and defines the completion.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cofferfs.bash");
    std::fs::write(&f, &script).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p cofferfs", f.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("_cofferfs"));
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = cofferfs(&["generate", "completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

//! The README's tables say what the binary does: the exit-code tables list exactly the codes of
//! src/cli/exit.rs (through its `ALL` list, which must hold every `pub const` of that file),
//! and every options table of a subcommand lists options that `cofferfs SUB --help` has, with
//! the same defaults, and every option of that `--help` is documented. Also: README links stay
//! inside the repository. Generic over the README's text: a new row or a new table is checked
//! without changing this file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

const README: &str = include_str!("../README.md");
const EXIT_RS: &str = include_str!("../src/cli/exit.rs");

/// A Markdown table: the heading it stands under, its header cells, its rows.
#[derive(Debug)]
struct Table {
    heading: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

/// Every table of `text` (outside code blocks), with its nearest heading.
fn tables(text: &str) -> Vec<Table> {
    let mut out: Vec<Table> = Vec::new();
    let (mut heading, mut in_code, mut current) = (String::new(), false, None::<Table>);
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        let is_row = !in_code && line.trim_start().starts_with('|');
        if !is_row {
            out.extend(current.take());
            if !in_code && line.starts_with('#') {
                heading = line.trim_start_matches('#').trim().to_owned();
            }
            continue;
        }
        let c = cells(line);
        match &mut current {
            None => {
                current = Some(Table {
                    heading: heading.clone(),
                    header: c,
                    rows: Vec::new(),
                })
            }
            Some(_) if c.iter().all(|x| x.chars().all(|ch| ch == '-' || ch == ':')) => {}
            Some(t) => t.rows.push(c),
        }
    }
    out.extend(current);
    out
}

/// `pub const NAME: i32 = N;` of exit.rs, by name.
fn exit_consts() -> BTreeMap<String, i32> {
    EXIT_RS
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("pub const ")?;
            let (name, rest) = rest.split_once(": i32 = ")?;
            Some((name.to_owned(), rest.trim_end_matches(';').parse().ok()?))
        })
        .collect()
}

#[test]
fn exit_code_tables_match_src_cli_exit_rs() {
    let all: BTreeMap<i32, &str> = cofferfs::cli::exit::ALL.iter().copied().collect();
    assert_eq!(
        all.len(),
        cofferfs::cli::exit::ALL.len(),
        "a code listed twice in ALL"
    );
    for (name, code) in exit_consts() {
        assert_eq!(
            all.get(&code),
            Some(&name.as_str()),
            "exit.rs: `pub const {name}: i32 = {code}` is missing from `ALL` (add ({name}, \"{name}\"))"
        );
    }
    let code_tables: Vec<Table> = tables(README)
        .into_iter()
        .filter(|t| t.header.first().is_some_and(|h| h == "code"))
        .collect();
    let main = code_tables
        .iter()
        .find(|t| t.heading == "Exit codes")
        .expect("README has an \"Exit codes\" table");
    let documented = |t: &Table| -> BTreeSet<i32> {
        t.rows
            .iter()
            .map(|r| {
                r[0].parse()
                    .unwrap_or_else(|_| panic!("{:?}: code {:?} is not a number", t.heading, r[0]))
            })
            .collect()
    };
    let in_readme = documented(main);
    let in_code: BTreeSet<i32> = all.keys().copied().collect();
    assert_eq!(
        in_readme.difference(&in_code).collect::<Vec<_>>(),
        Vec::<&i32>::new(),
        "README \"Exit codes\" lists codes that src/cli/exit.rs does not have"
    );
    assert_eq!(
        in_code.difference(&in_readme).collect::<Vec<_>>(),
        Vec::<&i32>::new(),
        "src/cli/exit.rs has codes that the README \"Exit codes\" table does not list"
    );
    assert_eq!(
        main.rows.len(),
        in_readme.len(),
        "a code listed twice in the README"
    );
    for t in &code_tables {
        for code in documented(t) {
            assert!(
                in_code.contains(&code),
                "{:?} lists unknown code {code}",
                t.heading
            );
        }
    }
    assert!(code_tables.len() >= 2, "{code_tables:#?}");
}

/// The subcommands a heading names: every backticked `cofferfs …` span, cut at the first
/// word that is not a subcommand name (an argument, an option, a placeholder).
fn subcommands(heading: &str) -> Vec<Vec<String>> {
    heading
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|span| span.strip_prefix("cofferfs "))
        .map(|rest| {
            rest.split_whitespace()
                .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
                .take_while(|w| !w.starts_with('-'))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .collect()
}

/// The options in backticks in a table cell: `--long` and `-x`, in order.
fn options_in(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|span| span.split_whitespace().next())
        .filter(|w| w.starts_with('-'))
        .map(|w| w.trim_end_matches(',').to_owned())
        .collect()
}

/// `cofferfs SUB… --help`.
fn help(sub: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cofferfs"))
        .args(sub)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "cofferfs {sub:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The options of a `--help` text, each with its `[default: …]` if it has one.
fn help_options(help: &str) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for line in help.lines() {
        let l = line.trim_start();
        if !l.starts_with('-') || line.len() == l.len() {
            continue;
        }
        let default = l
            .split_once("[default: ")
            .map(|(_, d)| d.trim_end_matches(']').to_owned());
        let spec = l.split("  ").next().unwrap();
        for word in spec.split([',', ' ']) {
            let word = word.trim();
            if word.starts_with('-') && !word.starts_with("-<") {
                out.insert(word.to_owned(), default.clone());
            }
        }
    }
    out
}

/// Options that README documents once for every command (section "Passwords").
fn common_options() -> BTreeSet<String> {
    let start = README.find("### Passwords").expect("a Passwords section");
    let section = &README[start..];
    let end = section[4..].find("\n### ").map_or(section.len(), |e| e + 4);
    let mut out: BTreeSet<String> = options_in(&section[..end]).into_iter().collect();
    out.extend([
        "-h".into(),
        "--help".into(),
        "-V".into(),
        "--version".into(),
    ]);
    out
}

#[test]
fn option_tables_match_each_subcommands_help() {
    let common = common_options();
    let mut checked = 0;
    for t in tables(README) {
        if t.header.first().map(String::as_str) != Some("option") {
            continue;
        }
        let subs = subcommands(&t.heading);
        assert!(
            !subs.is_empty(),
            "options table under {:?} names no `cofferfs SUB`",
            t.heading
        );
        let helps: Vec<BTreeMap<String, Option<String>>> =
            subs.iter().map(|s| help_options(&help(s))).collect();
        let default_col = t.header.iter().position(|h| h == "default");
        let mut documented = BTreeSet::new();
        for row in &t.rows {
            let opts = options_in(&row[0]);
            assert!(
                !opts.is_empty(),
                "{:?}: a row without an option: {row:?}",
                t.heading
            );
            let defaults: Vec<String> = default_col
                .map(|c| {
                    row[c]
                        .split(", ")
                        .map(|d| d.trim_matches('`').to_owned())
                        .collect()
                })
                .unwrap_or_default();
            for (i, opt) in opts.iter().enumerate() {
                let found = helps.iter().find_map(|h| h.get(opt));
                let Some(help_default) = found else {
                    panic!(
                        "{:?}: {opt} is documented but `cofferfs {subs:?} --help` has no such option",
                        t.heading
                    );
                };
                if let (Some(want), Some(doc)) = (help_default, defaults.get(i)) {
                    assert_eq!(doc, want, "{:?}: default of {opt}", t.heading);
                }
                documented.insert(opt.clone());
            }
        }
        for (sub, h) in subs.iter().zip(&helps) {
            for opt in h.keys() {
                assert!(
                    documented.contains(opt) || common.contains(opt),
                    "`cofferfs {}` has {opt}, but the table under {:?} does not document it",
                    sub.join(" "),
                    t.heading
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} options tables found");
}

#[test]
fn readme_links_stay_inside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for piece in README.split("](").skip(1) {
        let target = piece.split(')').next().unwrap();
        if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
            continue;
        }
        let path = target.split('#').next().unwrap();
        assert!(
            !path.split('/').any(|c| c == ".."),
            "link leaves the repository: {target}"
        );
        assert!(root.join(path).exists(), "link to a missing file: {target}");
    }
}

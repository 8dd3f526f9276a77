//! `units-compare OLD_UNITS_RS [--targets] FILES...`: units of the files by the old splitter
//! (a `units.rs` from another commit, whose `split(text, ext, UnitKind)` is the pre-issue-15
//! form) and by this tree's, and how many of the old units held markup. `--targets` reads the
//! files as JSONL pairs and cuts their targets as one plain-text file (how a corpus of them
//! would be read).
#![allow(dead_code)]

pub mod config {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum UnitKind {
        Sentence,
        Paragraph,
    }
}
#[path = "old_units.rs"]
mod old_units;
#[path = "../../../src/workspace/units.rs"]
mod new_units;

use std::collections::HashSet;

/// Signs of markup that prose does not hold.
fn has_markup(u: &str) -> bool {
    ["`", "](", "**", "<", ">", "http://", "https://", "|", "__", "[", "]"]
        .iter()
        .any(|m| u.contains(m))
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let targets = args.first().is_some_and(|a| a == "--targets");
    if targets {
        args.remove(0);
    }
    let kind = config::UnitKind::Sentence;
    let (mut old_all, mut new_all) = (Vec::new(), Vec::new());
    for path in &args {
        let text = std::fs::read_to_string(path).expect("readable UTF-8 file");
        let (text, ext) = if targets {
            let t: Vec<String> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["target"].as_str().map(String::from))
                .collect();
            (t.join("\n\n"), "txt".to_string())
        } else {
            let ext = path.rsplit('.').next().unwrap_or("").to_lowercase();
            (text, ext)
        };
        old_all.extend(old_units::split(&text, &ext, kind));
        new_all.extend(new_units::split(
            &text,
            &ext,
            &new_units::SplitOptions::default(),
        ));
    }
    let new_set: HashSet<&String> = new_all.iter().collect();
    let same = old_all.iter().filter(|u| new_set.contains(u)).count();
    let old_markup = old_all.iter().filter(|u| has_markup(u)).count();
    let new_markup = new_all.iter().filter(|u| has_markup(u)).count();
    println!(
        "files {}\nunits before {}\nunits after {}\nbefore, units with markup {} ({:.1}%)\nafter, units with markup {}\nunits unchanged {}",
        args.len(),
        old_all.len(),
        new_all.len(),
        old_markup,
        100.0 * old_markup as f64 / old_all.len().max(1) as f64,
        new_markup,
        same
    );
    if std::env::var_os("SHOW").is_some() {
        for u in new_all.iter().filter(|u| has_markup(u)) {
            println!("after, with markup: {u}");
        }
    }
}

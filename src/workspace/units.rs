//! Cutting prose into units: paragraphs of running text (markup, code and headings left out),
//! optionally cut further into sentences. Each unit is one line of text.

use super::config::UnitKind;

/// Units shorter than this many words carry too little style to learn from.
const MIN_WORDS: usize = 3;
/// Longer units are left out: with their paraphrase they would not fit one model context.
const MAX_CHARS: usize = 1200;

/// The units of a file's text. `ext` (lower case, no dot) says which markup to skip.
pub fn split(text: &str, ext: &str, kind: UnitKind) -> Vec<String> {
    let mut out = Vec::new();
    for para in paragraphs(text, ext) {
        match kind {
            UnitKind::Paragraph => out.push(para),
            UnitKind::Sentence => out.extend(sentences(&para)),
        }
    }
    out.retain(|u| u.split_whitespace().count() >= MIN_WORDS && u.len() <= MAX_CHARS);
    out
}

/// Paragraphs of running text, each joined onto one line.
fn paragraphs(text: &str, ext: &str) -> Vec<String> {
    let markup = matches!(ext, "md" | "markdown" | "rst" | "adoc" | "asciidoc");
    let mut out = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    let mut fence: Option<&str> = None;
    let mut lines = text.lines().peekable();
    // Front matter (Markdown, AsciiDoc headers are handled line by line below).
    if markup && text.starts_with("---") {
        lines.next();
        for l in lines.by_ref() {
            if l.trim() == "---" || l.trim() == "..." {
                break;
            }
        }
    }
    let flush = |cur: &mut Vec<&str>, out: &mut Vec<String>| {
        if !cur.is_empty() {
            out.push(cur.join(" "));
            cur.clear();
        }
    };
    for line in lines {
        let t = line.trim();
        if let Some(f) = fence {
            if t.starts_with(f) {
                fence = None;
            }
            continue;
        }
        if markup {
            if let Some(f) = ["```", "~~~", "----", "....", "::"]
                .into_iter()
                .find(|f| t.starts_with(f) && (*f != "::" || t == "::"))
            {
                flush(&mut cur, &mut out);
                if f != "::" {
                    fence = Some(f);
                }
                continue;
            }
            let is_markup = t.starts_with('#')
                || t.starts_with('|')
                || t.starts_with("..")
                || t.starts_with("<!--")
                || t.starts_with('<')
                || (t.starts_with(':') && t[1..].contains(':'))
                || (t.starts_with('[') && t.contains("]:"))
                || (!t.is_empty() && t.chars().all(|c| "=-~^*+#`'\"_:.".contains(c)))
                || (line.starts_with("    ") && cur.is_empty())
                || line.starts_with('\t');
            if is_markup {
                flush(&mut cur, &mut out);
                continue;
            }
        }
        if t.is_empty() {
            flush(&mut cur, &mut out);
            continue;
        }
        let t = if markup { strip_block_marker(t) } else { t };
        if markup && t.len() < line.trim().len() && !cur.is_empty() {
            // A new list item or quote line starts a new paragraph.
            flush(&mut cur, &mut out);
        }
        cur.push(t);
    }
    flush(&mut cur, &mut out);
    out
}

/// `- item`, `* item`, `1. item`, `> quote` → the text.
fn strip_block_marker(t: &str) -> &str {
    let mut t = t;
    loop {
        let before = t;
        if let Some(r) = t.strip_prefix('>') {
            t = r.trim_start();
        }
        for m in ["- ", "* ", "+ "] {
            if let Some(r) = t.strip_prefix(m) {
                t = r.trim_start();
            }
        }
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && digits < 4 && t[digits..].starts_with(". ") {
            t = t[digits + 2..].trim_start();
        }
        if t.len() == before.len() {
            return t;
        }
    }
}

/// Abbreviations after which a full stop does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "cf", "fig", "no", "vol",
    "jr", "sr", "inc", "ltd", "co",
];

/// Sentences: cut after `.`, `!`, `?` (and closing quotes or brackets) when whitespace and an
/// upper-case letter, digit or opening quote follow.
fn sentences(para: &str) -> Vec<String> {
    let chars: Vec<(usize, char)> = para.char_indices().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        let (_, c) = chars[i];
        if matches!(c, '.' | '!' | '?' | '…') {
            let mut j = i + 1;
            while j < chars.len()
                && matches!(
                    chars[j].1,
                    '.' | '!' | '?' | '"' | '\'' | '”' | '’' | ')' | ']'
                )
            {
                j += 1;
            }
            let mut k = j;
            while k < chars.len() && chars[k].1.is_whitespace() {
                k += 1;
            }
            let next_ok = k < chars.len()
                && k > j
                && (chars[k].1.is_uppercase()
                    || chars[k].1.is_ascii_digit()
                    || matches!(chars[k].1, '"' | '“' | '\'' | '(' | '['));
            // Only when a cut is possible, and only the last few bytes: an abbreviation is one
            // short word (scanning back to the unit's start at every stop made a long line
            // without spaces quadratic).
            let abbreviation = next_ok && c == '.' && {
                let before = &para[start..chars[i].0];
                let mut from = before.len().saturating_sub(8);
                while !before.is_char_boundary(from) {
                    from += 1;
                }
                let tail = &before[from..];
                let word = tail
                    .rsplit(|c: char| c.is_whitespace())
                    .next()
                    .unwrap_or("");
                (word.len() < tail.len() || from == 0)
                    && ABBREVIATIONS.contains(&word.to_lowercase().as_str())
            };
            if next_ok && !abbreviation {
                let end = if j < chars.len() {
                    chars[j].0
                } else {
                    para.len()
                };
                out.push(para[start..end].trim().to_string());
                start = chars[k].0;
                i = k;
                continue;
            }
            i = j;
            continue;
        }
        i += 1;
    }
    let rest = para[start..].trim();
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_prose_only() {
        let md = "---\ntitle: x\n---\n# Heading here now\n\nFirst line of a\nparagraph here. Dr. Smith said so! Then \"Quoted start\" ends.\n\n```\ncode is not prose at all\n```\n\n- a list item with words\n- another list item here\n\n| a | table | row |\n";
        let p = split(md, "md", UnitKind::Paragraph);
        assert_eq!(
            p,
            vec![
                "First line of a paragraph here. Dr. Smith said so! Then \"Quoted start\" ends.",
                "a list item with words",
                "another list item here",
            ]
        );
        let s = split(md, "md", UnitKind::Sentence);
        assert_eq!(
            s[..3],
            [
                "First line of a paragraph here.",
                "Dr. Smith said so!",
                "Then \"Quoted start\" ends."
            ]
        );
    }

    #[test]
    fn plain_text_keeps_everything_but_short_units() {
        let s = split(
            "Ok.\n\n# not a heading in txt files\nA b c d.",
            "txt",
            UnitKind::Sentence,
        );
        assert_eq!(s, vec!["# not a heading in txt files A b c d."]);
    }

    /// A 1 MiB line of `a.a.a.…` (no space, so no cut) and one of `A. A. …` (a cut at every
    /// stop) take linear time.
    #[test]
    fn long_lines_split_in_linear_time() {
        for text in ["a.".repeat(1 << 19), "Ab. ".repeat(1 << 18)] {
            let t = std::time::Instant::now();
            let s = split(&text, "txt", UnitKind::Sentence);
            let took = t.elapsed();
            assert!(took.as_millis() < 500, "{took:?} for {} units", s.len());
        }
        assert_eq!(
            sentences("He met Dr. Smith. Then mr. Jones came. e.g. Three words here."),
            vec![
                "He met Dr. Smith.",
                "Then mr. Jones came. e.g. Three words here."
            ]
        );
    }
}

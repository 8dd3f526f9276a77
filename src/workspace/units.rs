//! Cutting prose into units: the running text of a file (markup, code, URLs and, unless the
//! settings say otherwise, headings left out), optionally cut further into sentences. Each unit
//! is one line of text. A file's units depend on that file's text and the settings only (never
//! on another file), so the daemon recomputes only the file that changed.
//!
//! - Markdown (`md`, `markdown`) is parsed with pulldown-cmark (CommonMark with tables,
//!   footnotes, strikethrough, task lists and front matter). A unit is the text of one
//!   paragraph, list item, block quote paragraph, table cell, footnote or (with `headings`)
//!   heading; a table's header row counts as headings. Code blocks, HTML blocks and front matter are left out; so are inline code, images
//!   (alt text included), inline HTML tags (the text between them stays), autolinks and bare
//!   URLs. A link's text stays and its URL goes; emphasis markers go, their text stays.
//! - reStructuredText (`rst`) and AsciiDoc (`adoc`, `asciidoc`) are cut by a line rule: a
//!   paragraph is a run of non-blank lines; directives, comments, literal and delimited blocks,
//!   tables, attribute lines and section titles (an over/underlined line in rst, `= Title` in
//!   AsciiDoc) are left out. Inline markup is then removed by the same rule as Markdown's:
//!   literals (``x`` in rst, `x` and +x+ in AsciiDoc) and URLs go; the text of links, roles and
//!   cross references stays; emphasis markers go.
//! - Any other file (plain text) is cut at blank lines and kept as it is.
//!
//! Sentences follow Unicode's sentence boundaries (UAX #29), joined again where the boundary
//! follows an abbreviation of the file's language, a single letter (an initial, "z. B.") or, in
//! German, an ordinal number ("am 3. Mai"), where no space follows the stop, or where a
//! lower-case letter follows it. See [`Language`].

use std::sync::LazyLock;

use regex::Regex;
use unicode_segmentation::UnicodeSegmentation as _;

use super::config::UnitKind;

/// Units shorter than this many words carry too little style to learn from.
const MIN_WORDS: usize = 3;
/// Longer units are left out: with their paraphrase they would not fit one model context.
const MAX_CHARS: usize = 1200;

/// How a file is cut: the settings of `.pema.toml` that bear on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitOptions {
    /// Sentences or paragraphs.
    pub kind: UnitKind,
    /// Headings (section titles) are units too.
    pub headings: bool,
    /// None: detected per file ([`Language::detect`]).
    pub language: Option<Language>,
}

impl Default for SplitOptions {
    fn default() -> Self {
        Self {
            kind: UnitKind::Sentence,
            headings: false,
            language: None,
        }
    }
}

/// The units of a file's text. `ext` (lower case, no dot) says which markup to read.
pub fn split(text: &str, ext: &str, opts: &SplitOptions) -> Vec<String> {
    let blocks = match ext {
        "md" | "markdown" => markdown_blocks(text, opts.headings),
        "rst" => line_blocks(text, Markup::Rst, opts.headings),
        "adoc" | "asciidoc" => line_blocks(text, Markup::AsciiDoc, opts.headings),
        _ => line_blocks(text, Markup::Plain, opts.headings),
    };
    let mut out = Vec::new();
    match opts.kind {
        UnitKind::Paragraph => out = blocks,
        UnitKind::Sentence => {
            let lang = opts
                .language
                .unwrap_or_else(|| Language::detect(blocks.iter().map(String::as_str)));
            for b in &blocks {
                out.extend(sentences(b, lang));
            }
        }
    }
    out.retain(|u| u.split_whitespace().count() >= MIN_WORDS && u.len() <= MAX_CHARS);
    out
}

/// Collects the text of one block at a time.
#[derive(Default)]
struct Blocks {
    out: Vec<String>,
    cur: String,
}

impl Blocks {
    fn push(&mut self, s: &str) {
        self.cur.push_str(s);
    }

    /// Ends the current block: whitespace folded, bare URLs left out.
    fn flush(&mut self) {
        let mut unit = String::new();
        for w in self.cur.split_whitespace().filter(|w| !is_url(w)) {
            if !unit.is_empty() {
                unit.push(' ');
            }
            unit.push_str(w);
        }
        // A removed code span or URL may leave empty brackets, doubled commas or a space before
        // punctuation: "shared (`Arc`, `Sync`); run `x`." → "shared (,); run ." → "shared; run."
        let unit = EMPTY_BRACKETS.replace_all(&unit, "");
        let unit = DOUBLED_COMMAS.replace_all(&unit, "$1");
        let unit = SPACE_BEFORE_PUNCT.replace_all(&unit, "$1");
        if !unit.is_empty() {
            self.out.push(unit.into_owned());
        }
        self.cur.clear();
    }
}

static EMPTY_BRACKETS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r" ?\([\s,;/:]*\)").expect("valid"));
static DOUBLED_COMMAS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([,;:])(?:\s*[,;:])+").expect("valid"));
static SPACE_BEFORE_PUNCT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r" ([.,;:!?)\]])").expect("valid"));

/// A word that is a URL (or an e-mail address), perhaps in brackets or before punctuation.
fn is_url(w: &str) -> bool {
    let w = w.trim_start_matches(['(', '[', '<', '"', '\'']);
    w.contains("://") || w.starts_with("www.") || w.starts_with("mailto:")
}

/// Markdown's prose blocks, by pulldown-cmark's events.
fn markdown_blocks(text: &str, headings: bool) -> Vec<String> {
    use pulldown_cmark::{Event, LinkType, Options, Parser, Tag};
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_PLUSES_DELIMITED_METADATA_BLOCKS
        | Options::ENABLE_DEFINITION_LIST;
    let mut b = Blocks::default();
    // For every open tag, whether its content is left out; `skipping` counts the true ones.
    let mut open: Vec<bool> = Vec::new();
    let mut skipping = 0usize;
    for event in Parser::new_ext(text, options) {
        match event {
            Event::Start(tag) => {
                let inline = matches!(
                    tag,
                    Tag::Emphasis
                        | Tag::Strong
                        | Tag::Strikethrough
                        | Tag::Superscript
                        | Tag::Subscript
                        | Tag::Link { .. }
                        | Tag::Image { .. }
                );
                if !inline {
                    b.flush();
                }
                let skip = match &tag {
                    Tag::CodeBlock(_)
                    | Tag::HtmlBlock
                    | Tag::MetadataBlock(_)
                    | Tag::Image { .. } => true,
                    Tag::Heading { .. } | Tag::TableHead => !headings,
                    Tag::Link { link_type, .. } => {
                        matches!(link_type, LinkType::Autolink | LinkType::Email)
                    }
                    _ => false,
                };
                open.push(skip);
                skipping += usize::from(skip);
            }
            Event::End(end) => {
                if open.pop() == Some(true) {
                    skipping -= 1;
                }
                let inline = matches!(
                    end,
                    pulldown_cmark::TagEnd::Emphasis
                        | pulldown_cmark::TagEnd::Strong
                        | pulldown_cmark::TagEnd::Strikethrough
                        | pulldown_cmark::TagEnd::Superscript
                        | pulldown_cmark::TagEnd::Subscript
                        | pulldown_cmark::TagEnd::Link
                        | pulldown_cmark::TagEnd::Image
                );
                if !inline {
                    b.flush();
                }
            }
            Event::Text(t) if skipping == 0 => b.push(&t),
            Event::SoftBreak | Event::HardBreak if skipping == 0 => b.push(" "),
            // Inline code, inline HTML, math, footnote references and task markers are not
            // prose; a space keeps the words on either side apart.
            Event::Code(_) | Event::InlineHtml(_) | Event::InlineMath(_) => b.push(" "),
            Event::Rule => b.flush(),
            _ => {}
        }
    }
    b.flush();
    b.out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Markup {
    Plain,
    Rst,
    AsciiDoc,
}

/// Blocks of reStructuredText, AsciiDoc or plain text by the line rule (module docs).
fn line_blocks(text: &str, markup: Markup, headings: bool) -> Vec<String> {
    let mut b = Blocks::default();
    let mut cur: Vec<&str> = Vec::new();
    let mut fence: Option<&str> = None;
    let flush = |cur: &mut Vec<&str>, b: &mut Blocks| {
        if !cur.is_empty() {
            b.push(&inline_prose(&cur.join(" "), markup));
            b.flush();
            cur.clear();
        }
    };
    // rst: the indented body of a directive or of a literal block after `::` is left out.
    let mut indented_block = false;
    for line in text.lines() {
        let t = line.trim();
        if markup == Markup::Plain {
            if t.is_empty() {
                flush(&mut cur, &mut b);
            } else {
                cur.push(t);
            }
            continue;
        }
        if indented_block {
            if t.is_empty() || line.starts_with(char::is_whitespace) {
                continue;
            }
            indented_block = false;
        }
        if let Some(f) = fence {
            if t.starts_with(f) {
                fence = None;
            }
            continue;
        }
        // A section title: rst's over/underline (a line of one punctuation character under a
        // one-line paragraph), AsciiDoc's `= Title`.
        let underline = t.len() >= 2
            && t.chars().all(|c| c == t.chars().next().unwrap_or(' '))
            && t.chars().all(|c| "=-~^*+#`'\"_:.".contains(c));
        if markup == Markup::Rst {
            if underline && cur.len() == 1 {
                let title = cur.pop().unwrap_or_default();
                if headings {
                    cur.push(title);
                    flush(&mut cur, &mut b);
                }
                continue;
            }
            if t.starts_with("..") || t.ends_with("::") {
                if !t.starts_with("..") && t != "::" {
                    cur.push(t);
                }
                flush(&mut cur, &mut b);
                indented_block = true;
                continue;
            }
        }
        if let Some(f) = ["```", "~~~", "----", "....", "////", "++++"]
            .into_iter()
            .find(|f| markup == Markup::AsciiDoc && t.starts_with(f))
        {
            flush(&mut cur, &mut b);
            fence = Some(f);
            continue;
        }
        let adoc_title = markup == Markup::AsciiDoc
            && t.starts_with('=')
            && t.trim_start_matches('=').starts_with(' ');
        if adoc_title {
            flush(&mut cur, &mut b);
            if headings {
                cur.push(t.trim_start_matches('=').trim());
                flush(&mut cur, &mut b);
            }
            continue;
        }
        let is_markup = t.starts_with('#')
            || t.starts_with('|')
            || t.starts_with("..")
            || t.starts_with("<!--")
            || t.starts_with('<')
            || (t.starts_with(':') && t[1..].contains(':'))
            || (t.starts_with('[') && (t.contains("]:") || t.ends_with(']')))
            || (markup == Markup::AsciiDoc
                && t.starts_with('.')
                && t[1..].starts_with(|c: char| c.is_alphanumeric()))
            || (!t.is_empty() && t.chars().all(|c| "=-~^*+#`'\"_:.".contains(c)))
            || (line.starts_with("    ") && cur.is_empty())
            || line.starts_with('\t');
        if is_markup {
            flush(&mut cur, &mut b);
            continue;
        }
        if t.is_empty() {
            flush(&mut cur, &mut b);
            continue;
        }
        let s = strip_block_marker(t);
        if s.len() < t.len() && !cur.is_empty() {
            // A new list item or quote line starts a new paragraph.
            flush(&mut cur, &mut b);
        }
        cur.push(s);
    }
    flush(&mut cur, &mut b);
    b.out
}

/// `(pattern, replacement)` pairs, applied in order.
type Rules = Vec<(Regex, &'static str)>;

fn rules(list: &[(&str, &'static str)]) -> Rules {
    list.iter()
        .map(|(p, r)| (Regex::new(p).expect("valid"), *r))
        .collect()
}

static RST_INLINE: LazyLock<Rules> = LazyLock::new(|| {
    rules(&[
        (r"``[^`]*``", " "),                              // ``literal``
        (r"\[[^\]\s]*\]_", " "),                          // [1]_, [#]_ footnote references
        (r"\|[^|\s][^|]*\|", " "),                        // |substitution|
        (r":[\w.+-]+:`([^`<]*?)\s*(?:<[^>`]*>)?`", "$1"), // :role:`text <target>`
        (r"`([^`<]*?)\s*<[^>`]*>`_{0,2}", "$1"),          // `text <url>`_
        (r"`([^`]*)`_{0,2}", "$1"),                       // `text`_, `interpreted`
        (r"(\w)__?(\s|[.,;:!?)]|$)", "$1$2"),             // word_ references
        (r"\*\*([^*]+)\*\*", "$1"),                       // **strong**
        (r"\*([^*\s][^*]*)\*", "$1"),                     // *emphasis*
        (r"::(\s|$)", ":$1"),                             // "Example::" before a literal block
    ])
});

static ADOC_INLINE: LazyLock<Rules> = LazyLock::new(|| {
    rules(&[
        (r"image::?[^\s\[]*\[[^\]]*\]", " "), // image:file[alt]
        (r"footnote:\[[^\]]*\]", " "),        // footnote:[text]
        (
            r"(?:link:|xref:|mailto:|https?://)[^\s\[]*\[([^\]]*)\]",
            "$1",
        ), // url[text]
        (r"<<[^,>]*,\s*([^>]*)>>", "$1"),     // <<id,text>>
        (r"<<[^>]*>>", " "),                  // <<id>>
        (r"`[^`]*`", " "),                    // `monospace`
        (r"\+[^+\s][^+]*\+", " "),            // +literal+
        (r"\{[\w-]+\}", " "),                 // {attribute}
        (r"\*\*?([^*]+?)\*\*?", "$1"),        // *bold*, **bold**
        (r"\b__?([^_]+?)__?\b", "$1"),        // _italic_, __italic__
        (r"#([^#\s][^#]*)#", "$1"),           // #highlight#
    ])
});

/// The prose of a line-rule block: inline markup removed (module docs).
fn inline_prose(s: &str, markup: Markup) -> String {
    let list = match markup {
        Markup::Plain => return s.to_string(),
        Markup::Rst => &*RST_INLINE,
        Markup::AsciiDoc => &*ADOC_INLINE,
    };
    let mut s = s.to_string();
    for (re, rep) in list {
        if let std::borrow::Cow::Owned(o) = re.replace_all(&s, *rep) {
            s = o;
        }
    }
    s
}

/// `- item`, `* item`, `1. item`, `> quote` → the text.
fn strip_block_marker(t: &str) -> &str {
    let mut t = t;
    loop {
        let before = t;
        if let Some(r) = t.strip_prefix('>') {
            t = r.trim_start();
        }
        for m in ["- ", "* ", "+ ", "#. "] {
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

/// The language whose abbreviations and ordinals the sentence splitter knows. Set per workspace
/// (`language` in `.pema.toml`) or detected per file from its stopwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    /// English (`en`).
    English,
    /// German (`de`).
    German,
    /// French (`fr`).
    French,
    /// Spanish (`es`).
    Spanish,
}

impl Language {
    /// `en`, `de`, `fr`, `es` (or the English name).
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code.to_ascii_lowercase().as_str() {
            "en" | "english" => Self::English,
            "de" | "german" | "deutsch" => Self::German,
            "fr" | "french" | "français" => Self::French,
            "es" | "spanish" | "español" => Self::Spanish,
            _ => return None,
        })
    }

    const ALL: [Self; 4] = [Self::English, Self::German, Self::French, Self::Spanish];

    /// Function words that are frequent in the language and rare in the others.
    fn stopwords(self) -> &'static [&'static str] {
        match self {
            Self::English => &[
                "the", "and", "of", "to", "is", "that", "it", "with", "for", "was", "are", "this",
                "be", "have", "not", "you", "they", "which",
            ],
            Self::German => &[
                "der", "die", "das", "und", "ist", "nicht", "ein", "eine", "zu", "mit", "den",
                "von", "sich", "auf", "für", "dem", "auch", "es", "ich", "wird",
            ],
            Self::French => &[
                "le", "les", "et", "est", "une", "des", "du", "pas", "qui", "dans", "pour", "au",
                "sur", "avec", "il", "ce", "sont",
            ],
            Self::Spanish => &[
                "el", "los", "las", "y", "es", "una", "del", "por", "con", "para", "lo", "se",
                "su", "al", "como", "pero", "está",
            ],
        }
    }

    /// Abbreviations (lower case, without the final stop) after which a stop does not end a
    /// sentence. Abbreviations that often end one ("etc.", "usw.") are not here: after them
    /// a capital letter starts a new sentence.
    fn abbreviations(self) -> &'static [&'static str] {
        match self {
            Self::English => &[
                "mr", "mrs", "ms", "dr", "prof", "st", "vs", "e.g", "i.e", "cf", "fig", "figs",
                "no", "nos", "vol", "jr", "sr", "inc", "ltd", "co", "corp", "gen", "col", "lt",
                "sgt", "capt", "rev", "hon", "approx", "dept", "est", "jan", "feb", "mar", "apr",
                "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "ch", "pp", "p", "ed",
                "eds", "op", "viz", "mt", "ft",
            ],
            Self::German => &[
                "dr", "prof", "hr", "fr", "frl", "z.b", "d.h", "u.a", "o.ä", "u.ä", "s.o", "s.u",
                "v.a", "z.t", "i.d.r", "m.e", "o.g", "bzw", "vgl", "ca", "evtl", "ggf", "inkl",
                "exkl", "nr", "str", "bspw", "sog", "mio", "mrd", "jh", "jhd", "abs", "art", "geb",
                "gest", "dt", "engl", "frz", "lat", "tel", "zzgl", "zit", "max", "min", "std",
                "sek", "kap", "bd", "hrsg", "aufl", "ebd", "eigtl", "allg", "bes", "bzgl",
                "einschl", "u.u", "jan", "feb", "mär", "apr", "jun", "jul", "aug", "sep", "sept",
                "okt", "nov", "dez", "st", "mag", "dipl", "ing", "med", "phil", "hl",
            ],
            Self::French => &[
                "m", "mm", "mme", "mmes", "mlle", "dr", "pr", "st", "ste", "cf", "p.ex", "env",
                "av", "bd", "éd", "vol", "n°", "no", "chap", "fig", "janv", "févr", "avr", "juil",
                "sept", "oct", "nov", "déc",
            ],
            Self::Spanish => &[
                "sr", "sra", "srta", "dr", "dra", "d", "dña", "ud", "uds", "vd", "vds", "pág",
                "p.ej", "núm", "cap", "fig", "vol", "av", "avda", "c", "ej", "aprox", "ene", "feb",
                "abr", "jun", "jul", "ago", "sept", "oct", "nov", "dic",
            ],
        }
    }

    /// The language whose stopwords are most frequent among the first 2,000 words; English
    /// when none shows (fewer than 3 stopwords).
    pub fn detect<'a>(text: impl IntoIterator<Item = &'a str>) -> Self {
        let mut counts = [0usize; 4];
        let words = text
            .into_iter()
            .flat_map(|t| t.split(|c: char| !c.is_alphabetic()))
            .filter(|w| !w.is_empty())
            .take(2000);
        for w in words {
            let w = w.to_lowercase();
            for (i, lang) in Self::ALL.iter().enumerate() {
                if lang.stopwords().contains(&w.as_str()) {
                    counts[i] += 1;
                }
            }
        }
        let (best, &n) = counts
            .iter()
            .enumerate()
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
            .unwrap_or((0, &0));
        if n < 3 {
            Self::English
        } else {
            Self::ALL[best]
        }
    }
}

/// Whether a stop after `before` (the text so far, ending just before the stop's whitespace)
/// is no sentence end: an abbreviation, an initial or, in German, an ordinal number. Looks at
/// the last word only (at most 16 bytes back), so the splitter stays linear.
fn continues(before: &str, lang: Language) -> bool {
    let Some(stem) = before.strip_suffix('.') else {
        return false;
    };
    let mut from = stem.len().saturating_sub(16);
    while !stem.is_char_boundary(from) {
        from += 1;
    }
    let tail = &stem[from..];
    let word = tail.rsplit(char::is_whitespace).next().unwrap_or("");
    if word.len() == tail.len() && from > 0 {
        return false; // a word longer than any abbreviation
    }
    let word = word.trim_start_matches(['(', '[', '"', '\'', '“', '„', '‚', '‘', '«']);
    if word.is_empty() {
        return false;
    }
    let mut chars = word.chars();
    let first = chars.next().unwrap_or(' ');
    if first.is_alphabetic() && chars.next().is_none() {
        return true; // an initial, "J. S. Bach", "z. B."
    }
    if lang == Language::German && word.len() <= 3 && word.bytes().all(|c| c.is_ascii_digit()) {
        return true; // "am 3. Mai", "das 19. Jahrhundert"
    }
    lang.abbreviations().contains(&word.to_lowercase().as_str())
}

/// Sentences: Unicode sentence boundaries (UAX #29), except where no whitespace follows the
/// stop, a lower-case letter follows it, or [`continues`] says the stop does not end a sentence.
fn sentences(para: &str, lang: Language) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for seg in para.split_sentence_bounds() {
        end += seg.len();
        if !seg.ends_with(char::is_whitespace) || end == para.len() {
            continue;
        }
        let so_far = para[start..end].trim_end();
        // UAX #29 ends a sentence at `?` or `!` before a lower-case word ("What? tell me"); in
        // running text that word goes on the sentence.
        let next_lower = para[end..].chars().next().is_some_and(char::is_lowercase);
        if next_lower || continues(so_far, lang) {
            continue;
        }
        out.push(so_far.trim_start().to_string());
        start = end;
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

    fn opts(kind: UnitKind) -> SplitOptions {
        SplitOptions {
            kind,
            ..SplitOptions::default()
        }
    }

    #[test]
    fn markdown_prose_only() {
        let md = "---\ntitle: x\n---\n# Heading here now\n\nFirst line of a\nparagraph here. Dr. Smith said so! Then \"Quoted start\" ends.\n\n```\ncode is not prose at all\n```\n\n- a list item with words\n- another list item here\n\n| a | table | row |\n|---|---|---|\n| b | c | d |\n";
        let p = split(md, "md", &opts(UnitKind::Paragraph));
        assert_eq!(
            p,
            vec![
                "First line of a paragraph here. Dr. Smith said so! Then \"Quoted start\" ends.",
                "a list item with words",
                "another list item here",
            ]
        );
        let s = split(md, "md", &opts(UnitKind::Sentence));
        assert_eq!(
            s[..3],
            [
                "First line of a paragraph here.",
                "Dr. Smith said so!",
                "Then \"Quoted start\" ends."
            ]
        );
        let with_headings = SplitOptions {
            headings: true,
            ..opts(UnitKind::Paragraph)
        };
        assert_eq!(split(md, "md", &with_headings)[0], "Heading here now");
    }

    /// A README as found in the wild: badges, an HTML logo block, links of every kind, images,
    /// code spans and blocks, a table, a nested list, a quote, a footnote, inline HTML.
    const README: &str = r#"<p align="center">
  <img src="docs/logo.png" alt="The project logo in blue" width="200">
</p>

# fancytool [![Build](https://ci.example.org/badge.svg)](https://ci.example.org) ![License](https://img.shields.io/badge/license-MIT-green)

**fancytool** turns your *messy* notes into a tidy [static site](https://example.org/sites "Sites") in seconds.
It reads `notes/*.md`, follows links like <https://example.org/help>, and never
uploads anything.[^1]

## Install

```sh
cargo install fancytool --locked
```

Then run `fancytool init` in the folder you want to publish. See the [user guide][guide] for
every option, or read <abbr title="Frequently asked questions">the FAQ</abbr> first.

![Screenshot of the generated site](docs/screenshot.png)

| Feature | What it does for you |
|---------|----------------------|
| `watch` | Rebuilds the site whenever a note changes. |
| Themes  | Pick one of the bundled themes or write your own. |

- Fast builds with an incremental cache
  - Nested items are kept as their own units
- ~~Plugins~~ Extensions written in plain Lua

> Writing should feel like talking to a friend, said one of our early users.

Visit https://example.org/blog for news, or mail <team@example.org> with questions.

<!-- A comment nobody should learn from -->
<details><summary>Old changelog</summary>

Version one had no themes at all.

</details>

[guide]: https://example.org/guide
[^1]: Unless you ask it to deploy the site for you.
"#;

    #[test]
    fn real_world_readme_keeps_all_prose_and_no_markup() {
        let units = split(README, "md", &opts(UnitKind::Paragraph));
        let expected = [
            "fancytool turns your messy notes into a tidy static site in seconds. It reads, follows links like, and never uploads anything.",
            "Then run in the folder you want to publish. See the user guide for every option, or read the FAQ first.",
            "Rebuilds the site whenever a note changes.",
            "Pick one of the bundled themes or write your own.",
            "Fast builds with an incremental cache",
            "Nested items are kept as their own units",
            "Plugins Extensions written in plain Lua",
            "Writing should feel like talking to a friend, said one of our early users.",
            "Visit for news, or mail with questions.",
            "Version one had no themes at all.",
            "Unless you ask it to deploy the site for you.",
        ];
        assert_eq!(units, expected);
        for u in &units {
            for markup in [
                "http",
                "](",
                "[",
                "]",
                "`",
                "<",
                ">",
                "**",
                "*",
                "~~",
                "|",
                "![",
                "example.org",
                "cargo install",
                "logo",
                "Screenshot",
                "badge",
                "comment",
            ] {
                assert!(!u.contains(markup), "{markup:?} in {u:?}");
            }
        }
        // The old line cutter kept markup in a third of these units.
        let sentences = split(README, "md", &opts(UnitKind::Sentence));
        assert!(
            sentences.contains(&"It reads, follows links like, and never uploads anything.".into())
        );
    }

    #[test]
    fn restructuredtext_and_asciidoc_by_the_line_rule() {
        let rst = "=================\nThe Project Title\n=================\n\nIntro with ``code`` and a `link text <https://x.org>`_ here.\nSee :ref:`the setup guide <setup>` and *really* **do** it [#]_.\n\n.. note::\n\n   A directive body is left out.\n\nSection\n-------\n\nAn example follows::\n\n    literal block is not prose\n\n* a bullet item with words\n";
        assert_eq!(
            split(rst, "rst", &opts(UnitKind::Paragraph)),
            [
                "Intro with and a link text here. See the setup guide and really do it.",
                "An example follows:",
                "a bullet item with words",
            ]
        );
        let with_headings = SplitOptions {
            headings: true,
            ..opts(UnitKind::Paragraph)
        };
        let h = split(rst, "rst", &with_headings);
        assert_eq!(h[0], "The Project Title");
        assert_eq!(h.len(), 4, "{h:?}");
        let adoc = "= Document Title Here\n:toc: left\n\n== A Section Title\n\nUse `pema lsp` with https://example.org[the website] and <<install,the install part>> for *bold* and _italic_ words.{nbsp}See footnote:[not this] too.\n\n.A block title\n[source,rust]\n----\nfn main() {}\n----\n\nimage::shot.png[A screenshot here]\n\n* an item of a list\n";
        assert_eq!(
            split(adoc, "adoc", &opts(UnitKind::Paragraph)),
            [
                "Use with the website and the install part for bold and italic words. See too.",
                "an item of a list",
            ]
        );
        assert_eq!(
            split(adoc, "adoc", &with_headings)[..2],
            ["Document Title Here", "A Section Title"]
        );
    }

    #[test]
    fn plain_text_keeps_everything_but_short_units() {
        let s = split(
            "Ok.\n\n# not a heading in txt files\nA b c d.",
            "txt",
            &opts(UnitKind::Sentence),
        );
        assert_eq!(s, vec!["# not a heading in txt files A b c d."]);
    }

    #[test]
    fn english_abbreviations() {
        assert_eq!(
            sentences(
                "He met Dr. Smith. Then mr. Jones came. e.g. Three words here.",
                Language::English
            ),
            vec![
                "He met Dr. Smith.",
                "Then mr. Jones came. e.g. Three words here."
            ]
        );
        assert_eq!(
            sentences("What shall I do? tell me. Now! Go.", Language::English),
            ["What shall I do? tell me.", "Now!", "Go."]
        );
        assert_eq!(
            sentences(
                "J. R. R. Tolkien wrote it. We bought apples, pears, etc. The shop closed. Version 2.5 is out.",
                Language::English
            ),
            [
                "J. R. R. Tolkien wrote it.",
                "We bought apples, pears, etc.",
                "The shop closed.",
                "Version 2.5 is out."
            ]
        );
    }

    /// German splits where a person would: abbreviations with and without spaces, titles,
    /// ordinals and dates; "usw." before a capital ends the sentence.
    #[test]
    fn german_sentences() {
        let text = "Am 3. Mai kam Dr. Müller zu uns, z. B. mit dem Zug. Er brachte Äpfel, Birnen usw. Danach gingen wir ins Museum. Das 19. Jahrhundert war lang, vgl. Kap. 4 im Buch. Wir lasen u.a. Goethe, Schiller bzw. Heine! Wann kommt Prof. Dr. Weber? Im Jahr 1990. Dann war alles anders.";
        let opts = SplitOptions {
            kind: UnitKind::Sentence,
            headings: false,
            language: None,
        };
        assert_eq!(Language::detect([text]), Language::German);
        assert_eq!(
            split(text, "txt", &opts),
            [
                "Am 3. Mai kam Dr. Müller zu uns, z. B. mit dem Zug.",
                "Er brachte Äpfel, Birnen usw.",
                "Danach gingen wir ins Museum.",
                "Das 19. Jahrhundert war lang, vgl. Kap. 4 im Buch.",
                "Wir lasen u.a. Goethe, Schiller bzw. Heine!",
                "Wann kommt Prof. Dr. Weber?",
                "Im Jahr 1990.",
                "Dann war alles anders.",
            ]
        );
        // The English rules would cut after the ordinal.
        assert_eq!(
            sentences("Am 3. Mai kam er.", Language::English),
            ["Am 3.", "Mai kam er."]
        );
    }

    #[test]
    fn language_detection() {
        assert_eq!(
            Language::detect(["The cat is on the mat and it is happy with that."]),
            Language::English
        );
        assert_eq!(
            Language::detect(["Le chat est sur le tapis et il est content avec les enfants."]),
            Language::French
        );
        assert_eq!(
            Language::detect(["El gato está en la alfombra y es feliz con los niños, pero no."]),
            Language::Spanish
        );
        assert_eq!(Language::detect(["Hallo."]), Language::English);
        assert_eq!(Language::from_code("DE"), Some(Language::German));
        assert_eq!(Language::from_code("xx"), None);
    }

    /// A 1 MiB line of `a.a.a.…` (no space, so no cut), one of `A. A. …` (a possible cut at
    /// every stop, each an initial), one of `Ab. ` (a cut at every stop) and Markdown and
    /// AsciiDoc of many nested or unclosed marks take linear time.
    #[test]
    fn long_inputs_split_in_linear_time() {
        for (text, ext) in [
            ("a.".repeat(1 << 19), "txt"),
            ("A. ".repeat(1 << 18), "txt"),
            ("Ab. ".repeat(1 << 18), "txt"),
            ("1. ".repeat(1 << 18), "txt"),
            ("Ab. ".repeat(1 << 18), "md"),
            ("[a](".repeat(1 << 17), "md"),
            ("> - *a ".repeat(1 << 16), "md"),
            ("`a ``b *c _d ".repeat(1 << 16), "rst"),
            ("`a +b *c _d <<e [f ".repeat(1 << 15), "adoc"),
        ] {
            let t = std::time::Instant::now();
            let s = split(&text, ext, &opts(UnitKind::Sentence));
            let took = t.elapsed();
            assert!(
                took.as_millis() < 1500,
                "{ext}: {took:?} for {} units",
                s.len()
            );
        }
    }
}

//! The running text of a file, block by block: Markdown through pulldown-cmark, reStructuredText
//! and AsciiDoc by a line rule, plain text cut at blank lines (see the parent module).

use std::sync::LazyLock;

use regex::Regex;

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
pub(super) fn markdown_blocks(text: &str, headings: bool) -> Vec<String> {
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
pub(super) enum Markup {
    Plain,
    Rst,
    AsciiDoc,
}

/// Blocks of reStructuredText, AsciiDoc or plain text by the line rule (module docs).
pub(super) fn line_blocks(text: &str, markup: Markup, headings: bool) -> Vec<String> {
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

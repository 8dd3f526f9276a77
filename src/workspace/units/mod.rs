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

mod markup;
mod sentences;

use super::config::UnitKind;
use markup::{line_blocks, markdown_blocks, Markup};
use sentences::sentences;
pub use sentences::Language;

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

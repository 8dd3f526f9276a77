//! Sentences: Unicode's sentence boundaries (UAX #29) joined again after the abbreviations,
//! initials and (in German) ordinal numbers of the text's language.

use unicode_segmentation::UnicodeSegmentation as _;

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
pub(super) fn sentences(para: &str, lang: Language) -> Vec<String> {
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

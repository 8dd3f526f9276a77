//! The documents a connection keeps and the positions in them: the client's copy of each open
//! document (kept in step by incremental `didChange`s), LSP positions in the negotiated encoding
//! turned into byte offsets by rust-analyzer's `line-index`, files read for a rewrite only inside
//! the connection's workspaces, and a rewrite fitted to the line endings of the range it replaces.

use std::path::PathBuf;

use line_index::{LineIndex, WideEncoding, WideLineCol};
use tower_lsp_server::lsp_types::*;

/// Largest file a rewrite of `uri` + `range` reads from disk.
pub const MAX_DOCUMENT_BYTES: u64 = 4 << 20;
/// Documents one connection may keep open (their text is held in memory).
pub(super) const MAX_DOCUMENTS: usize = 256;

/// Reads the document at `path` if it is a regular file (a link at its name is not followed)
/// inside one of `roots` and at most [`MAX_DOCUMENT_BYTES`] long; None otherwise, whatever the
/// reason, so that the answer says nothing about files outside the workspaces.
pub(super) fn read_document(path: &std::path::Path, roots: &[PathBuf]) -> Option<String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    // The folders on the way are resolved (links included); the file itself must not be a link.
    let dir = path.parent()?.canonicalize().ok()?;
    let path = dir.join(path.file_name()?);
    if !roots.iter().any(|r| path.starts_with(r)) {
        return None;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_DOCUMENT_BYTES {
        return None;
    }
    let mut bytes = Vec::new();
    f.take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// What a position's `character` counts (LSP 3.17 `positionEncoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Encoding {
    Utf8,
    Utf16,
    Utf32,
}

impl Encoding {
    /// The client's most preferred encoding that pema speaks; UTF-16 when it names none.
    pub(super) fn negotiate(params: &InitializeParams) -> Self {
        params
            .capabilities
            .general
            .as_ref()
            .and_then(|g| g.position_encodings.as_ref())
            .and_then(|kinds| {
                kinds.iter().find_map(|k| match k.as_str() {
                    "utf-8" => Some(Self::Utf8),
                    "utf-16" => Some(Self::Utf16),
                    "utf-32" => Some(Self::Utf32),
                    _ => None,
                })
            })
            .unwrap_or(Self::Utf16)
    }

    pub(super) fn kind(self) -> PositionEncodingKind {
        match self {
            Self::Utf8 => PositionEncodingKind::UTF8,
            Self::Utf16 => PositionEncodingKind::UTF16,
            Self::Utf32 => PositionEncodingKind::UTF32,
        }
    }
}

/// The text of a document's range, and whether the document's lines end in CRLF.
pub(super) struct Selection {
    pub(super) text: String,
    pub(super) crlf: bool,
}

/// Byte offset in `text` of an LSP position counted in `encoding`, by rust-analyzer's
/// `line-index`. A line ends before its `\n` or `\r\n`: a `character` past the end (or inside
/// the line break) is the line's end, as LSP asks; one inside a character is its start. None for
/// a line past the last.
pub(super) fn offset(
    text: &str,
    index: &LineIndex,
    encoding: Encoding,
    pos: Position,
) -> Option<usize> {
    let line = index.line(pos.line)?;
    let (start, end) = (usize::from(line.start()), usize::from(line.end()));
    let content = text[start..end]
        .strip_suffix('\n')
        .map_or(&text[start..end], |l| l.strip_suffix('\r').unwrap_or(l));
    let col = match encoding {
        Encoding::Utf8 => pos.character,
        Encoding::Utf16 | Encoding::Utf32 => {
            let wide = if encoding == Encoding::Utf16 {
                WideEncoding::Utf16
            } else {
                WideEncoding::Utf32
            };
            index
                .to_utf8(
                    wide,
                    WideLineCol {
                        line: pos.line,
                        col: pos.character,
                    },
                )
                // Overflow: past any line's end.
                .map_or(u32::MAX, |c| c.col)
        }
    };
    let mut col = (col as usize).min(content.len());
    while !content.is_char_boundary(col) {
        col -= 1;
    }
    Some(start + col)
}

/// The largest client copy of a document kept (the largest frame over stdio).
pub(super) const MAX_OPEN_DOCUMENT_BYTES: usize = 64 << 20;

/// A document after a `didChange`'s changes, applied in order (a change without a range
/// replaces the whole text); None when a change's range does not fit the text it applies to.
pub(super) fn apply_changes(
    mut text: Option<String>,
    changes: Vec<TextDocumentContentChangeEvent>,
    encoding: Encoding,
) -> Option<String> {
    for c in changes {
        match c.range {
            None => text = Some(c.text),
            Some(r) => {
                let t = text.as_mut()?;
                let index = LineIndex::new(t);
                let a = offset(t, &index, encoding, r.start)?;
                let b = offset(t, &index, encoding, r.end)?;
                if a > b {
                    return None;
                }
                t.replace_range(a..b, &c.text);
            }
        }
    }
    text
}

/// Whether a document's lines end in CRLF (judged by its first line break).
pub(super) fn uses_crlf(text: &str) -> bool {
    text.find('\n').is_some_and(|i| text[..i].ends_with('\r'))
}

/// A rewrite fitted to the range it replaces: its line breaks are the document's (`\r\n` in a
/// CRLF document), and it ends with a line break exactly when the replaced text did, so a
/// document without a final newline stays so and the next line is not joined.
pub(super) fn fit_line_endings(replaced: &str, crlf: bool, rewrite: &str) -> String {
    let body = rewrite.trim_end_matches(['\r', '\n']);
    let mut out = String::with_capacity(body.len() + 2);
    for (i, line) in body.split('\n').enumerate() {
        if i > 0 {
            out.push_str(if crlf { "\r\n" } else { "\n" });
        }
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
    }
    if replaced.ends_with('\n') {
        out.push_str(if crlf { "\r\n" } else { "\n" });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_in_every_encoding() {
        let t = "héllo 😀 x\nsecond";
        let at = |enc, line, ch| offset(t, &LineIndex::new(t), enc, Position::new(line, ch));
        let u16 = Encoding::Utf16;
        assert_eq!(at(u16, 0, 0), Some(0));
        assert_eq!(&t[at(u16, 0, 6).unwrap()..][..4], "😀");
        assert_eq!(&t[at(u16, 0, 9).unwrap()..], "x\nsecond");
        assert_eq!(&t[at(u16, 1, 3).unwrap()..], "ond");
        assert_eq!(at(u16, 1, 99), Some(t.len()));
        assert_eq!(at(u16, 5, 0), None);
        // Inside the emoji's surrogate pair: its start.
        assert_eq!(at(u16, 0, 7), at(u16, 0, 6));
        // The same character ("x") in UTF-32 and UTF-8.
        assert_eq!(at(Encoding::Utf32, 0, 8), at(u16, 0, 9));
        assert_eq!(at(Encoding::Utf8, 0, 12), at(u16, 0, 9));
        assert_eq!(&t[at(Encoding::Utf8, 0, 2).unwrap()..][..2], "é");
        // CRLF: the line ends before "\r\n", CJK counts one unit per character in UTF-16.
        let t = "一二三\r\nabc\r\n";
        let i = LineIndex::new(t);
        assert_eq!(offset(t, &i, u16, Position::new(0, 99)), Some(9));
        assert_eq!(offset(t, &i, u16, Position::new(0, 2)), Some(6));
        assert_eq!(
            offset(t, &i, Encoding::Utf8, Position::new(1, 99)),
            Some(14)
        );
        assert_eq!(offset(t, &i, u16, Position::new(2, 0)), Some(t.len()));
    }

    #[test]
    fn incremental_changes() {
        let change = |r: Option<(u32, u32, u32, u32)>, t: &str| TextDocumentContentChangeEvent {
            range: r.map(|(a, b, c, d)| Range::new(Position::new(a, b), Position::new(c, d))),
            range_length: None,
            text: t.into(),
        };
        let doc = Some("a😀b\r\nsecond\r\n".to_string());
        // UTF-16: the emoji is two units; a change past a line's end stops before "\r\n".
        let t = apply_changes(
            doc.clone(),
            vec![
                change(Some((0, 3, 0, 4)), "B"),
                change(Some((1, 0, 1, 99)), "2nd"),
                change(Some((2, 0, 2, 0)), "third"),
            ],
            Encoding::Utf16,
        );
        assert_eq!(t.as_deref(), Some("a😀B\r\n2nd\r\nthird"));
        let t = apply_changes(
            doc.clone(),
            vec![change(Some((0, 6, 1, 0)), "")],
            Encoding::Utf8,
        );
        assert_eq!(t.as_deref(), Some("a😀bsecond\r\n"));
        // A full text resets; a range before any text, a line past the end or a reversed
        // range is out of step.
        assert_eq!(
            apply_changes(
                None,
                vec![change(None, "x"), change(Some((0, 1, 0, 1)), "y")],
                Encoding::Utf16
            )
            .as_deref(),
            Some("xy")
        );
        assert_eq!(
            apply_changes(None, vec![change(Some((0, 0, 0, 0)), "y")], Encoding::Utf16),
            None
        );
        assert_eq!(
            apply_changes(
                doc.clone(),
                vec![change(Some((9, 0, 9, 0)), "y")],
                Encoding::Utf16
            ),
            None
        );
        assert_eq!(
            apply_changes(doc, vec![change(Some((1, 2, 0, 0)), "y")], Encoding::Utf16),
            None
        );
    }

    #[test]
    fn rewrites_keep_line_endings() {
        assert!(uses_crlf("a\r\nb") && !uses_crlf("a\nb\r\n") && !uses_crlf("ab"));
        assert_eq!(fit_line_endings("a\r\nb\r\n", true, "x\ny\n"), "x\r\ny\r\n");
        assert_eq!(fit_line_endings("a\r\nb", true, "x\ny\n"), "x\r\ny");
        assert_eq!(fit_line_endings("a b", false, "x y"), "x y");
        assert_eq!(fit_line_endings("a\n", false, "x\r\ny"), "x\ny\n");
    }
}

//! A pre-parse guard on the raw text of a GraphQL document.
//!
//! async-graphql's parser puts no depth limit on nested argument values: a few KB such as
//! `{ f(a: [[[[ …2000 levels… ]]]]) }` (or `{a: {a: {a: …}}}`) overflows the stack and aborts
//! the whole process, before validation ever runs. Selection sets are capped by the parser at
//! 64 levels, but a clear early error is better there too.
//!
//! So the HTTP layer runs [`scan`] over a document before handing it to the parser. The scan
//! owns three limits ([`ScanLimits`]): byte length, bracket nesting depth and an approximate
//! token count. It makes one pass over the bytes, allocates nothing and never recurses, so no
//! input can make it the thing that overflows.
//!
//! It is not a parser: it understands just enough of the lexical grammar (strings, block
//! strings, comments) to not count brackets that are content. Anything it cannot make sense
//! of is left for the parser to report.

/// Why a document was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Brackets (`{`, `[`, `(` together) nest deeper than `limit`.
    #[error("the document nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    /// The document is longer than `limit` bytes.
    #[error("the document is longer than {limit} bytes")]
    TooLong { limit: usize },
    /// The document has more than `limit` tokens.
    #[error("the document has more than {limit} tokens")]
    TooManyTokens { limit: usize },
}

/// The limits [`scan`] checks a document against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Deepest accepted nesting of `{`, `[` and `(`, counted together.
    pub max_depth: usize,
    /// Longest accepted document, in bytes.
    pub max_bytes: usize,
    /// Most tokens accepted (punctuators, names, numbers and strings; commas don't count).
    pub max_tokens: usize,
}

impl Default for ScanLimits {
    /// Depth 64, 64 KiB, 10,000 tokens.
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_bytes: 65_536,
            max_tokens: 10_000,
        }
    }
}

/// Checks a GraphQL document's raw text against `limits` without parsing it.
///
/// The length is checked first; then a single pass fails as soon as the bracket depth or the
/// token count goes over its limit. Brackets inside strings, block strings and comments don't
/// count. A closing bracket without an opener leaves the depth at zero, and an unterminated
/// string ends the scan: both are the parser's to report, not this function's.
pub fn scan(document: &str, limits: &ScanLimits) -> Result<(), ScanError> {
    if document.len() > limits.max_bytes {
        return Err(ScanError::TooLong {
            limit: limits.max_bytes,
        });
    }
    let mut cursor = Cursor::new(document.as_bytes());
    let mut depth = Depth::new(limits.max_depth);
    let mut tokens = Tokens::new(limits.max_tokens);
    while let Some(token) = cursor.next_token() {
        match token {
            Token::Open => depth.open()?,
            Token::Close => depth.close(),
            Token::Other => {}
        }
        tokens.count()?;
    }
    Ok(())
}

/// What the scan needs to know about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `{`, `[` or `(`.
    Open,
    /// `}`, `]` or `)`.
    Close,
    /// Any other punctuator, a name, a number or a string.
    Other,
}

/// The current bracket depth, failing once it exceeds its limit.
struct Depth {
    current: usize,
    limit: usize,
}

impl Depth {
    fn new(limit: usize) -> Self {
        Self { current: 0, limit }
    }

    fn open(&mut self) -> Result<(), ScanError> {
        self.current = self.current.saturating_add(1);
        if self.current > self.limit {
            return Err(ScanError::TooDeep { limit: self.limit });
        }
        Ok(())
    }

    /// Unbalanced closers are the parser's business: the depth just stays at zero.
    fn close(&mut self) {
        self.current = self.current.saturating_sub(1);
    }
}

/// The number of tokens seen, failing once it exceeds its limit.
struct Tokens {
    seen: usize,
    limit: usize,
}

impl Tokens {
    fn new(limit: usize) -> Self {
        Self { seen: 0, limit }
    }

    fn count(&mut self) -> Result<(), ScanError> {
        self.seen = self.seen.saturating_add(1);
        if self.seen > self.limit {
            return Err(ScanError::TooManyTokens { limit: self.limit });
        }
        Ok(())
    }
}

/// A position in the document's bytes. All GraphQL syntax is ASCII, so UTF-8 only ever shows
/// up as content (of strings and comments) or as bytes the parser will reject anyway.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn starts_with(&self, prefix: &[u8]) -> bool {
        self.bytes
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(prefix))
    }

    fn advance(&mut self, by: usize) {
        self.pos = self.pos.saturating_add(by).min(self.bytes.len());
    }

    fn skip_while(&mut self, mut keep: impl FnMut(u8) -> bool) {
        while let Some(byte) = self.peek() {
            if !keep(byte) {
                break;
            }
            self.pos += 1;
        }
    }

    /// The next token, skipping whitespace, commas, comments and bytes that start no token;
    /// `None` at the end of the document.
    fn next_token(&mut self) -> Option<Token> {
        loop {
            let byte = self.peek()?;
            match byte {
                b'{' | b'[' | b'(' => {
                    self.advance(1);
                    return Some(Token::Open);
                }
                b'}' | b']' | b')' => {
                    self.advance(1);
                    return Some(Token::Close);
                }
                b'!' | b'$' | b'&' | b':' | b'=' | b'@' | b'|' => {
                    self.advance(1);
                    return Some(Token::Other);
                }
                b'.' if self.starts_with(b"...") => {
                    self.advance(3);
                    return Some(Token::Other);
                }
                b'"' if self.starts_with(b"\"\"\"") => {
                    self.advance(3);
                    self.skip_block_string();
                    return Some(Token::Other);
                }
                b'"' => {
                    self.advance(1);
                    self.skip_string();
                    return Some(Token::Other);
                }
                b'#' => self.skip_comment(),
                b'_' | b'A'..=b'Z' | b'a'..=b'z' => {
                    self.skip_while(is_name_byte);
                    return Some(Token::Other);
                }
                b'-' | b'0'..=b'9' => {
                    self.skip_number();
                    return Some(Token::Other);
                }
                // Whitespace, commas (insignificant in GraphQL), a byte order mark, and
                // anything else the parser will reject.
                _ => self.advance(1),
            }
        }
    }

    /// Skips the rest of a regular string, just after its opening `"`: up to and including
    /// the closing `"`, where `\` escapes the next byte.
    ///
    /// As in the parser's grammar, a regular string cannot hold a line terminator: the string
    /// stops before one (the parser will reject it) and the scan goes on, so brackets after it
    /// count. That keeps the scan in step with what the parser reads as code, and errs on the
    /// side of counting.
    fn skip_string(&mut self) {
        while let Some(byte) = self.peek() {
            match byte {
                b'"' => {
                    self.advance(1);
                    return;
                }
                b'\n' | b'\r' => return,
                b'\\' => {
                    self.advance(1);
                    if !matches!(self.peek(), Some(b'\n' | b'\r')) {
                        self.advance(1);
                    }
                }
                _ => self.advance(1),
            }
        }
    }

    /// Skips the rest of a block string, just after its opening `"""`: up to and including the
    /// closing `"""`. Only `\"""` is an escape; everything else, single quotes and line
    /// terminators included, is content.
    fn skip_block_string(&mut self) {
        while self.peek().is_some() {
            if self.starts_with(b"\\\"\"\"") {
                self.advance(4);
            } else if self.starts_with(b"\"\"\"") {
                self.advance(3);
                return;
            } else {
                self.advance(1);
            }
        }
    }

    /// Skips a comment: from `#` up to (not including) the next `\n` or `\r`.
    fn skip_comment(&mut self) {
        self.skip_while(|byte| byte != b'\n' && byte != b'\r');
    }

    /// Skips a number, loosely: a leading `-` or digit, then digits, letters, `_` and `.`, and a
    /// sign right after an exponent's `e`/`E`. Only the token count depends on it.
    fn skip_number(&mut self) {
        let mut previous = self.peek();
        self.advance(1);
        self.skip_while(|byte| {
            let keep = is_name_byte(byte)
                || byte == b'.'
                || (matches!(byte, b'+' | b'-') && matches!(previous, Some(b'e' | b'E')));
            previous = Some(byte);
            keep
        });
    }
}

fn is_name_byte(byte: u8) -> bool {
    byte == b'_' || byte.is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn depth(max_depth: usize) -> ScanLimits {
        ScanLimits {
            max_depth,
            ..ScanLimits::default()
        }
    }

    fn too_deep(limit: usize) -> Result<(), ScanError> {
        Err(ScanError::TooDeep { limit })
    }

    #[test]
    fn depth_cases() {
        let cases: &[(&str, &str, usize, Result<(), ScanError>)] = &[
            ("empty document", "", 0, Ok(())),
            ("no brackets at limit zero", "query", 0, Ok(())),
            ("one bracket at limit zero", "{", 0, too_deep(0)),
            ("braces at the limit", "{{{}}}", 3, Ok(())),
            ("braces one over", "{{{{}}}}", 3, too_deep(3)),
            ("lists at the limit", "[[[]]]", 3, Ok(())),
            ("lists one over", "[[[[]]]]", 3, too_deep(3)),
            ("parens at the limit", "((()))", 3, Ok(())),
            ("parens one over", "(((())))", 3, too_deep(3)),
            ("mixed at the limit", "{ f(a: [1]) }", 3, Ok(())),
            ("mixed one over", "{ f(a: [[1]]) }", 3, too_deep(3)),
            ("objects at the limit", "{ f(a: {b: {c: 1}}) }", 4, Ok(())),
            (
                "objects one over",
                "{ f(a: {b: {c: {d: 1}}}) }",
                4,
                too_deep(4),
            ),
            (
                "siblings don't add up",
                "{ a { b } c { d } e { f } }",
                2,
                Ok(()),
            ),
            ("fails even if unclosed", "{ a { b { c", 2, too_deep(2)),
            (
                "brackets in a string",
                r#"{ f(a: "[[[[{{{((") }"#,
                2,
                Ok(()),
            ),
            (
                "brackets in a block string",
                "{ f(a: \"\"\"\n[[[[\n{{{{\n\"\"\") }",
                2,
                Ok(()),
            ),
            (
                "lone quote in a block string",
                r#"{ f(a: """ " [[[[ "" {{{{ """) }"#,
                2,
                Ok(()),
            ),
            (
                "escaped triple quote in a block string",
                r#"{ f(a: """ \""" [[[[ """) }"#,
                2,
                Ok(()),
            ),
            (
                "backslash before an escaped triple quote",
                r#"{ f(a: """ \\""" [[[[ """) }"#,
                2,
                Ok(()),
            ),
            (
                "brackets after a block string count",
                r#"{ f(a: """ [[[[ """, b: [[1]]) }"#,
                3,
                too_deep(3),
            ),
            ("brackets in a comment", "{ a # [[[[{{{{((((\n }", 1, Ok(())),
            ("comment ends at \\n", "# (((\n{{ a }}", 1, too_deep(1)),
            ("comment ends at \\r", "# (((\r{{ a }}", 1, too_deep(1)),
            (
                "hash in a string is no comment",
                "{ f(a: \"#\", b: [[1]]) }",
                3,
                too_deep(3),
            ),
            ("escaped quote", r#"{ f(a: "\" [[[[") }"#, 2, Ok(())),
            (
                "escaped backslash ends the string",
                r#"{ f(a: "a\\" [[[[ "") }"#,
                2,
                too_deep(2),
            ),
            (
                "escaped backslash then quote",
                r#"{ f(a: "\\\" [[[[") }"#,
                2,
                Ok(()),
            ),
            ("empty string", r#"{ f(a: "", b: [[1]]) }"#, 3, too_deep(3)),
            ("unterminated string", r#"{ f(a: "[[[[[["#, 2, Ok(())),
            (
                "unterminated block string",
                r#"{ f(a: """[[[[[[ " ""#,
                2,
                Ok(()),
            ),
            ("unterminated comment", "{ a } # [[[[", 1, Ok(())),
            (
                "regular string stops at a line end",
                "{ f(a: \"abc\n[[[[ \") }",
                2,
                too_deep(2),
            ),
            (
                "escaped line end still ends it",
                "{ f(a: \"abc\\\n[[[[ \") }",
                2,
                too_deep(2),
            ),
            (
                "UTF-8 in strings and comments",
                "{ f(a: \"é[[[\") } # ü{{{",
                2,
                Ok(()),
            ),
            ("closers without openers", "}}}]]))) {{ a }}", 2, Ok(())),
            ("closers don't underflow", "))) {{{ a }}}", 2, too_deep(2)),
        ];
        for (name, document, max_depth, expected) in cases {
            assert_eq!(
                scan(document, &depth(*max_depth)),
                *expected,
                "{name}: {document:?}"
            );
        }
    }

    #[test]
    fn token_counts() {
        let cases: &[(&str, usize)] = &[
            ("", 0),
            ("{ a b c }", 5),
            ("...F", 2),
            (r#""x,y" ,, ,"#, 1),
            (r#""""a " b, c""""#, 1),
            ("# a comment\n a", 1),
            ("-1.5e+3 10 0.5E-2", 3),
            ("@include(if: true)", 7),
            ("query Q($id: ID!) { node(id: $id) { ...F } }", 22),
            ("fragment F on Image { ... on Image { url } }", 12),
            ("union U = | A | B", 7),
            ("type T implements A & B", 6),
        ];
        for (document, tokens) in cases {
            let limits = |max_tokens| ScanLimits {
                max_tokens,
                ..ScanLimits::default()
            };
            assert_eq!(scan(document, &limits(*tokens)), Ok(()), "{document:?}");
            if let Some(fewer) = tokens.checked_sub(1) {
                assert_eq!(
                    scan(document, &limits(fewer)),
                    Err(ScanError::TooManyTokens { limit: fewer }),
                    "{document:?}"
                );
            }
        }
    }

    #[test]
    fn nested_list_attack_fails_early() {
        let attack = format!("{{ f(a: {}{}) }}", "[".repeat(2000), "]".repeat(2000));
        let started = Instant::now();
        assert_eq!(
            scan(&attack, &ScanLimits::default()),
            Err(ScanError::TooDeep { limit: 64 })
        );
        assert!(started.elapsed() < Duration::from_secs(1));

        // With 20,000 names after it, a scan that went on to the end would hit the token limit.
        let with_tail = format!("{attack}{}", " a".repeat(20_000));
        assert_eq!(
            scan(&with_tail, &ScanLimits::default()),
            Err(ScanError::TooDeep { limit: 64 })
        );
    }

    #[test]
    fn nested_object_attack_fails() {
        let attack = format!("{{ f(a: {}1{}) }}", "{a: ".repeat(2000), "}".repeat(2000));
        assert_eq!(
            scan(&attack, &ScanLimits::default()),
            Err(ScanError::TooDeep { limit: 64 })
        );
    }

    #[test]
    fn size_limits() {
        let small = ScanLimits {
            max_bytes: 5,
            ..ScanLimits::default()
        };
        let cases: &[(&str, String, ScanLimits, Result<(), ScanError>)] = &[
            ("length at the limit", "{ a }".to_owned(), small, Ok(())),
            (
                "length one over",
                "{ ab }".to_owned(),
                small,
                Err(ScanError::TooLong { limit: 5 }),
            ),
            (
                "100 KB document",
                "{ a }\n".repeat(20_000),
                ScanLimits::default(),
                Err(ScanError::TooLong { limit: 65_536 }),
            ),
            (
                "length is checked before depth",
                "[".repeat(70_000),
                ScanLimits::default(),
                Err(ScanError::TooLong { limit: 65_536 }),
            ),
            (
                "20,000 names",
                "a ".repeat(20_000),
                ScanLimits::default(),
                Err(ScanError::TooManyTokens { limit: 10_000 }),
            ),
            (
                "10,000 names",
                "a ".repeat(10_000),
                ScanLimits::default(),
                Ok(()),
            ),
            (
                "commas are no tokens",
                ",".repeat(60_000),
                ScanLimits::default(),
                Ok(()),
            ),
        ];
        for (name, document, limits, expected) in cases {
            assert_eq!(scan(document, limits), *expected, "{name}");
        }
    }

    #[test]
    fn deep_input_does_not_overflow_the_stack() {
        let document = "[".repeat(1_000_000);
        let limits = ScanLimits {
            max_depth: 1_000_000,
            max_bytes: 1_000_000,
            max_tokens: 1_000_000,
        };
        assert_eq!(scan(&document, &limits), Ok(()));
        let one_more = format!("{document}[");
        let limits = ScanLimits {
            max_bytes: 1_000_001,
            max_tokens: 1_000_001,
            ..limits
        };
        assert_eq!(
            scan(&one_more, &limits),
            Err(ScanError::TooDeep { limit: 1_000_000 })
        );
    }

    #[test]
    fn realistic_operation_passes() {
        let document = r#"
# Loads a hotel's gallery for the detail page.
query HotelGallery($hotelId: ID!, $first: Int = 20, $withCaptions: Boolean = false) {
  hotel(id: $hotelId) {
    id
    ...HotelHeader
    gallery(first: $first, filter: { status: [APPROVED, PENDING], tags: ["pool", "lobby"] }) {
      edges {
        node {
          ...ImageFields
          caption @include(if: $withCaptions)
        }
      }
      pageInfo { hasNextPage endCursor }
    }
  }
}

fragment HotelHeader on Hotel {
  name
  mainImage { ...ImageFields }
}

fragment ImageFields on Image {
  id
  url(width: 640, height: 480, format: WEBP)
  # Sizes are in pixels; "{" in a comment is fine.
  ... on CuratedImage @skip(if: false) {
    note(template: """
      Curated by {curator} on [date].
      A "quoted" word and a \""" stay inside.
    """)
    score(min: -1.5e3, max: 10)
  }
}
"#;
        assert_eq!(scan(document, &ScanLimits::default()), Ok(()));
        assert_eq!(
            scan(document, &depth(6)),
            Ok(()),
            "the deepest nesting is six: query, hotel, gallery, edges, node, @include("
        );
        assert_eq!(scan(document, &depth(5)), too_deep(5));
    }

    #[test]
    fn default_limits() {
        assert_eq!(
            ScanLimits::default(),
            ScanLimits {
                max_depth: 64,
                max_bytes: 65_536,
                max_tokens: 10_000,
            }
        );
    }

    #[test]
    fn error_messages() {
        let cases = [
            (
                ScanError::TooDeep { limit: 64 },
                "the document nests deeper than 64 levels",
            ),
            (
                ScanError::TooLong { limit: 65_536 },
                "the document is longer than 65536 bytes",
            ),
            (
                ScanError::TooManyTokens { limit: 10_000 },
                "the document has more than 10000 tokens",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }
}

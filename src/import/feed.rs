//! Partner feed files, read record by record: JSON Lines or CSV with the field names of the
//! contract feed (`../shared/contract/feeds/partner-feed.jsonl`), snake_case.
//!
//! Fields: `partner_id`, `hotel_id`, `url` (both required), `partner_image_ref`, `legacy_id`,
//! `width`, `height`, `caption`, `tags`, `quality_score`, `content_sha256`, `storage_key` (an
//! object of the object store holding the image's bytes already; see `RawItem`). In JSON, `tags` is
//! a list of `{"category", "confidence"}`; in CSV it is `CATEGORY:confidence;...` and an empty
//! cell is an absent field. A CSV file starts with a header naming its columns.
//!
//! Both formats are read line by line (a CSV record is one line; quoted cells may hold commas
//! and quotes, not line breaks), and blank lines are skipped. A line that cannot be read (not
//! JSON, an unknown field, a wrong type, bad quoting, not UTF-8, too long) is one [`Record`]
//! with the reason, and the reader goes on with the next line: only I/O failures and a bad
//! CSV header stop it. Memory holds one line at a time.

use std::io::{BufRead, BufReader, Read};

use serde::Deserialize;
use serde_json::Value;

use crate::domain::ingest::{RawItem, RawTag};

/// Longest line read, in bytes; a longer one is rejected and skipped.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The two feed formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// A header line, then one record per line (RFC 4180 quoting).
    Csv,
}

impl Format {
    /// The format a file's name suggests: `.csv` is CSV, anything else JSON Lines.
    pub fn of_path(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }
}

/// One line of a feed: the partner it names, if any, and the item.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedLine {
    pub partner_id: Option<i64>,
    pub item: RawItem,
}

/// One record as read: its line number (1-based; a CSV header is line 1) and its content or
/// why it cannot be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub line: u64,
    pub parsed: Result<FeedLine, String>,
}

/// A JSON Lines record as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    partner_id: Option<Value>,
    hotel_id: Value,
    url: String,
    partner_image_ref: Option<String>,
    legacy_id: Option<String>,
    width: Option<i64>,
    height: Option<i64>,
    caption: Option<String>,
    #[serde(default)]
    tags: Vec<JsonTag>,
    quality_score: Option<f64>,
    content_sha256: Option<String>,
    storage_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTag {
    category: String,
    confidence: f64,
}

/// Parses one JSON Lines record.
pub fn parse_json_line(text: &str) -> Result<FeedLine, String> {
    if !text.starts_with('{') {
        return Err("each line must be a JSON object".to_owned());
    }
    let line: JsonLine = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("invalid field: {e}"),
        _ => format!("not valid JSON: {e}"),
    })?;
    Ok(FeedLine {
        partner_id: line.partner_id.as_ref().map(partner_id).transpose()?,
        item: RawItem {
            hotel_id: id_text(&line.hotel_id, "hotel_id")?,
            url: line.url,
            partner_image_ref: line.partner_image_ref,
            legacy_id: line.legacy_id,
            width: line.width,
            height: line.height,
            caption: line.caption,
            tags: line
                .tags
                .into_iter()
                .map(|t| RawTag {
                    category: t.category,
                    confidence: t.confidence,
                })
                .collect(),
            quality_score: line.quality_score,
            content_sha256: line.content_sha256,
            storage_key: line.storage_key,
        },
    })
}

/// An ID field may be a JSON number or a string; the item's validation judges the text.
fn id_text(value: &Value, field: &str) -> Result<String, String> {
    match value {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        _ => Err(format!("{field} must be a number or a string")),
    }
}

fn partner_id(value: &Value) -> Result<i64, String> {
    let text = id_text(value, "partner_id")?;
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| format!("partner_id `{text}` is not a positive integer"))
}

/// The CSV columns this reader knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    PartnerId,
    HotelId,
    Url,
    PartnerImageRef,
    LegacyId,
    Width,
    Height,
    Caption,
    Tags,
    QualityScore,
    ContentSha256,
    StorageKey,
}

impl Column {
    const ALL: [Column; 12] = [
        Column::PartnerId,
        Column::HotelId,
        Column::Url,
        Column::PartnerImageRef,
        Column::LegacyId,
        Column::Width,
        Column::Height,
        Column::Caption,
        Column::Tags,
        Column::QualityScore,
        Column::ContentSha256,
        Column::StorageKey,
    ];

    /// The name in a header (the contract feed's field name).
    fn name(self) -> &'static str {
        match self {
            Column::PartnerId => "partner_id",
            Column::HotelId => "hotel_id",
            Column::Url => "url",
            Column::PartnerImageRef => "partner_image_ref",
            Column::LegacyId => "legacy_id",
            Column::Width => "width",
            Column::Height => "height",
            Column::Caption => "caption",
            Column::Tags => "tags",
            Column::QualityScore => "quality_score",
            Column::ContentSha256 => "content_sha256",
            Column::StorageKey => "storage_key",
        }
    }
}

/// Where each known column is in a CSV file's records.
#[derive(Debug, Clone)]
pub struct CsvHeader {
    /// By `Column as usize`.
    positions: [Option<usize>; Column::ALL.len()],
}

impl CsvHeader {
    /// Reads the header's names; unknown or repeated columns, or a missing `hotel_id` or
    /// `url`, make the file unusable.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut positions = [None; Column::ALL.len()];
        for (at, name) in names.into_iter().enumerate() {
            let name = name.trim();
            let column = Column::ALL
                .iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
                    format!("unknown column `{name}` (known: {})", known.join(", "))
                })?;
            if positions[*column as usize].replace(at).is_some() {
                return Err(format!("column `{name}` appears twice"));
            }
        }
        for required in [Column::HotelId, Column::Url] {
            if positions[required as usize].is_none() {
                return Err(format!("the header has no `{}` column", required.name()));
            }
        }
        Ok(Self { positions })
    }

    /// The cell of `column` in `record`; `None` when the file has no such column or the
    /// cell is empty.
    fn get<'r>(&self, record: &'r [&'r str], column: Column) -> Option<&'r str> {
        self.positions[column as usize]
            .and_then(|at| record.get(at).copied())
            .filter(|cell| !cell.is_empty())
    }
}

/// Parses one CSV record (its cells, already trimmed) under `header`.
pub fn parse_csv_record(header: &CsvHeader, cells: &[&str]) -> Result<FeedLine, String> {
    let get = |column| header.get(cells, column);
    let text = |column| get(column).map(str::to_owned);
    Ok(FeedLine {
        partner_id: get(Column::PartnerId)
            .map(|id| partner_id(&Value::String(id.to_owned())))
            .transpose()?,
        item: RawItem {
            hotel_id: get(Column::HotelId)
                .ok_or("hotel_id is missing")?
                .to_owned(),
            url: get(Column::Url).ok_or("url is missing")?.to_owned(),
            partner_image_ref: text(Column::PartnerImageRef),
            legacy_id: text(Column::LegacyId),
            width: number(get(Column::Width), "width")?,
            height: number(get(Column::Height), "height")?,
            caption: text(Column::Caption),
            tags: get(Column::Tags)
                .map(parse_tags)
                .transpose()?
                .unwrap_or_default(),
            quality_score: number(get(Column::QualityScore), "quality_score")?,
            content_sha256: text(Column::ContentSha256),
            storage_key: text(Column::StorageKey),
        },
    })
}

fn number<T: std::str::FromStr>(cell: Option<&str>, column: &str) -> Result<Option<T>, String> {
    cell.map(|text| {
        text.parse()
            .map_err(|_| format!("{column}: `{text}` is not a number of the right kind"))
    })
    .transpose()
}

/// `CATEGORY:confidence;CATEGORY:confidence` (empty parts are ignored).
pub fn parse_tags(text: &str) -> Result<Vec<RawTag>, String> {
    text.split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (category, confidence) = part
                .rsplit_once(':')
                .ok_or_else(|| format!("tags: `{part}` is not CATEGORY:confidence"))?;
            let confidence = confidence
                .trim()
                .parse()
                .map_err(|_| format!("tags: `{part}` is not CATEGORY:confidence"))?;
            Ok(RawTag {
                category: category.trim().to_owned(),
                confidence,
            })
        })
        .collect()
}

/// Splits one CSV line into its cells (RFC 4180 quoting: `"a, b"`, `"say ""hi"""`), each
/// trimmed. A record is one line: quoted cells may hold commas and quotes, not line breaks.
pub fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    // Inside quotes; after the closing quote of the current cell.
    let (mut quoted, mut closed) = (false, false);
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cell.push('"');
                } else {
                    quoted = false;
                    closed = true;
                }
            }
            _ if quoted => cell.push(c),
            ',' => {
                cells.push(std::mem::take(&mut cell).trim().to_owned());
                closed = false;
            }
            '"' if !closed && cell.trim().is_empty() => {
                cell.clear();
                quoted = true;
            }
            c if closed && c.is_whitespace() => {}
            _ if closed => return Err("text after a closing quote".to_owned()),
            '"' => return Err("a quote inside an unquoted cell".to_owned()),
            _ => cell.push(c),
        }
    }
    if quoted {
        return Err("a quoted cell is not closed on its line".to_owned());
    }
    cells.push(cell.trim().to_owned());
    Ok(cells)
}

/// Reads a feed record by record, one line at a time. Also says how many bytes it has
/// consumed (progress).
pub struct FeedReader<R: Read> {
    input: BufReader<R>,
    /// `None` for JSON Lines; the header for CSV.
    csv: Option<CsvHeader>,
    line: u64,
    bytes: u64,
    buffer: Vec<u8>,
}

/// One line as read: its number and text, or why it cannot be read.
type Line<'a> = (u64, Result<&'a str, String>);

impl<R: Read> FeedReader<R> {
    /// A reader of `input` in `format`; for CSV this reads the header (its first non-blank
    /// line), and a bad header is an error.
    pub fn new(input: R, format: Format) -> anyhow::Result<Self> {
        let mut reader = Self {
            input: BufReader::with_capacity(1 << 16, input),
            csv: None,
            line: 0,
            bytes: 0,
            buffer: Vec::new(),
        };
        if format == Format::Csv {
            let header = match reader.next_line()? {
                None => CsvHeader::parse(["hotel_id", "url"]),
                Some((_, text)) => {
                    let names = text
                        .and_then(split_csv_line)
                        .map_err(|e| anyhow::anyhow!("CSV header: {e}"))?;
                    CsvHeader::parse(names.iter().map(String::as_str))
                }
            };
            reader.csv = Some(header.map_err(|e| anyhow::anyhow!("CSV header: {e}"))?);
        }
        Ok(reader)
    }

    /// The next record; `None` at the end; `Err` only when reading fails.
    pub fn next_record(&mut self) -> std::io::Result<Option<Record>> {
        let header = self.csv.clone();
        let Some((line, text)) = self.next_line()? else {
            return Ok(None);
        };
        let parsed = text.and_then(|text| match &header {
            None => parse_json_line(text),
            Some(header) => {
                let cells = split_csv_line(text)?;
                let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
                parse_csv_record(header, &cells)
            }
        });
        Ok(Some(Record { line, parsed }))
    }

    /// Bytes of the input consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// The next non-blank line, trimmed.
    fn next_line(&mut self) -> std::io::Result<Option<Line<'_>>> {
        loop {
            self.buffer.clear();
            let (read, complete) = read_line_capped(&mut self.input, &mut self.buffer)?;
            if read == 0 {
                return Ok(None);
            }
            self.line += 1;
            self.bytes += read as u64;
            if !complete {
                let reason = format!("the line is longer than {MAX_LINE_BYTES} bytes");
                return Ok(Some((self.line, Err(reason))));
            }
            let blank = self.buffer.iter().all(u8::is_ascii_whitespace);
            if !blank {
                let text = std::str::from_utf8(&self.buffer)
                    .map(str::trim)
                    .map_err(|_| "the line is not UTF-8".to_owned());
                return Ok(Some((self.line, text)));
            }
        }
    }
}

/// Reads one line (without its `\n`) into `buffer`, keeping at most [`MAX_LINE_BYTES`] of it.
/// Returns the bytes consumed and whether the line was kept whole.
fn read_line_capped(
    input: &mut impl BufRead,
    buffer: &mut Vec<u8>,
) -> std::io::Result<(usize, bool)> {
    let mut consumed = 0;
    let mut complete = true;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok((consumed, complete));
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(at) => (&available[..at], Some(at + 1)),
            None => (available, None),
        };
        if complete && buffer.len() + chunk.len() <= MAX_LINE_BYTES {
            buffer.extend_from_slice(chunk);
        } else {
            complete = false;
            buffer.clear();
        }
        let used = done.unwrap_or(available.len());
        input.consume(used);
        consumed += used;
        if done.is_some() {
            return Ok((consumed, complete));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str, format: Format) -> Vec<(u64, Result<FeedLine, String>)> {
        let mut reader = FeedReader::new(text.as_bytes(), format).unwrap();
        let mut out = Vec::new();
        while let Some(record) = reader.next_record().unwrap() {
            out.push((record.line, record.parsed));
        }
        assert_eq!(reader.bytes_read(), text.len() as u64);
        out
    }

    fn item(hotel: &str, url: &str) -> RawItem {
        RawItem {
            hotel_id: hotel.to_owned(),
            url: url.to_owned(),
            ..RawItem::default()
        }
    }

    fn tag(category: &str, confidence: f64) -> RawTag {
        RawTag {
            category: category.to_owned(),
            confidence,
        }
    }

    #[test]
    fn json_lines_parse_into_items_or_name_what_is_wrong() {
        let full = RawItem {
            partner_image_ref: Some("a1".into()),
            legacy_id: Some("L-1".into()),
            width: Some(1600),
            height: Some(1067),
            caption: Some("Pool".into()),
            tags: vec![tag("POOL", 0.95)],
            quality_score: Some(0.8),
            content_sha256: Some("ab".repeat(32)),
            storage_key: Some("legacy/a.jpg".into()),
            ..item("100", "https://img.example/a.jpg")
        };
        let cases: Vec<(String, Result<FeedLine, &str>)> = vec![
            (
                r#"{"hotel_id": 100, "url": "https://img.example/a.jpg"}"#.into(),
                Ok(FeedLine {
                    partner_id: None,
                    item: item("100", "https://img.example/a.jpg"),
                }),
            ),
            (
                format!(
                    r#"{{"partner_id": 1, "hotel_id": 100, "url": "https://img.example/a.jpg", "partner_image_ref": "a1", "legacy_id": "L-1", "width": 1600, "height": 1067, "caption": "Pool", "tags": [{{"category": "POOL", "confidence": 0.95}}], "quality_score": 0.8, "content_sha256": "{}", "storage_key": "legacy/a.jpg"}}"#,
                    "ab".repeat(32)
                ),
                Ok(FeedLine {
                    partner_id: Some(1),
                    item: full,
                }),
            ),
            (
                r#"{"partner_id": "2", "hotel_id": "-5", "url": "x"}"#.into(),
                Ok(FeedLine {
                    partner_id: Some(2),
                    item: item("-5", "x"),
                }),
            ),
            (
                r#"{"hotel_id": 1, "url": "u", "partner_image_ref": "#.into(),
                Err("not valid JSON: EOF while parsing a value at line 1 column 49"),
            ),
            (
                r#"{"hotel_id": 1}"#.into(),
                Err("invalid field: missing field `url` at line 1 column 15"),
            ),
            (
                r#"{"hotel_id": 1, "url": "u", "widht": 3}"#.into(),
                Err(
                    "invalid field: unknown field `widht`, expected one of `partner_id`, `hotel_id`, `url`, `partner_image_ref`, `legacy_id`, `width`, `height`, `caption`, `tags`, `quality_score`, `content_sha256`, `storage_key` at line 1 column 35",
                ),
            ),
            (
                r#"{"hotel_id": 1, "url": "u", "width": "big"}"#.into(),
                Err(
                    "invalid field: invalid type: string \"big\", expected i64 at line 1 column 42",
                ),
            ),
            (
                r#"{"hotel_id": [1], "url": "u"}"#.into(),
                Err("hotel_id must be a number or a string"),
            ),
            (
                r#"{"partner_id": 0, "hotel_id": 1, "url": "u"}"#.into(),
                Err("partner_id `0` is not a positive integer"),
            ),
            ("[1, 2]".into(), Err("each line must be a JSON object")),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_json_line(&line),
                want.map_err(str::to_owned),
                "{line}"
            );
        }
    }

    #[test]
    fn a_json_lines_feed_is_read_line_by_line_past_bad_and_blank_lines() {
        let text = "{\"hotel_id\": 1, \"url\": \"u1\"}\n\n{oops\r\n{\"hotel_id\": 2, \"url\": \"u2\"}\r\n\u{0}\u{ff}\n{\"hotel_id\": 3, \"url\": \"u3\"}";
        let records = read_all(text, Format::Jsonl);
        let lines: Vec<u64> = records.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [1, 3, 4, 5, 6]);
        assert_eq!(records[0].1.as_ref().unwrap().item.url, "u1");
        assert!(
            records[1]
                .1
                .as_ref()
                .unwrap_err()
                .starts_with("not valid JSON")
        );
        assert_eq!(records[2].1.as_ref().unwrap().item.url, "u2");
        assert!(records[3].1.is_err());
        assert_eq!(records[4].1.as_ref().unwrap().item.hotel_id, "3");

        let invalid_utf8 = [b"{\"hotel_id\": 1, \"url\": \"\xff\"}\n".as_slice()].concat();
        let mut reader = FeedReader::new(invalid_utf8.as_slice(), Format::Jsonl).unwrap();
        let record = reader.next_record().unwrap().unwrap();
        assert_eq!(record.parsed, Err("the line is not UTF-8".to_owned()));
    }

    #[test]
    fn an_overlong_line_is_rejected_and_the_next_one_still_read() {
        let long = format!(
            "{{\"hotel_id\": 1, \"url\": \"{}\"}}",
            "x".repeat(MAX_LINE_BYTES)
        );
        let text = format!("{long}\n{{\"hotel_id\": 2, \"url\": \"u\"}}\n");
        let records = read_all(&text, Format::Jsonl);
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[0].1,
            Err(format!("the line is longer than {MAX_LINE_BYTES} bytes"))
        );
        assert_eq!(records[1].0, 2);
        assert_eq!(records[1].1.as_ref().unwrap().item.hotel_id, "2");
    }

    #[test]
    fn csv_records_parse_into_items_or_name_what_is_wrong() {
        let header = CsvHeader::parse(Column::ALL.map(Column::name)).unwrap();
        let cells = |text: &str| -> Vec<String> { text.split('|').map(str::to_owned).collect() };
        let cases: Vec<(&str, Result<FeedLine, &str>)> = vec![
            (
                "|100|https://img.example/a.jpg||||||||",
                Ok(FeedLine {
                    partner_id: None,
                    item: item("100", "https://img.example/a.jpg"),
                }),
            ),
            (
                "1|100|https://img.example/a.jpg|a1|L-1|1600|1067|Pool|POOL:0.95; BAR:0.1;|0.8|abc|legacy/a.jpg",
                Ok(FeedLine {
                    partner_id: Some(1),
                    item: RawItem {
                        partner_image_ref: Some("a1".into()),
                        legacy_id: Some("L-1".into()),
                        width: Some(1600),
                        height: Some(1067),
                        caption: Some("Pool".into()),
                        tags: vec![tag("POOL", 0.95), tag("BAR", 0.1)],
                        quality_score: Some(0.8),
                        content_sha256: Some("abc".into()),
                        storage_key: Some("legacy/a.jpg".into()),
                        ..item("100", "https://img.example/a.jpg")
                    },
                }),
            ),
            (
                "|-5|u||||||||",
                Ok(FeedLine {
                    partner_id: None,
                    item: item("-5", "u"),
                }),
            ),
            ("||u||||||||", Err("hotel_id is missing")),
            ("|1|||||||||", Err("url is missing")),
            (
                "|1|u|||wide|||||",
                Err("width: `wide` is not a number of the right kind"),
            ),
            (
                "|1|u|||||||high|",
                Err("quality_score: `high` is not a number of the right kind"),
            ),
            (
                "|1|u||||||POOL|",
                Err("tags: `POOL` is not CATEGORY:confidence"),
            ),
            (
                "|1|u||||||POOL:x|",
                Err("tags: `POOL:x` is not CATEGORY:confidence"),
            ),
            (
                "x|1|u||||||||",
                Err("partner_id `x` is not a positive integer"),
            ),
            (
                "|1|u",
                Ok(FeedLine {
                    partner_id: None,
                    item: item("1", "u"),
                }),
            ),
        ];
        for (text, want) in cases {
            let owned = cells(text);
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            assert_eq!(
                parse_csv_record(&header, &refs),
                want.map_err(str::to_owned),
                "{text}"
            );
        }
    }

    #[test]
    fn csv_lines_split_into_trimmed_cells_with_quotes() {
        let cases: [(&str, Result<&[&str], &str>); 9] = [
            ("a,b,c", Ok(&["a", "b", "c"])),
            (" a , b ,", Ok(&["a", "b", ""])),
            ("", Ok(&[""])),
            ("\"a, b\",c", Ok(&["a, b", "c"])),
            ("\"say \"\"hi\"\"\" , x", Ok(&["say \"hi\"", "x"])),
            ("  \"q\"  ,", Ok(&["q", ""])),
            ("\"open,b", Err("a quoted cell is not closed on its line")),
            ("\"a\"b,c", Err("text after a closing quote")),
            ("a\"b,c", Err("a quote inside an unquoted cell")),
        ];
        for (line, want) in cases {
            let want = want
                .map(|cells| cells.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>())
                .map_err(str::to_owned);
            assert_eq!(split_csv_line(line), want, "{line}");
        }
    }

    #[test]
    fn csv_headers_must_name_known_columns_and_the_required_ones() {
        let cases: [(&[&str], Result<(), &str>); 5] = [
            (&["hotel_id", "url"], Ok(())),
            (&["url", " hotel_id ", "tags"], Ok(())),
            (&["hotel_id"], Err("the header has no `url` column")),
            (
                &["hotel_id", "url", "url"],
                Err("column `url` appears twice"),
            ),
            (
                &["hotel_id", "url", "colour"],
                Err(
                    "unknown column `colour` (known: partner_id, hotel_id, url, partner_image_ref, legacy_id, width, height, caption, tags, quality_score, content_sha256, storage_key)",
                ),
            ),
        ];
        for (names, want) in cases {
            assert_eq!(
                CsvHeader::parse(names.iter().copied()).map(|_| ()),
                want.map_err(str::to_owned),
                "{names:?}"
            );
        }
    }

    #[test]
    fn a_csv_feed_is_read_record_by_record_with_quotes_and_line_numbers() {
        let text = "hotel_id,url,caption,tags\n\
                    1,https://img.example/a.jpg,\"Pool, at night\",POOL:0.9\n\
                    \n\
                    2,https://img.example/b.jpg,\"said \"\"hi\"\"\",\n\
                    x\n\
                    3,https://img.example/c.jpg,,BAR:0.5;SPA:0.25\n\
                    4,\"https://img.example/d.jpg\n";
        let records = read_all(text, Format::Csv);
        let lines: Vec<u64> = records.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [2, 4, 5, 6, 7]);
        let first = records[0].1.as_ref().unwrap();
        assert_eq!(first.item.caption.as_deref(), Some("Pool, at night"));
        assert_eq!(first.item.tags, [tag("POOL", 0.9)]);
        assert_eq!(
            records[1].1.as_ref().unwrap().item.caption.as_deref(),
            Some("said \"hi\"")
        );
        assert_eq!(records[2].1, Err("url is missing".to_owned()));
        assert_eq!(
            records[3].1.as_ref().unwrap().item.tags,
            [tag("BAR", 0.5), tag("SPA", 0.25)]
        );
        assert_eq!(
            records[4].1,
            Err("a quoted cell is not closed on its line".to_owned())
        );
        assert!(FeedReader::new("hotel_id,colour\n".as_bytes(), Format::Csv).is_err());
    }
}

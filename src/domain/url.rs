//! Canonical image URLs and URL keys (pure: no I/O).
//!
//! Partners send the same picture under many spellings of its URL. [`canonicalize`] turns every
//! spelling into one [`CanonicalUrl`], and [`UrlKey::of`] hashes it into the dedup key of an
//! image: the same key is the same image, forever. These rules therefore must not change once
//! keys are stored.
//!
//! # Rules, in order
//! 1. Trim surrounding whitespace and parse as a WHATWG URL (the `url` crate): this lower-cases
//!    the scheme and host (IDNs become punycode), drops the default port and removes dot
//!    segments. Only `http` and `https` URLs with a host are accepted.
//! 2. Drop the fragment.
//! 3. Normalize percent-encoding everywhere: hex digits upper-case, percent-encoded unreserved
//!    characters (`A-Z a-z 0-9 - . _ ~`) decoded, every other escape kept as is (`%2F`, `%3F`,
//!    `%26`, `%20` stay encoded; `+` stays `+`), and a stray `%` that starts no escape encoded as
//!    `%25`.
//! 4. Query: drop empty parameters and tracking parameters (`utm_*`, `gclid`, `fbclid`, ...),
//!    sort the rest by name, then value (byte order of their normalized encoded form; equal
//!    parameters keep their order), and drop the `?` when nothing is left.
//! 5. Apply the partner's [`Rewrites`] in order to that string, then canonicalize the result again
//!    (without the rules): a rule must not turn a URL into something that is not one.
//!
//! # URLs the service takes from partners
//! Canonical form says nothing about whether a URL may be stored and fetched. [`require_public`]
//! refuses, at import, URLs that carry credentials (`user:pass@`, which would be stored and
//! shown) and URLs whose host is not public: an image server or fetcher asked for them would
//! reach into the service's own network (loopback, private ranges, the cloud metadata service
//! at 169.254.169.254). Only literal addresses and `localhost` names are judged: what a public
//! name resolves to is the fetcher's business, at fetch time.

use std::borrow::Cow;
use std::fmt;

use std::net::{Ipv4Addr, Ipv6Addr};

use ::url::{Host, Url};
use regex::{Regex, RegexBuilder};
use sha2::{Digest, Sha256};

/// Most compiled memory one rewrite regex may use; larger patterns are refused at compile time.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Query parameters that only track a visit: they never change the picture.
const TRACKING_PARAMS: &[&str] = &[
    "gclid", "fbclid", "msclkid", "dclid", "mc_cid", "mc_eid", "_ga", "yclid", "igshid",
];

/// Prefix of the tracking parameters of Google Analytics campaigns (`utm_source`, ...).
const TRACKING_PREFIX: &str = "utm_";

/// Why a URL could not be canonicalized, or why rewrite rules are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The text does not parse as an absolute URL; holds the parser's message.
    #[error("not a URL: {0}")]
    NotAUrl(String),
    /// The URL's scheme is neither `http` nor `https`; holds the scheme.
    #[error("scheme `{0}` is not allowed: only http and https URLs are accepted")]
    SchemeNotAllowed(String),
    /// The URL has no host (or an empty one).
    #[error("the URL has no host")]
    NoHost,
    /// The URL carries a user name or password (`user:pass@host`).
    #[error("the URL carries credentials (a user name or password before the host): refused")]
    Credentials,
    /// The URL's host is a loopback, private, link-local or otherwise internal address, or a
    /// `localhost` name; holds the host as parsed.
    #[error(
        "`{0}` is not a public host: loopback, private, link-local and other internal addresses are refused"
    )]
    NotPublicHost(String),
    /// A rewrite rule is invalid, or turned a URL into something that is not an accepted URL.
    #[error("bad rewrite rule `{pattern}`: {message}")]
    BadRewrite { pattern: String, message: String },
}

/// A partner's rewrite rule as stored: a regex and its replacement ($1-style groups allowed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UrlRewrite {
    /// Regular expression (Rust `regex` syntax) searched in the canonical URL.
    pub pattern: String,
    /// Replaces every match; `$1`, `${1}` and `${name}` insert groups, `$$` a literal `$`.
    pub replacement: String,
}

/// One compiled rule.
#[derive(Debug, Clone)]
struct CompiledRewrite {
    regex: Regex,
    replacement: String,
}

/// The compiled rewrite rules of one partner, applied in order. Compiling validates them.
#[derive(Debug, Clone, Default)]
pub struct Rewrites {
    rules: Vec<CompiledRewrite>,
}

impl Rewrites {
    /// Compiles `rules`, keeping their order. Fails with [`UrlError::BadRewrite`] on an invalid or
    /// too large regex, or on a replacement that refers to a group the regex does not have (such
    /// as `$1_large`, which names a group `1_large`: write `${1}_large`).
    pub fn compile(rules: &[UrlRewrite]) -> Result<Self, UrlError> {
        let rules = rules.iter().map(compile_rule).collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// No rules: the canonical URL is kept as is.
    pub fn none() -> Self {
        Self::default()
    }

    /// Applies every rule in order (each replaces all its matches). Returns the result and the
    /// pattern of the last rule that changed it, if any did.
    fn apply<'a>(&'a self, url: &str) -> (String, Option<&'a str>) {
        let mut text = url.to_owned();
        let mut last_change = None;
        for rule in &self.rules {
            if let Cow::Owned(changed) = rule.regex.replace_all(&text, rule.replacement.as_str()) {
                if changed != text {
                    last_change = Some(rule.regex.as_str());
                }
                text = changed;
            }
        }
        (text, last_change)
    }
}

fn compile_rule(rule: &UrlRewrite) -> Result<CompiledRewrite, UrlError> {
    let bad = |message: String| UrlError::BadRewrite {
        pattern: rule.pattern.clone(),
        message,
    };
    let regex = RegexBuilder::new(&rule.pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    if let Some(group) = unknown_group(&regex, &rule.replacement) {
        return Err(bad(format!(
            "replacement `{}` refers to group `{group}`, which the pattern does not have",
            rule.replacement
        )));
    }
    Ok(CompiledRewrite {
        regex,
        replacement: rule.replacement.clone(),
    })
}

/// The first group reference of `replacement` that `regex` cannot fill, read exactly as the
/// `regex` crate reads them: `$$` is a `$`, `${...}` is a braced name, and an unbraced name is
/// the longest run of `[0-9A-Za-z_]` after the `$`.
fn unknown_group<'a>(regex: &Regex, replacement: &'a str) -> Option<&'a str> {
    let mut rest = replacement;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let (name, after) = if let Some(tail) = rest.strip_prefix('$') {
            ("", tail)
        } else if let Some((name, tail)) = rest.strip_prefix('{').and_then(|b| b.split_once('}')) {
            (name, tail)
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            rest.split_at(end)
        };
        rest = after;
        if !name.is_empty() && !has_group(regex, name) {
            return Some(name);
        }
    }
    None
}

fn has_group(regex: &Regex, name: &str) -> bool {
    match name.parse::<usize>() {
        Ok(index) => index < regex.captures_len(),
        Err(_) => regex.capture_names().flatten().any(|n| n == name),
    }
}

/// An image URL in canonical form (see the module doc); only [`canonicalize`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalUrl(String);

impl CanonicalUrl {
    /// The canonical URL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical URL text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for CanonicalUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The dedup key of an image: lower-case hex SHA-256 of its canonical URL (64 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UrlKey(String);

impl UrlKey {
    /// The key of `url`.
    pub fn of(url: &CanonicalUrl) -> Self {
        Self(hex::encode(Sha256::digest(url.as_str().as_bytes())))
    }

    /// A key as stored: the database only holds keys that [`UrlKey::of`] made.
    pub fn from_stored(key: String) -> Self {
        Self(key)
    }

    /// The 64 lower-case hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UrlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical form of `raw` under a partner's `rewrites` (see the module doc for the rules).
/// Canonicalizing a canonical URL again gives it back unchanged, provided the partner's rules
/// leave their own output alone.
pub fn canonicalize(raw: &str, rewrites: &Rewrites) -> Result<CanonicalUrl, UrlError> {
    let canonical = normalize(raw.trim())?;
    let (rewritten, changed_by) = rewrites.apply(&canonical);
    let Some(pattern) = changed_by else {
        return Ok(CanonicalUrl(canonical));
    };
    normalize(&rewritten)
        .map(CanonicalUrl)
        .map_err(|e| UrlError::BadRewrite {
            pattern: pattern.to_owned(),
            message: format!("it turned `{canonical}` into `{rewritten}`, which is refused: {e}"),
        })
}

/// Rules 1 to 4 of the module doc: the canonical text of `text`, rewrite rules aside.
fn normalize(text: &str) -> Result<String, UrlError> {
    let mut url = parse(text)?;
    url.set_fragment(None);
    let query = url.query().map(normalize_query).filter(|q| !q.is_empty());
    url.set_query(None);
    let mut canonical = normalize_percent(url.as_str());
    if let Some(query) = query {
        canonical.push('?');
        canonical.push_str(&query);
    }
    Ok(canonical)
}

/// Parses `text` as an absolute http(s) URL with a host.
fn parse(text: &str) -> Result<Url, UrlError> {
    let url = Url::parse(text).map_err(|e| match e {
        ::url::ParseError::EmptyHost => UrlError::NoHost,
        other => UrlError::NotAUrl(other.to_string()),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::SchemeNotAllowed(url.scheme().to_owned()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    Ok(url)
}

/// Refuses `url` when it carries credentials or names a host that is not public (see the
/// module doc): the check every partner URL passes before it is stored.
///
/// Refused hosts: IPv4 `0.0.0.0/8` (unspecified, "this network"), loopback `127.0.0.0/8`,
/// private `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`, shared (CGNAT) `100.64.0.0/10`,
/// link-local `169.254.0.0/16`, multicast `224.0.0.0/4`, reserved `240.0.0.0/4` (broadcast
/// included); IPv6 unspecified `::`, loopback `::1`, unique-local `fc00::/7`, link-local
/// `fe80::/10`, site-local `fec0::/10`, multicast `ff00::/8`, and IPv4 addresses embedded in
/// IPv6 (`::ffff:a.b.c.d`, `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) judged as IPv4; names
/// `localhost` and `*.localhost` (trailing dot or not). The parser has already turned every
/// other spelling of an address (`2130706433`, `0x7f.1`, octal) into its dotted form.
pub fn require_public(url: &str) -> Result<(), UrlError> {
    let url = parse(url)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let public = match url.host() {
        Some(Host::Ipv4(ip)) => is_public_v4(ip),
        Some(Host::Ipv6(ip)) => is_public_v6(ip),
        Some(Host::Domain(name)) => !is_localhost(name),
        None => return Err(UrlError::NoHost),
    };
    if public {
        Ok(())
    } else {
        Err(UrlError::NotPublicHost(
            url.host_str().unwrap_or_default().to_owned(),
        ))
    }
}

/// [`require_public`], except that a host listed in `allowed` (as written in the URL, the
/// `FETCH_ALLOW_HOSTS` list: tests and local setups only) is taken whatever it is.
pub fn require_public_or_allowed(url: &str, allowed: &[String]) -> Result<(), UrlError> {
    let parsed = parse(url)?;
    let listed = parsed
        .host_str()
        .is_some_and(|host| allowed.iter().any(|a| a.eq_ignore_ascii_case(host)));
    if listed && parsed.username().is_empty() && parsed.password().is_none() {
        return Ok(());
    }
    require_public(url)
}

/// Whether `ip` is a public address: none of the ranges [`require_public`] refuses. The
/// fetcher's resolver keeps only these.
pub fn is_public_ip(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(ip) => is_public_v4(ip),
        std::net::IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let internal = a == 0
        || ip.is_loopback()
        || ip.is_private()
        || (a == 100 && (64..128).contains(&b))
        || ip.is_link_local()
        || ip.is_multicast()
        || a >= 240;
    !internal
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    if ip.is_unspecified() || ip.is_loopback() {
        return false;
    }
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let internal = (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local fec0::/10
        || (first & 0xff00) == 0xff00; // multicast ff00::/8
    !internal
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:0:0/96`), IPv4-compatible (`::/96`) or NAT64
/// (`64:ff9b::/96`) IPv6 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = || Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] | [0x64, 0xff9b, 0, 0, 0, 0, ..] => {
            Some(v4())
        }
        _ => None,
    }
}

/// `localhost` and its subdomains (RFC 6761 reserves them for the local machine).
fn is_localhost(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Normalizes the percent-encoding of each parameter of `query`, drops empty and tracking
/// parameters, and sorts the rest by name, then value. Empty when no parameter is left.
fn normalize_query(query: &str) -> String {
    let mut params: Vec<String> = query
        .split('&')
        .filter(|param| !param.is_empty())
        .map(normalize_percent)
        .filter(|param| !is_tracking(param_name(param)))
        .collect();
    params.sort_by(|a, b| split_param(a).cmp(&split_param(b)));
    params.join("&")
}

/// A parameter's name and value (`None` when it has no `=` at all, so `a` sorts before `a=`).
fn split_param(param: &str) -> (&str, Option<&str>) {
    match param.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (param, None),
    }
}

fn param_name(param: &str) -> &str {
    split_param(param).0
}

fn is_tracking(name: &str) -> bool {
    name.starts_with(TRACKING_PREFIX) || TRACKING_PARAMS.contains(&name)
}

/// Upper-cases the hex digits of every escape, decodes the escapes of unreserved characters and
/// encodes a `%` that starts no escape as `%25`. Everything else is kept byte for byte.
fn normalize_percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        rest = match escaped_byte(after) {
            Some(byte) => {
                push_escape_or_char(&mut out, byte);
                &after[2..]
            }
            None => {
                out.push_str("%25");
                after
            }
        };
    }
    out.push_str(rest);
    out
}

/// Pushes an unreserved `byte` as its character, any other as an upper-case escape.
fn push_escape_or_char(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if is_unreserved(byte) {
        out.push(char::from(byte));
    } else {
        out.push('%');
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0F)]));
    }
}

/// The byte encoded by the two hex digits that start `text`, if they do.
fn escaped_byte(text: &str) -> Option<u8> {
    let digits = text.as_bytes().get(..2)?;
    let high = char::from(digits[0]).to_digit(16)?;
    let low = char::from(digits[1]).to_digit(16)?;
    u8::try_from(high * 16 + low).ok()
}

/// RFC 3986 unreserved characters: their escapes mean the same as the characters themselves.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "https://img.ota-one.example";

    /// Rewrite rules written out as `(pattern, replacement)` pairs.
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn canon(raw: &str) -> Result<String, UrlError> {
        canonicalize(raw, &Rewrites::none()).map(CanonicalUrl::into_string)
    }

    fn rules(pairs: Pairs) -> Vec<UrlRewrite> {
        pairs
            .iter()
            .map(|(pattern, replacement)| UrlRewrite {
                pattern: (*pattern).to_owned(),
                replacement: (*replacement).to_owned(),
            })
            .collect()
    }

    /// Checks `raw` → `want` under `rewrites`, and that `want` is its own canonical form.
    fn assert_canonical(raw: &str, rewrites: &Rewrites, want: &str) {
        let got = canonicalize(raw, rewrites).map(CanonicalUrl::into_string);
        assert_eq!(got.as_deref(), Ok(want), "{raw:?}");
        let again = canonicalize(want, rewrites).map(CanonicalUrl::into_string);
        assert_eq!(again.as_deref(), Ok(want), "not idempotent: {want:?}");
    }

    #[test]
    fn scheme_host_port_fragment_and_empty_query() {
        let cases = [
            (
                "HTTPS://IMG.OTA-ONE.example:443/h100/pool.jpg?utm_source=chain#top",
                "https://img.ota-one.example/h100/pool.jpg",
            ),
            (
                "HtTp://Img.Ota-One.Example/h100/Pool.JPG",
                "http://img.ota-one.example/h100/Pool.JPG",
            ),
            (
                "http://img.ota-one.example:80/h100/pool.jpg",
                "http://img.ota-one.example/h100/pool.jpg",
            ),
            (
                "https://img.ota-one.example:443/h100/pool.jpg",
                "https://img.ota-one.example/h100/pool.jpg",
            ),
            (
                "https://img.ota-one.example:80/h100/pool.jpg",
                "https://img.ota-one.example:80/h100/pool.jpg",
            ),
            (
                "http://img.ota-one.example:443/h100/pool.jpg",
                "http://img.ota-one.example:443/h100/pool.jpg",
            ),
            (
                "http://img.ota-one.example:8080/h100/pool.jpg",
                "http://img.ota-one.example:8080/h100/pool.jpg",
            ),
            (
                "https://img.ota-one.example:8080/h100/pool.jpg",
                "https://img.ota-one.example:8080/h100/pool.jpg",
            ),
            (
                "https://img.ota-one.example/h100/pool.jpg#gallery",
                "https://img.ota-one.example/h100/pool.jpg",
            ),
            (
                "https://img.ota-one.example/h100/pool.jpg#",
                "https://img.ota-one.example/h100/pool.jpg",
            ),
            (
                "https://img.ota-one.example/h100/pool.jpg?",
                "https://img.ota-one.example/h100/pool.jpg",
            ),
            (
                "https://img.ota-one.example/h100/pool.jpg?#top",
                "https://img.ota-one.example/h100/pool.jpg",
            ),
            (
                "https://img.ota-one.example/h100/pool.jpg?&&",
                "https://img.ota-one.example/h100/pool.jpg",
            ),
            (
                "https://img.ota-one.example",
                "https://img.ota-one.example/",
            ),
            (
                "https://img.ota-one.example./h100/pool.jpg",
                "https://img.ota-one.example./h100/pool.jpg",
            ),
            (
                "https://BÜCHER.example/h100/pool.jpg",
                "https://xn--bcher-kva.example/h100/pool.jpg",
            ),
            (
                "https://[2001:DB8::1]:443/h100/pool.jpg",
                "https://[2001:db8::1]/h100/pool.jpg",
            ),
            (
                "  https://img.ota-one.example/h100/pool.jpg \n",
                "https://img.ota-one.example/h100/pool.jpg",
            ),
        ];
        for (raw, want) in cases {
            assert_canonical(raw, &Rewrites::none(), want);
        }
    }

    #[test]
    fn dot_segments_are_removed() {
        let cases = [
            (
                "https://img.ota-one.example/h100/./x/../lobby.jpg?b=2&a=1",
                "https://img.ota-one.example/h100/lobby.jpg?a=1&b=2",
            ),
            (
                "https://img.ota-one.example/h100/x/%2e%2E/lobby.jpg",
                "https://img.ota-one.example/h100/lobby.jpg",
            ),
            (
                "https://img.ota-one.example/h100/%2E/lobby.jpg",
                "https://img.ota-one.example/h100/lobby.jpg",
            ),
            (
                "https://img.ota-one.example/../../h100/lobby.jpg",
                "https://img.ota-one.example/h100/lobby.jpg",
            ),
            (
                "https://img.ota-one.example/h100/x/..",
                "https://img.ota-one.example/h100/",
            ),
        ];
        for (raw, want) in cases {
            assert_canonical(raw, &Rewrites::none(), want);
        }
    }

    #[test]
    fn percent_encoding_is_normalized_without_decoding_reserved_characters() {
        let cases = [
            (
                "https://img.ota-one.example/h100/%7Estaff/bar.jpg",
                "https://img.ota-one.example/h100/~staff/bar.jpg",
            ),
            (
                "https://img.ota-one.example/h100/%7estaff/bar.jpg",
                "https://img.ota-one.example/h100/~staff/bar.jpg",
            ),
            (
                "https://img.ota-one.example/h100/~staff/bar.jpg",
                "https://img.ota-one.example/h100/~staff/bar.jpg",
            ),
            (
                "https://img.ota-one.example/h100/%41%61%30%2D%2E%5F.jpg",
                "https://img.ota-one.example/h100/Aa0-._.jpg",
            ),
            (
                "https://img.ota-one.example/h100/a%2fb.jpg",
                "https://img.ota-one.example/h100/a%2Fb.jpg",
            ),
            (
                "https://img.ota-one.example/h100/a%2Fb.jpg",
                "https://img.ota-one.example/h100/a%2Fb.jpg",
            ),
            (
                "https://img.ota-one.example/h100/a%3fb.jpg",
                "https://img.ota-one.example/h100/a%3Fb.jpg",
            ),
            (
                "https://img.ota-one.example/h100/sea%20view.jpg",
                "https://img.ota-one.example/h100/sea%20view.jpg",
            ),
            (
                "https://img.ota-one.example/h100/sea view.jpg",
                "https://img.ota-one.example/h100/sea%20view.jpg",
            ),
            (
                "https://img.ota-one.example/h100/sea+view.jpg",
                "https://img.ota-one.example/h100/sea+view.jpg",
            ),
            (
                "https://img.ota-one.example/h100/a%2bb.jpg",
                "https://img.ota-one.example/h100/a%2Bb.jpg",
            ),
            (
                "https://img.ota-one.example/h100/h%c3%b4tel.jpg",
                "https://img.ota-one.example/h100/h%C3%B4tel.jpg",
            ),
            (
                "https://img.ota-one.example/h100/hôtel.jpg",
                "https://img.ota-one.example/h100/h%C3%B4tel.jpg",
            ),
            (
                "https://img.ota-one.example/h100/100%.jpg",
                "https://img.ota-one.example/h100/100%25.jpg",
            ),
            (
                "https://img.ota-one.example/h100/%zz%4.jpg",
                "https://img.ota-one.example/h100/%25zz%254.jpg",
            ),
            (
                "https://img.ota-one.example/h100/%%34%31.jpg",
                "https://img.ota-one.example/h100/%2541.jpg",
            ),
            (
                "https://img.ota-one.example/h100/pool.jpg?name=a%2fb",
                "https://img.ota-one.example/h100/pool.jpg?name=a%2Fb",
            ),
            (
                "https://img.ota-one.example/h100/pool.jpg?q=%26&r=%3d",
                "https://img.ota-one.example/h100/pool.jpg?q=%26&r=%3D",
            ),
            (
                "https://img.ota-one.example/h100/pool.jpg?v=%7e%41",
                "https://img.ota-one.example/h100/pool.jpg?v=~A",
            ),
            (
                "https://img.ota-one.example/h100/pool.jpg?v=it's",
                "https://img.ota-one.example/h100/pool.jpg?v=it%27s",
            ),
            (
                "https://user:p%61ss@img.ota-one.example/h100/pool.jpg",
                "https://user:pass@img.ota-one.example/h100/pool.jpg",
            ),
        ];
        for (raw, want) in cases {
            assert_canonical(raw, &Rewrites::none(), want);
        }
    }

    #[test]
    fn every_tracking_parameter_is_dropped() {
        let tracking = [
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_term",
            "utm_content",
            "utm_id",
            "utm_",
            "gclid",
            "fbclid",
            "msclkid",
            "dclid",
            "mc_cid",
            "mc_eid",
            "_ga",
            "yclid",
            "igshid",
        ];
        for name in tracking {
            let alone = format!("{HOST}/h100/pool.jpg?{name}=x1");
            assert_canonical(&alone, &Rewrites::none(), &format!("{HOST}/h100/pool.jpg"));
            let mixed = format!("{HOST}/h100/pool.jpg?w=800&{name}=x1&{name}&h=600");
            assert_canonical(
                &mixed,
                &Rewrites::none(),
                &format!("{HOST}/h100/pool.jpg?h=600&w=800"),
            );
        }
    }

    #[test]
    fn query_parameters_are_sorted_and_lookalikes_kept() {
        let cases = [
            (
                "https://img.ota-one.example/p.jpg?size=l&id=2&id=10&id=1",
                "https://img.ota-one.example/p.jpg?id=1&id=10&id=2&size=l",
            ),
            (
                "https://img.ota-one.example/p.jpg?b=2&a=2&a=1&b=1",
                "https://img.ota-one.example/p.jpg?a=1&a=2&b=1&b=2",
            ),
            (
                "https://img.ota-one.example/p.jpg?a=1&a=1&a",
                "https://img.ota-one.example/p.jpg?a&a=1&a=1",
            ),
            (
                "https://img.ota-one.example/p.jpg?flag=&flag",
                "https://img.ota-one.example/p.jpg?flag&flag=",
            ),
            (
                "https://img.ota-one.example/p.jpg?b=1&&a=2&",
                "https://img.ota-one.example/p.jpg?a=2&b=1",
            ),
            (
                "https://img.ota-one.example/p.jpg?x=a=b&w=1",
                "https://img.ota-one.example/p.jpg?w=1&x=a=b",
            ),
            (
                "https://img.ota-one.example/p.jpg?caption=sea+view&alt=sea%20view",
                "https://img.ota-one.example/p.jpg?alt=sea%20view&caption=sea+view",
            ),
            (
                "https://img.ota-one.example/p.jpg?utm%5Fsource=x&w=1",
                "https://img.ota-one.example/p.jpg?w=1",
            ),
            (
                "https://img.ota-one.example/p.jpg?utm=1&UTM_SOURCE=2&xgclid=3&gclid_x=4",
                "https://img.ota-one.example/p.jpg?UTM_SOURCE=2&gclid_x=4&utm=1&xgclid=3",
            ),
        ];
        for (raw, want) in cases {
            assert_canonical(raw, &Rewrites::none(), want);
        }
    }

    #[test]
    fn unusable_urls_are_rejected() {
        let scheme = |s: &str| UrlError::SchemeNotAllowed(s.to_owned());
        let cases = [
            ("ftp://img.ota-one.example/h100/pool.jpg", scheme("ftp")),
            ("data:image/png;base64,iVBORw0KGgo=", scheme("data")),
            ("mailto:photos@ota-one.example", scheme("mailto")),
            ("javascript:alert(1)", scheme("javascript")),
            ("file:///srv/h100/pool.jpg", scheme("file")),
            ("http://", UrlError::NoHost),
            ("https://:443/h100/pool.jpg", UrlError::NoHost),
        ];
        for (raw, want) in cases {
            assert_eq!(canon(raw), Err(want), "{raw:?}");
        }
        for raw in [
            "not a url",
            "/a/b.jpg",
            "img.ota-one.example/h100/pool.jpg",
            "",
            "   ",
            "https://exa mple.com/",
        ] {
            assert!(
                matches!(canon(raw), Err(UrlError::NotAUrl(_))),
                "{raw:?}: {:?}",
                canon(raw)
            );
        }
    }

    #[test]
    fn rewrite_rules_apply_in_order_to_the_canonical_url() {
        let sizes = [(r"_(small|medium|large)\.jpg$", ".jpg")];
        let cdn = [(
            r"^https://cdn(\d+)\.ota-one\.example/",
            "https://img.ota-one.example/",
        )];
        let groups = [(r"/(?P<hotel>h\d+)/(\d+)x(\d+)/", "/${hotel}/")];
        let ordered = [
            (r"^http://", "https://"),
            (r"^https://static\.", "https://img."),
            (r"_thumb\.jpg$", ".jpg"),
        ];
        let to_query = [(r"/(\d+)x(\d+)/([^/?]+)$", "/$3?w=$1&h=$2")];
        let cases: &[(Pairs, &str, &str)] = &[
            (
                &sizes,
                "https://img.ota-one.example/h100/pool_small.jpg",
                "https://img.ota-one.example/h100/pool.jpg",
            ),
            (
                &sizes,
                "https://img.ota-one.example/h100/pool_LARGE.jpg",
                "https://img.ota-one.example/h100/pool_LARGE.jpg",
            ),
            (
                &sizes,
                "https://img.ota-one.example/h100/pool_large.jpg?v=2",
                "https://img.ota-one.example/h100/pool_large.jpg?v=2",
            ),
            (
                &sizes,
                "https://img.ota-one.example/h100/pool.jpg",
                "https://img.ota-one.example/h100/pool.jpg",
            ),
            (
                &cdn,
                "https://CDN3.ota-one.example/h100/pool.jpg",
                "https://img.ota-one.example/h100/pool.jpg",
            ),
            (
                &groups,
                "https://img.ota-one.example/h100/800x600/pool.jpg",
                "https://img.ota-one.example/h100/pool.jpg",
            ),
            (
                &ordered,
                "http://static.ota-one.example/h100/pool_thumb.jpg",
                "https://img.ota-one.example/h100/pool.jpg",
            ),
            (
                &ordered,
                "http://other.example/h100/pool.jpg",
                "https://other.example/h100/pool.jpg",
            ),
            // The rewritten URL is canonicalized again: here its parameters are sorted back.
            (
                &to_query,
                "https://img.ota-one.example/h100/800x600/pool.jpg",
                "https://img.ota-one.example/h100/pool.jpg?h=600&w=800",
            ),
        ];
        for (pairs, raw, want) in cases {
            let rewrites = Rewrites::compile(&rules(pairs)).expect("valid rules");
            assert_canonical(raw, &rewrites, want);
        }
    }

    #[test]
    fn a_rewrite_that_breaks_the_url_is_an_error() {
        let cases: &[(Pairs, &str)] = &[
            (&[(r"^https://", "")], r"^https://"),
            (&[(r"^https", "ftp")], r"^https"),
            (&[(r"^https://[^/]+", "https://:8080")], r"^https://[^/]+"),
            (
                &[(r"\.jpg$", ".png"), (r"^https://img\.", "img.")],
                r"^https://img\.",
            ),
        ];
        for (pairs, pattern) in cases {
            let rewrites = Rewrites::compile(&rules(pairs)).expect("valid rules");
            let got = canonicalize("https://img.ota-one.example/h100/pool.jpg", &rewrites);
            assert!(
                matches!(&got, Err(UrlError::BadRewrite { pattern: p, .. }) if p == pattern),
                "{pairs:?}: {got:?}"
            );
        }
    }

    #[test]
    fn invalid_rules_are_refused_at_compile_time() {
        let huge = r"\w{1000}\w{1000}\w{1000}";
        let cases = [
            (r"_(small|medium\.jpg$", ".jpg"),
            (r"[z-a]", ""),
            (huge, ""),
            (r"_(small)\.jpg$", "$2.jpg"),
            (r"_(small)_(\d+)\.jpg$", "$1_$2.jpg"),
            (r"_(?P<size>small)\.jpg$", "${sise}.jpg"),
        ];
        for (pattern, replacement) in cases {
            let got = Rewrites::compile(&rules(&[(pattern, replacement)]));
            assert!(
                matches!(&got, Err(UrlError::BadRewrite { pattern: p, .. }) if p == pattern),
                "{pattern:?} → {replacement:?}: {:?}",
                got.map(|_| ())
            );
        }
        let fine = [
            (r"_(small)\.jpg$", "$1.jpg"),
            (r"_(small)_(\d+)\.jpg$", "${1}_${2}.jpg"),
            (r"_(?P<size>small)\.jpg$", "$size.jpg"),
            (r"\.jpg$", "$$.jpg"),
            (r"\.jpg$", "$.jpg"),
            (r"(a)", "$0$1"),
        ];
        for (pattern, replacement) in fine {
            assert!(
                Rewrites::compile(&rules(&[(pattern, replacement)])).is_ok(),
                "{pattern:?} → {replacement:?}"
            );
        }
    }

    #[test]
    fn url_keys_are_sha256_hex_of_the_canonical_url() {
        let key = |raw: &str| canonicalize(raw, &Rewrites::none()).map(|url| UrlKey::of(&url));
        let pool = key("https://img.ota-one.example/h100/pool.jpg").expect("valid URL");
        assert_eq!(pool.as_str().len(), 64);
        assert!(
            pool.as_str()
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{pool}"
        );
        assert_eq!(pool.to_string(), pool.as_str());
        let empty = UrlKey::of(&CanonicalUrl(String::new()));
        assert_eq!(
            empty.as_str(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );

        let same = [
            "HTTPS://IMG.OTA-ONE.example:443/h100/pool.jpg?utm_source=chain#top",
            "https://img.ota-one.example/h100/./pool.jpg?",
        ];
        for raw in same {
            assert_eq!(key(raw).as_ref(), Ok(&pool), "{raw:?}");
        }
        let other = [
            "http://img.ota-one.example/h100/pool.jpg",
            "https://img.ota-one.example/h100/Pool.jpg",
            "https://img.ota-one.example/h100/pool.jpg?v=2",
        ];
        for raw in other {
            assert_ne!(key(raw).as_ref(), Ok(&pool), "{raw:?}");
        }
    }

    #[test]
    fn canonical_url_exposes_its_text_and_errors_read_well() {
        let url = canonicalize(
            "HTTPS://IMG.OTA-ONE.example/h100/pool.jpg",
            &Rewrites::none(),
        )
        .expect("valid URL");
        assert_eq!(url.as_str(), "https://img.ota-one.example/h100/pool.jpg");
        assert_eq!(url.to_string(), url.as_str());
        assert_eq!(
            UrlError::SchemeNotAllowed("ftp".into()).to_string(),
            "scheme `ftp` is not allowed: only http and https URLs are accepted"
        );
        assert_eq!(
            canon("/a/b.jpg").map_err(|e| e.to_string()),
            Err("not a URL: relative URL without a base".to_owned())
        );
        assert_eq!(UrlError::NoHost.to_string(), "the URL has no host");
    }

    #[test]
    fn urls_with_credentials_or_non_public_hosts_are_refused() {
        let not_public = |host: &str| Err(UrlError::NotPublicHost(host.to_owned()));
        let cases = [
            (
                "https://user:secret@img.ota-one.example/a.jpg",
                Err(UrlError::Credentials),
            ),
            (
                "https://user@img.ota-one.example/a.jpg",
                Err(UrlError::Credentials),
            ),
            (
                "https://:secret@img.ota-one.example/a.jpg",
                Err(UrlError::Credentials),
            ),
            // IPv4: unspecified, loopback, private, CGNAT, link-local, multicast, broadcast.
            ("http://0.0.0.0/a.jpg", not_public("0.0.0.0")),
            ("http://0.1.2.3/a.jpg", not_public("0.1.2.3")),
            ("http://127.0.0.1/a.jpg", not_public("127.0.0.1")),
            ("http://127.255.0.9:8080/a.jpg", not_public("127.255.0.9")),
            ("http://10.0.0.1/a.jpg", not_public("10.0.0.1")),
            ("http://10.255.255.255/a.jpg", not_public("10.255.255.255")),
            ("http://172.16.0.1/a.jpg", not_public("172.16.0.1")),
            ("http://172.31.255.255/a.jpg", not_public("172.31.255.255")),
            ("http://192.168.0.1/a.jpg", not_public("192.168.0.1")),
            ("http://100.64.0.1/a.jpg", not_public("100.64.0.1")),
            (
                "http://100.127.255.255/a.jpg",
                not_public("100.127.255.255"),
            ),
            (
                "http://169.254.169.254/latest/",
                not_public("169.254.169.254"),
            ),
            ("http://169.254.0.1/a.jpg", not_public("169.254.0.1")),
            ("http://224.0.0.1/a.jpg", not_public("224.0.0.1")),
            (
                "http://239.255.255.250/a.jpg",
                not_public("239.255.255.250"),
            ),
            ("http://240.0.0.1/a.jpg", not_public("240.0.0.1")),
            (
                "http://255.255.255.255/a.jpg",
                not_public("255.255.255.255"),
            ),
            // Other spellings of 127.0.0.1 and 169.254.169.254, as the parser reads them.
            ("http://2130706433/a.jpg", not_public("127.0.0.1")),
            ("http://0x7f.1/a.jpg", not_public("127.0.0.1")),
            (
                "http://0251.0376.0251.0376/a.jpg",
                not_public("169.254.169.254"),
            ),
            // IPv6: unspecified, loopback, unique-local, link-local, site-local, multicast.
            ("http://[::]/a.jpg", not_public("[::]")),
            ("http://[::1]/a.jpg", not_public("[::1]")),
            ("http://[fc00::1]/a.jpg", not_public("[fc00::1]")),
            ("http://[fd12:3456::1]/a.jpg", not_public("[fd12:3456::1]")),
            ("http://[fe80::1]/a.jpg", not_public("[fe80::1]")),
            ("http://[febf::1]/a.jpg", not_public("[febf::1]")),
            ("http://[fec0::1]/a.jpg", not_public("[fec0::1]")),
            ("http://[ff02::1]/a.jpg", not_public("[ff02::1]")),
            // IPv4 inside IPv6: mapped, compatible, NAT64.
            (
                "http://[::ffff:127.0.0.1]/a.jpg",
                not_public("[::ffff:7f00:1]"),
            ),
            (
                "http://[::ffff:169.254.169.254]/a.jpg",
                not_public("[::ffff:a9fe:a9fe]"),
            ),
            (
                "http://[::ffff:10.0.0.1]/a.jpg",
                not_public("[::ffff:a00:1]"),
            ),
            ("http://[::192.168.0.1]/a.jpg", not_public("[::c0a8:1]")),
            (
                "http://[64:ff9b::10.0.0.1]/a.jpg",
                not_public("[64:ff9b::a00:1]"),
            ),
            // Names of the local machine.
            ("http://localhost/a.jpg", not_public("localhost")),
            ("http://LOCALHOST:8080/a.jpg", not_public("localhost")),
            ("http://localhost./a.jpg", not_public("localhost.")),
            (
                "http://media.localhost/a.jpg",
                not_public("media.localhost"),
            ),
            ("http://a.b.localhost./a.jpg", not_public("a.b.localhost.")),
            // Public hosts, some of them next to a refused range.
            ("https://img.ota-one.example/a.jpg", Ok(())),
            ("https://localhost.example/a.jpg", Ok(())),
            ("https://notlocalhost/a.jpg", Ok(())),
            ("http://8.8.8.8/a.jpg", Ok(())),
            ("http://1.0.0.1/a.jpg", Ok(())),
            ("http://11.0.0.1/a.jpg", Ok(())),
            ("http://172.15.255.255/a.jpg", Ok(())),
            ("http://172.32.0.1/a.jpg", Ok(())),
            ("http://192.169.0.1/a.jpg", Ok(())),
            ("http://100.63.255.255/a.jpg", Ok(())),
            ("http://100.128.0.1/a.jpg", Ok(())),
            ("http://169.253.255.255/a.jpg", Ok(())),
            ("http://223.255.255.255/a.jpg", Ok(())),
            ("http://[2001:4860:4860::8888]/a.jpg", Ok(())),
            ("http://[::ffff:8.8.8.8]/a.jpg", Ok(())),
            ("http://[64:ff9b::8.8.8.8]/a.jpg", Ok(())),
            ("http://[fbff::1]/a.jpg", Ok(())),
            ("http://[fe00::1]/a.jpg", Ok(())),
        ];
        for (raw, want) in cases {
            assert_eq!(require_public(raw), want, "{raw:?}");
        }
        assert!(matches!(
            require_public("ftp://img.ota-one.example/a.jpg"),
            Err(UrlError::SchemeNotAllowed(_))
        ));
        // The message names the host, never the password.
        let message = require_public("https://user:secret@img.ota-one.example/a.jpg")
            .map_err(|e| e.to_string());
        assert!(
            matches!(&message, Err(m) if !m.contains("secret") && m.contains("credentials")),
            "{message:?}"
        );
        assert_eq!(
            UrlError::NotPublicHost("127.0.0.1".into()).to_string(),
            "`127.0.0.1` is not a public host: loopback, private, link-local and other internal \
             addresses are refused"
        );
    }
}

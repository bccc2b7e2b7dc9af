//! Fetching partner images safely: partner URLs are untrusted, so a fetch must never reach
//! this service's own network (loopback, private ranges, the cloud metadata service at
//! 169.254.169.254, ...), never run forever, never fill memory, and never hand anyone's
//! credentials along. The processing workers (issue 16) fetch through [`Fetcher`]; a refusal
//! carries one of the stable [`Reason`] codes.
//!
//! # How
//!
//! - **Addresses are checked where connections are made.** The client's DNS resolver
//!   ([`PublicResolver`]) resolves a host name and hands the connector only public addresses
//!   ([`crate::domain::url::is_public_ip`]); a name with none is refused (`BLOCKED_ADDRESS`).
//!   The connector connects to exactly what the resolver returned, so there is no
//!   check-then-connect window for a DNS answer to change in (DNS rebinding). The client
//!   does not call the resolver for a URL whose host is an IP address, so those are checked
//!   before each request.
//! - **Redirects are followed here**, one hop at a time (at most
//!   [`FetchSettings::max_redirects`], then `TOO_MANY_REDIRECTS`): each hop is a new request
//!   whose URL is checked again (scheme, credentials, IP host) and whose host is resolved by
//!   the same resolver.
//! - Only `http` and `https` (anything else is `BLOCKED_ADDRESS`); no proxy (a proxy would
//!   resolve names itself, past the resolver); no cookies, no `Referer`, no `Authorization`:
//!   credentials written in a URL (`user:pass@`) are dropped, not sent.
//! - Time: a connect timeout, a read timeout (between two reads of the body), and a total
//!   timeout over all hops and the body (`TIMEOUT`).
//! - Size: a declared `Content-Length` over [`FetchSettings::max_bytes`] is refused before the
//!   body is read; otherwise the body is streamed and the download aborted as soon as it
//!   passes the limit (`TOO_LARGE`).
//! - A final answer other than 2xx is `HTTP_STATUS`, with the status and, for 429 and 503, the
//!   server's `Retry-After` (in seconds) for the retry schedule.
//!
//! `FETCH_ALLOW_HOSTS` lists host names, as written in URLs (after parsing: `2130706433` is
//! `127.0.0.1`), whose addresses are not checked:
//! for tests and local setups only (with `127.0.0.1` listed, `http://127.0.0.1:8000/a.jpg` is
//! fetched while `http://localhost:8000/a.jpg` is still refused). It is empty by default.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use crate::domain::measure::Reason;
use crate::domain::url::is_public_ip;

/// The limits of a fetch.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// Largest body, in bytes.
    pub max_bytes: usize,
    /// Most redirects followed.
    pub max_redirects: usize,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of an answer.
    pub read_timeout: Duration,
    /// Time for the whole fetch: every hop and the body.
    pub total_timeout: Duration,
    /// Host names, as written in URLs, whose addresses are not checked (tests, local setups).
    pub allow_hosts: Vec<String>,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            max_bytes: 20 * 1024 * 1024,
            max_redirects: 5,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(30),
            allow_hosts: Vec::new(),
        }
    }
}

/// A fetched body.
#[derive(Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// Where the bytes came from, after redirects.
    pub url: Url,
    /// The server's `Content-Type`; only a hint (measuring reads the bytes).
    pub content_type: Option<String>,
}

impl std::fmt::Debug for Fetched {
    // The bytes by their number: a picture printed as a list of numbers helps nobody.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("bytes", &self.bytes.len())
            .field("url", &self.url.as_str())
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    pub reason: Reason,
    pub message: String,
    /// The final status, for `HTTP_STATUS`.
    pub status: Option<u16>,
    /// The server's `Retry-After` of a 429 or 503, when it gave one in seconds.
    pub retry_after: Option<Duration>,
}

impl FetchError {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }
}

/// The HTTP client for untrusted URLs (see the module doc).
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    settings: FetchSettings,
    allowed: Arc<HashSet<String>>,
}

impl Fetcher {
    pub fn new(settings: FetchSettings) -> Result<Self, FetchError> {
        let allowed: Arc<HashSet<String>> = Arc::new(
            settings
                .allow_hosts
                .iter()
                .map(|host| host.trim().to_ascii_lowercase())
                .filter(|host| !host.is_empty())
                .collect(),
        );
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PublicResolver {
                allowed: allowed.clone(),
            }))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .user_agent(concat!("images-subgraph/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::new(Reason::NetworkError, e.to_string()))?;
        Ok(Self {
            client,
            settings,
            allowed,
        })
    }

    /// The largest body fetched, in bytes: the bound of every image's bytes, fetched or not.
    pub fn max_bytes(&self) -> usize {
        self.settings.max_bytes
    }

    /// Fetches `url` (see the module doc for what is refused, and why).
    pub async fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        let url = Url::parse(url)
            .map_err(|e| FetchError::new(Reason::BlockedAddress, format!("not a URL: {e}")))?;
        match tokio::time::timeout(self.settings.total_timeout, self.follow(url)).await {
            Ok(fetched) => fetched,
            Err(_) => Err(FetchError::new(
                Reason::Timeout,
                format!(
                    "the fetch took longer than {:?}",
                    self.settings.total_timeout
                ),
            )),
        }
    }

    /// Requests `url`, following redirects one checked hop at a time, and reads the body.
    async fn follow(&self, mut url: Url) -> Result<Fetched, FetchError> {
        let mut redirects = 0;
        loop {
            self.check(&mut url)?;
            let response = self
                .client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| transport_error(&e))?;
            let status = response.status();
            if status.is_redirection()
                && let Some(location) = response.headers().get(LOCATION)
            {
                if redirects == self.settings.max_redirects {
                    return Err(FetchError::new(
                        Reason::TooManyRedirects,
                        format!("more than {redirects} redirects"),
                    ));
                }
                redirects += 1;
                let location = location.to_str().unwrap_or_default();
                url = url.join(location).map_err(|e| {
                    FetchError::new(Reason::BlockedAddress, format!("a bad redirect: {e}"))
                })?;
                continue;
            }
            if !status.is_success() {
                return Err(status_error(&response));
            }
            return self.read_body(url, response).await;
        }
    }

    /// The checks of a URL that the resolver cannot make: scheme, credentials (dropped) and
    /// a host that is an IP address.
    fn check(&self, url: &mut Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::new(
                Reason::BlockedAddress,
                format!("only http and https are fetched, not {}", url.scheme()),
            ));
        }
        // Never sent: the client would turn them into an `Authorization` header. Setting them
        // empty cannot fail on an http(s) URL.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if self.allowed.contains(&host) {
            return Ok(());
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => {
                return Err(FetchError::new(
                    Reason::BlockedAddress,
                    "the URL has no host",
                ));
            }
        };
        match literal {
            Some(ip) if !is_public_ip(ip) => Err(blocked(&host)),
            _ => Ok(()),
        }
    }

    /// Streams the body, refusing it as soon as it passes the size limit.
    async fn read_body(
        &self,
        url: Url,
        mut response: reqwest::Response,
    ) -> Result<Fetched, FetchError> {
        let max = self.settings.max_bytes;
        let too_large = || FetchError::new(Reason::TooLarge, format!("more than {max} bytes"));
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > max as u64) {
            return Err(too_large());
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut bytes = Vec::with_capacity(declared.map_or(64 * 1024, |l| l as usize));
        while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(&e))? {
            if bytes.len() + chunk.len() > max {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            bytes,
            url,
            content_type,
        })
    }
}

fn blocked(host: &str) -> FetchError {
    FetchError::new(
        Reason::BlockedAddress,
        format!("{host} is not a public address"),
    )
}

/// `HTTP_STATUS`, with `Retry-After` (seconds) of a 429 or 503.
fn status_error(response: &reqwest::Response) -> FetchError {
    let status = response.status();
    let retry_after = matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    )
    .then(|| response.headers().get(RETRY_AFTER))
    .flatten()
    .and_then(|v| v.to_str().ok())
    .and_then(|v| v.trim().parse::<u64>().ok())
    .map(Duration::from_secs);
    FetchError {
        status: Some(status.as_u16()),
        retry_after,
        ..FetchError::new(Reason::HttpStatus, format!("the server answered {status}"))
    }
}

/// The reason of a failed request: the resolver's refusal, a timeout, or the network.
fn transport_error(error: &reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Blocked>() {
            return blocked(&refused.0);
        }
        source = cause.source();
    }
    if error.is_timeout() {
        return FetchError::new(Reason::Timeout, "the server took too long");
    }
    FetchError::new(
        Reason::NetworkError,
        format!("the server could not be reached: {error}"),
    )
}

/// The resolver's refusal: the host resolves to no public address.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to no public address")]
struct Blocked(String);

/// Resolves host names with the system resolver and keeps the public addresses only (every
/// address for a host of `FETCH_ALLOW_HOSTS`); none left is [`Blocked`].
#[derive(Debug)]
struct PublicResolver {
    allowed: Arc<HashSet<String>>,
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed.contains(&name.as_str().to_ascii_lowercase());
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| allowed || is_public_ip(addr.ip()))
                .collect();
            if resolved.is_empty() {
                return Err(Box::new(Blocked(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(resolved.into_iter()) as Addrs)
        })
    }
}

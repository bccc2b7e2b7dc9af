//! How the service reaches Redis, one server or a Redis Cluster, and the names of everything it
//! keeps there. The cache, the persisted queries and the event stream all connect and name
//! their keys through this module; like `secret` and `telemetry` it depends on nothing else in
//! the crate, so any layer may use it.
//!
//! # Targets
//! `REDIS_URL` is `redis://` or `rediss://` for one server, `redis+cluster://host:port,host:port`
//! (or `rediss+cluster://`) for a cluster: the seed nodes, from which the client learns the
//! rest. Against a cluster the redis crate's cluster client routes each command to the node
//! owning its key's slot, follows `MOVED` and `ASK` redirects, and splits an `MGET` over
//! several slots into one `MGET` per slot (sent together, in one round trip per node).
//!
//! # Names, and the hash tags of a cluster
//! Every name starts with `<REDIS_PREFIX>:` and then holds the catalog's identity (a UUID its
//! database drew when the schema was created; see [`Namespace`]). Two catalogs sharing a Redis
//! and a prefix therefore never share a name, and a database created again starts in an empty
//! namespace.
//!
//! A cluster runs a script or a multi-key command only when all its keys are in one slot, and
//! a key's slot comes from its hash tag (the part between the first `{` and the next `}`) when
//! it has one. Only the key groups that a script touches together carry a tag, each group its
//! own, so that a catalog spreads over every shard instead of making one of them hot:
//! - a cache entry and the generation of its stripe (the fill and invalidation scripts):
//!   `{<catalog>:s<stripe>}`, one of 16,384 groups per catalog (the catalog is part of the tag
//!   so that the same hotel of two catalogs does not land in the same slot);
//! - the event stream and its round counter (the publish script): `{<catalog>}`.
//!
//! Persisted queries (`<prefix>:apq:...`, see `cache::persisted`) are not catalog data and
//! need no tag: every command of theirs names one key.
//!
//! The invalidation channel is a classic pub/sub channel: a cluster delivers a `PUBLISH` on any
//! node to the subscribers of every node, so a subscriber listens on one node (a seed node,
//! the next one when it fails; a seed may be a replica, and any node may become one after a
//! failover). A node hands what is published on it to its own subscribers before it answers,
//! but to the other nodes' later: so what must arrive before the publisher goes on (an
//! invalidation, a subscription check's token) is published from every node, masters and
//! replicas ([`Connection::publish_from_every_node`]).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{Client, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// What `REDIS_URL` names: one server or a cluster.
#[derive(Clone)]
pub enum Target {
    Server(Client),
    Cluster {
        client: Box<ClusterClient>,
        /// One client per seed node, for the invalidation subscription.
        seeds: Vec<Client>,
    },
}

/// The schemes of a cluster URL and the scheme of each of its seed nodes.
const CLUSTER_SCHEMES: [(&str, &str); 2] = [
    ("redis+cluster://", "redis://"),
    ("rediss+cluster://", "rediss://"),
];

impl Target {
    /// Parses `url` (see the module doc). Does not connect.
    pub fn parse(url: &str) -> RedisResult<Self> {
        let Some((rest, scheme)) = CLUSTER_SCHEMES
            .iter()
            .find_map(|(cluster, node)| Some((url.strip_prefix(cluster)?, *node)))
        else {
            return Ok(Self::Server(Client::open(url)?));
        };
        let seeds = seed_urls(scheme, rest)?;
        Ok(Self::Cluster {
            client: Box::new(ClusterClientBuilder::new(seeds.clone()).build()?),
            seeds: seeds
                .iter()
                .map(|seed| Client::open(seed.as_str()))
                .collect::<RedisResult<_>>()?,
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }

    /// A connection that connects on first use (so a Redis that is down at start-up only
    /// degrades what uses it) and reconnects by itself; each call is answered within
    /// `timeout`. On one server, `retries` reconnection attempts per call; a cluster client
    /// keeps its own retries, which also follow `MOVED`/`ASK` redirects.
    pub fn connect_lazily(&self, timeout: Duration, retries: usize) -> RedisResult<Connection> {
        match self {
            Self::Server(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(retries)
                    .set_max_delay(Duration::from_millis(200));
                Ok(Connection::Server(ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    config,
                )?))
            }
            Self::Cluster { client, .. } => Ok(Connection::Cluster(
                client.get_pending_async_connection_with_config(cluster_config(timeout)),
            )),
        }
    }

    /// A new connection of its own, connected now (to send something that must not queue
    /// behind the calls of a shared connection).
    pub async fn connect_now(&self, timeout: Duration) -> RedisResult<Connection> {
        match self {
            Self::Server(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                Ok(Connection::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            Self::Cluster { client, .. } => Ok(Connection::Cluster(
                client
                    .get_async_connection_with_config(cluster_config(timeout))
                    .await?,
            )),
        }
    }

    /// The nodes a subscriber may listen on (any one of them hears every `PUBLISH`).
    pub fn subscription_nodes(&self) -> Vec<Client> {
        match self {
            Self::Server(client) => vec![client.clone()],
            Self::Cluster { seeds, .. } => seeds.clone(),
        }
    }
}

fn cluster_config(timeout: Duration) -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
}

/// The seed nodes of a cluster URL's `rest` (after the scheme): `[user:password@]host:port,
/// host:port,...[/?query]`; credentials and query apply to every node.
fn seed_urls(scheme: &str, rest: &str) -> RedisResult<Vec<String>> {
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (format!("{credentials}@"), rest),
        None => (String::new(), rest),
    };
    let (hosts, tail) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let seeds: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| format!("{scheme}{credentials}{host}{tail}"))
        .collect();
    if seeds.is_empty() {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "a cluster URL names its seed nodes: redis+cluster://host:port,host:port",
        )));
    }
    Ok(seeds)
}

/// A connection to one server or to a cluster; clones share it.
#[derive(Clone)]
pub enum Connection {
    /// A reconnecting connection to one server.
    Server(ConnectionManager),
    /// One plain connection to one server.
    Single(redis::aio::MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Server(c) => c.req_packed_command(cmd),
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(c) => c.req_packed_commands(cmd, offset, count),
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(c) => c.get_db(),
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl Connection {
    /// Publishes `message` on `channel` from every node of a cluster, replicas included (from
    /// the one server otherwise) and returns how many nodes published it: a subscriber then receives that
    /// many copies, each after everything its node published before (see the cache's check of
    /// its subscription).
    pub async fn publish_from_every_node(
        &mut self,
        channel: &str,
        message: &str,
    ) -> RedisResult<usize> {
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(channel).arg(message);
        match self {
            Self::Cluster(cluster) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllNodes, None));
                match cluster.route_command(publish, routing).await? {
                    Value::Map(answers) => Ok(answers
                        .iter()
                        .filter(|(_, answer)| !matches!(answer, Value::ServerError(_)))
                        .count()),
                    _ => Ok(1),
                }
            }
            connection => {
                let _: i64 = publish.query_async(connection).await?;
                Ok(1)
            }
        }
    }
}

/// The names of one catalog's things in Redis (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    prefix: String,
    catalog: String,
}

/// Stripes of the cache's generations, and so its hash-tag groups in a cluster.
pub const STRIPES: usize = 16_384;

impl Namespace {
    /// The names of catalog `catalog` under `prefix` (which holds no `{` or `}`: see
    /// [`check_prefix`]).
    pub fn new(prefix: &str, catalog: impl std::fmt::Display) -> Self {
        Self {
            prefix: prefix.to_owned(),
            catalog: catalog.to_string(),
        }
    }

    /// A cache entry (`key`: `h:1`, `i:7`) in the group of its generation stripe.
    pub fn cache_entry(&self, stripe: usize, key: &str) -> String {
        format!("{}:{{{}:s{stripe}}}:{key}", self.prefix, self.catalog)
    }

    /// The generation counter of a stripe, in the same group as the stripe's entries.
    pub fn generation(&self, stripe: usize) -> String {
        format!("{}:{{{}:s{stripe}}}:gen", self.prefix, self.catalog)
    }

    /// The invalidation channel.
    pub fn invalidation_channel(&self) -> String {
        format!("{}:{}:invalidate", self.prefix, self.catalog)
    }

    /// The event stream consumers read.
    pub fn event_stream(&self) -> String {
        format!("{}:{{{}}}:events", self.prefix, self.catalog)
    }

    /// The number of the last round the event stream took, in the stream's group.
    pub fn event_round(&self) -> String {
        format!("{}:{{{}}}:events:round", self.prefix, self.catalog)
    }
}

/// A prefix may not hold `{` or `}`: the first pair would become the hash tag of every key,
/// putting the whole service in one slot of a cluster.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.contains(['{', '}']) {
        return Err(format!(
            "REDIS_PREFIX {prefix:?} holds '{{' or '}}': they would make every key one hash tag"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_their_seed_nodes_with_the_credentials_and_query_of_the_url() {
        assert_eq!(
            seed_urls("redis://", "127.0.0.1:7001,127.0.0.1:7002").unwrap(),
            ["redis://127.0.0.1:7001", "redis://127.0.0.1:7002"]
        );
        assert_eq!(
            seed_urls("rediss://", ":secret@a:6379, b:6379/?protocol=resp3").unwrap(),
            [
                "rediss://:secret@a:6379/?protocol=resp3",
                "rediss://:secret@b:6379/?protocol=resp3"
            ]
        );
        assert!(seed_urls("redis://", "").is_err());
        assert!(
            Target::parse("redis+cluster://h1:1,h2:2")
                .unwrap()
                .is_cluster()
        );
        assert!(!Target::parse("redis://h1:1").unwrap().is_cluster());
    }

    #[test]
    fn only_the_key_groups_of_scripts_share_a_hash_tag() {
        let names = Namespace::new("isg", "c0ffee");
        assert_eq!(names.cache_entry(12, "h:1"), "isg:{c0ffee:s12}:h:1");
        assert_eq!(names.generation(12), "isg:{c0ffee:s12}:gen");
        assert_eq!(names.invalidation_channel(), "isg:c0ffee:invalidate");
        assert_eq!(names.event_stream(), "isg:{c0ffee}:events");
        assert_eq!(names.event_round(), "isg:{c0ffee}:events:round");
        assert!(check_prefix("isg").is_ok());
        assert!(check_prefix("isg{x}").is_err());
    }
}

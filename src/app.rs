//! Start-up: settings → database (migrated, demo-seeded in the embedded mode) → schema →
//! router → listener. [`Application::build`] binds its own listener so that tests can use
//! port 0 and learn the address.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::domain::curation::Rules;
use crate::domain::media::{Cdn, Imgproxy, SizeTable};
use crate::graphql::limits::DocumentLimits;
use crate::graphql::{AppSchema, Introspection, Media, QueryLimits, SchemaDeps, build_schema};
use crate::http::auth::Authenticator;
use crate::http::scan::ScanLimits;
use crate::http::{AppState, Protection, router};
use crate::service::catalog::Catalog;
use crate::service::curation::Curator;
use crate::service::ingest::Ingestor;
use crate::service::manage::Manager;
use crate::store::{StatementCounter, Store, connect};

/// The database and the services built on it: what every command needs.
pub struct Core {
    pub db: DatabaseConnection,
    pub store: Store,
    pub catalog: Catalog,
    pub curator: Curator,
    /// Partner imports (the `import` command).
    pub ingestor: Ingestor,
    /// Statements executed so far (metrics, and the statement-count tests).
    pub statements: StatementCounter,
}

impl Core {
    /// Connects and migrates.
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        let (db, statements) = connect(
            &settings.database_url(),
            settings.database_max_connections,
            Duration::from_millis(settings.database_statement_timeout_ms),
        )
        .await
        .context("cannot connect to the database")?;
        Migrator::up(&db, None)
            .await
            .context("cannot migrate the database")?;
        let store = Store::new(db.clone());
        Ok(Self {
            catalog: Catalog::new(store.clone()),
            curator: Curator::new(store.clone(), curation_rules(settings)),
            ingestor: Ingestor::new(store.clone(), curation_rules(settings)),
            store,
            db,
            statements,
        })
    }
}

pub fn curation_rules(settings: &Settings) -> Rules {
    Rules {
        min_short_side: settings.curation_min_short_side,
        gallery_size: settings.curation_gallery_size,
        ..Rules::default()
    }
}

/// Image URL settings, validated.
pub fn media(settings: &Settings) -> anyhow::Result<Media> {
    let sizes = match settings.image_sizes.as_slice() {
        &[thumbnail, small, medium, large, xlarge] => SizeTable {
            thumbnail,
            small,
            medium,
            large,
            xlarge,
        },
        _ => {
            anyhow::bail!("IMAGE_SIZES needs five pixel sizes: thumbnail,small,medium,large,xlarge")
        }
    };
    let imgproxy = match (&settings.imgproxy_key, &settings.imgproxy_salt) {
        (Some(key), Some(salt)) => Some(
            Imgproxy::from_hex(&settings.imgproxy_url, key.expose(), salt.expose())
                .context("invalid imgproxy key or salt")?,
        ),
        (None, None) => None,
        _ => anyhow::bail!("IMGPROXY_KEY and IMGPROXY_SALT must be set together"),
    };
    Ok(Media {
        cdn: Cdn::new(&settings.cdn_base_url, sizes),
        imgproxy,
    })
}

/// The schema for `settings` (also used by `export-schema`).
pub fn schema(settings: &Settings, catalog: Catalog) -> anyhow::Result<AppSchema> {
    Ok(build_schema(SchemaDeps {
        manager: Manager::new(catalog.store().clone(), curation_rules(settings)),
        ingestor: Ingestor::new(catalog.store().clone(), curation_rules(settings)),
        catalog,
        media: media(settings)?,
        loader_delay: Duration::from_micros(settings.loader_delay_us),
        limits: QueryLimits {
            max_depth: settings.query_max_depth,
            max_complexity: settings.query_max_complexity,
            max_directives: settings.query_max_directives,
            document: DocumentLimits {
                max_aliases: settings.query_max_aliases,
                max_root_fields: settings.query_max_root_fields,
                max_entities: settings.query_max_entities,
                ..DocumentLimits::default()
            },
        },
        introspection: if settings.introspection_for_everyone() {
            Introspection::Everyone
        } else {
            Introspection::AdminsOnly
        },
    }))
}

/// The secret tokens are verified with: configured, or in the embedded default a development
/// secret kept beside the SQLite file (created on first start).
pub fn jwt_secret(settings: &Settings) -> anyhow::Result<Option<Vec<u8>>> {
    if let Some(secret) = &settings.jwt_secret {
        return Ok(Some(secret.expose().as_bytes().to_vec()));
    }
    if !settings.is_embedded() {
        return Ok(None);
    }
    let path = settings.dev_secret_path();
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(Some(existing.trim().as_bytes().to_vec()));
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    std::fs::write(&path, &secret)
        .with_context(|| format!("cannot write the development secret to {}", path.display()))?;
    Ok(Some(secret.into_bytes()))
}

/// A running subgraph: its listener and routes.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    core: Core,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let core = Core::open(settings).await?;
        if settings.seed_demo_enabled() && core.curator.hotel_count().await? == 0 {
            crate::seed::demo(&core)
                .await
                .context("cannot seed the demo catalog")?;
        }
        let state = AppState {
            schema: schema(settings, core.catalog.clone())?,
            catalog: core.catalog.clone(),
            auth: Authenticator::hs256(jwt_secret(settings)?.as_deref()),
            graphiql: settings.graphiql_enabled(),
            protection: Protection {
                body_limit: settings.body_limit_bytes,
                scan: ScanLimits {
                    max_depth: settings.query_max_nesting,
                    max_bytes: settings.query_max_bytes,
                    max_tokens: settings.query_max_tokens,
                },
                max_batch: settings.max_batch,
                request_timeout: Duration::from_millis(settings.request_timeout_ms),
                max_concurrent_requests: settings.max_concurrent_requests,
                router_secret: settings
                    .router_secret
                    .as_ref()
                    .map(|s| s.expose().to_owned()),
            },
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        Ok(Self {
            listener,
            state,
            core,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
            .context("server failed")?;
        self.core
            .db
            .close()
            .await
            .context("cannot close the database pool")?;
        Ok(())
    }
}

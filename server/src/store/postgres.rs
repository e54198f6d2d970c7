//! The shared store: PostgreSQL, so that any number of replicas serve the
//! same backends ([`PgStore`]).
//!
//! Tables (created and migrated by the server, under an advisory lock so
//! replicas starting together do not race):
//! - `cls_backends (name, generation, spec, updated_at)`: one row per
//!   backend; a delete keeps the row with `spec = NULL`, so generations go
//!   on rising when a backend is re-created;
//! - `cls_blobs (sha256, bytes, created_at)`: hooks and uploaded models, by
//!   content, written once;
//! - `cls_replicas (replica_id, heartbeat, started_at)` and
//!   `cls_replica_backends (replica_id, backend, generation, state, error,
//!   updated_at)`: what each replica serves, and that it is alive.
//!
//! A write is one transaction: the blobs, the row (its generation checked
//! against `If-Match` under a row lock), and a `NOTIFY cls_backends` that
//! replicas `LISTEN` to. Notifications only speed things up: replicas also
//! re-read the table periodically and after every reconnect.
//!
//! Every call has a deadline, so a database that hangs (not only one that
//! refuses connections) turns into [`StoreError::Unavailable`] instead of
//! stuck requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::sync::{Mutex, MutexGuard, watch};
use tokio_postgres::{AsyncMessage, Client, Config};

use super::spec::Spec;
use super::{
    BackendStore, Generation, Head, Precondition, ReplicaReport, ReplicaStatus, ServingState,
    StoreError, StoredBackend,
};
use crate::backend::{BackendName, PersistedBackend};
use crate::secret::Secret;

const KIND: &str = "postgres";
/// The channel writers notify and replicas listen on.
const CHANNEL: &str = "cls_backends";
/// How long one store call may take before it counts as unavailable.
const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// Loads and saves move the blobs, which may be large.
const BLOB_CALL_DEADLINE: Duration = Duration::from_secs(60);
/// Connection attempts give up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The listener waits this long between reconnect attempts.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// Unreferenced blobs younger than this are kept: a concurrent write may
/// have stored them and not yet committed the row that refers to them.
const BLOB_GRACE: &str = "1 hour";
/// Key of the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x0063_6c73_5f6d_6967; // "cls_mig"

/// Versioned schema migrations, applied in order, each once.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE cls_backends (
         name text PRIMARY KEY,
         generation bigint NOT NULL CHECK (generation > 0),
         spec jsonb,
         updated_at timestamptz NOT NULL DEFAULT now()
     );
     CREATE TABLE cls_blobs (
         sha256 text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
         bytes bytea NOT NULL,
         created_at timestamptz NOT NULL DEFAULT now()
     );
     CREATE TABLE cls_replicas (
         replica_id text PRIMARY KEY,
         heartbeat timestamptz NOT NULL,
         started_at timestamptz NOT NULL DEFAULT now()
     );
     CREATE TABLE cls_replica_backends (
         replica_id text NOT NULL REFERENCES cls_replicas ON DELETE CASCADE,
         backend text NOT NULL,
         generation bigint NOT NULL,
         state text NOT NULL,
         error text,
         updated_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (replica_id, backend)
     );",
)];

/// Parses a PostgreSQL URL; the message never repeats the URL (it may hold
/// a password).
pub fn parse_url(url: &str) -> Result<Config, String> {
    let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
        // tokio-postgres names the bad part, not the whole URL.
        e.to_string()
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    // A peer that vanished (not one that refused) is noticed by keepalives.
    config.keepalives_idle(Duration::from_secs(10));
    if config.get_application_name().is_none() {
        config.application_name("configurable-ls-backend");
    }
    Ok(config)
}

/// The PostgreSQL store. Cheap to share: one query connection (re-opened
/// when it breaks) and one listening connection, driven by a task.
pub struct PgStore {
    config: Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    client: Mutex<Option<Client>>,
    changes: watch::Receiver<u64>,
    connected: Arc<AtomicBool>,
}

impl PgStore {
    /// Connects, migrates the schema, and starts listening for changes.
    /// Fails if the database cannot be reached now: a replica that never
    /// saw the store has nothing to serve.
    pub async fn connect(url: &Secret) -> Result<Arc<Self>, StoreError> {
        let config = parse_url(url.expose()).map_err(unavailable)?;
        let tls = tls_connector()?;
        let (tx, changes) = watch::channel(0);
        let connected = Arc::new(AtomicBool::new(false));
        let store = Arc::new(Self {
            config,
            tls,
            client: Mutex::new(None),
            changes,
            connected: connected.clone(),
        });
        deadline(store.migrate()).await?;
        tokio::spawn(listen(
            store.config.clone(),
            store.tls.clone(),
            tx,
            connected,
        ));
        Ok(store)
    }

    /// Whether the listening connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The query connection, opened first if there is none or it broke.
    /// Calls take turns on it: store calls are rare (writes, syncs,
    /// reports), never on the request path.
    async fn connection(&self) -> Result<MutexGuard<'_, Option<Client>>, StoreError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(open(&self.config, &self.tls).await?);
        }
        Ok(guard)
    }

    /// Runs `op`, and once more on a new connection if it failed because
    /// the query connection is gone: after a database restart, or an
    /// administrator ending the session, the first call on the old
    /// connection gets the error before the driver notices the close.
    /// Writes are transactions, so the failed run left nothing behind
    /// (unless the connection died while the commit was answered, when the
    /// second run may apply the change twice: generations rise by two).
    async fn once_more_if_disconnected<T, Fut>(&self, op: impl Fn() -> Fut) -> Result<T, StoreError>
    where
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let first = op().await;
        if !matches!(first, Err(StoreError::Unavailable { .. })) || self.still_connected().await {
            return first;
        }
        tracing::info!("the store's connection was lost; retrying on a new one");
        op().await
    }

    /// Whether the query connection answers; if not it is dropped, so the
    /// next call opens a new one.
    async fn still_connected(&self) -> bool {
        let mut guard = self.client.lock().await;
        let alive = match guard.as_ref() {
            Some(client) => !client.is_closed() && client.simple_query("").await.is_ok(),
            None => false,
        };
        if !alive {
            *guard = None;
        }
        alive
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut guard = self.connection().await?;
        let tx = client(&mut guard)?
            .transaction()
            .await
            .map_err(db_unavailable)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(db_unavailable)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS cls_schema_migrations (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(db_unavailable)?;
        let applied: Option<i32> = tx
            .query_one("SELECT max(version) FROM cls_schema_migrations", &[])
            .await
            .map_err(db_unavailable)?
            .get(0);
        let applied = applied.unwrap_or(0);
        let newest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        if applied > newest {
            return Err(unavailable(format!(
                "the database schema is version {applied}, newer than this server's {newest}: run a newer server"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
            tx.batch_execute(sql).await.map_err(db_unavailable)?;
            tx.execute(
                "INSERT INTO cls_schema_migrations (version) VALUES ($1)",
                &[version],
            )
            .await
            .map_err(db_unavailable)?;
            tracing::info!(version, "store schema migrated");
        }
        tx.commit().await.map_err(db_unavailable)
    }

    async fn heads_now(&self) -> Result<Vec<Head>, StoreError> {
        let mut guard = self.connection().await?;
        let rows = client(&mut guard)?
            .query(
                "SELECT name, generation FROM cls_backends WHERE spec IS NOT NULL ORDER BY name",
                &[],
            )
            .await
            .map_err(db_unavailable)?;
        let mut heads = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.get(0);
            match BackendName::new(&name) {
                Ok(name) => heads.push(Head {
                    name,
                    generation: to_generation(row.get(1)),
                }),
                Err(e) => tracing::warn!("ignoring a stored backend with a bad name: {e}"),
            }
        }
        Ok(heads)
    }

    async fn load_now(&self, name: &BackendName) -> Result<Option<StoredBackend>, StoreError> {
        let mut guard = self.connection().await?;
        let client = client(&mut guard)?;
        let row = client
            .query_opt(
                "SELECT generation, spec FROM cls_backends WHERE name = $1 AND spec IS NOT NULL",
                &[&name.as_str()],
            )
            .await
            .map_err(db_unavailable)?;
        let Some(row) = row else { return Ok(None) };
        let generation = to_generation(row.get(0));
        let corrupt = |message: String| StoreError::Corrupt {
            name: name.to_string(),
            message,
        };
        let spec: Spec = serde_json::from_value(row.get(1)).map_err(|e| corrupt(e.to_string()))?;
        if let Some(bad) = spec.invalid_blob() {
            return Err(corrupt(format!("'{bad}' is not a sha256")));
        }
        let wanted: Vec<&str> = spec.blobs().collect();
        let rows = client
            .query(
                "SELECT sha256, bytes FROM cls_blobs WHERE sha256 = ANY($1)",
                &[&wanted],
            )
            .await
            .map_err(db_unavailable)?;
        let mut blobs: HashMap<String, Vec<u8>> =
            rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        let backend = spec
            .into_backend(name.clone(), |sha256| {
                blobs
                    .remove(sha256)
                    .ok_or_else(|| format!("blob {sha256} is missing"))
            })
            .map_err(corrupt)?;
        Ok(Some(StoredBackend {
            backend,
            generation,
        }))
    }

    async fn save_now(
        &self,
        backend: &PersistedBackend,
        expect: Precondition,
    ) -> Result<Generation, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            name: backend.name.to_string(),
            message: e.to_string(),
        };
        let (spec, blobs) = Spec::of(backend).map_err(corrupt)?;
        let spec = serde_json::to_value(&spec).map_err(corrupt)?;
        let name = &backend.name;
        let mut guard = self.connection().await?;
        let tx = client(&mut guard)?
            .transaction()
            .await
            .map_err(db_unavailable)?;
        let current = lock_row(&tx, name).await?;
        expect.check(name, current)?;
        let shas: Vec<&str> = blobs.iter().map(|b| b.sha256.as_str()).collect();
        let present: Vec<String> = tx
            .query(
                "SELECT sha256 FROM cls_blobs WHERE sha256 = ANY($1)",
                &[&shas],
            )
            .await
            .map_err(db_unavailable)?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        for blob in blobs.iter().filter(|b| !present.contains(&b.sha256)) {
            tx.execute(
                "INSERT INTO cls_blobs (sha256, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&blob.sha256, &blob.bytes],
            )
            .await
            .map_err(db_unavailable)?;
        }
        let row = tx
            .query_one(
                "INSERT INTO cls_backends (name, generation, spec) VALUES ($1, 1, $2)
                 ON CONFLICT (name) DO UPDATE
                   SET generation = cls_backends.generation + 1,
                       spec = EXCLUDED.spec, updated_at = now()
                 RETURNING generation",
                &[&name.as_str(), &spec],
            )
            .await
            .map_err(db_unavailable)?;
        let generation = to_generation(row.get(0));
        notify(&tx, name, generation).await?;
        tx.commit().await.map_err(db_unavailable)?;
        Ok(generation)
    }

    async fn delete_now(
        &self,
        name: &BackendName,
        expect: Precondition,
    ) -> Result<bool, StoreError> {
        let mut guard = self.connection().await?;
        let tx = client(&mut guard)?
            .transaction()
            .await
            .map_err(db_unavailable)?;
        let current = lock_row(&tx, name).await?;
        expect.check(name, current)?;
        if current.is_none() {
            return Ok(false);
        }
        let row = tx
            .query_one(
                "UPDATE cls_backends SET spec = NULL, generation = generation + 1,
                   updated_at = now() WHERE name = $1 RETURNING generation",
                &[&name.as_str()],
            )
            .await
            .map_err(db_unavailable)?;
        notify(&tx, name, to_generation(row.get(0))).await?;
        tx.execute(
            &format!(
                "DELETE FROM cls_blobs b WHERE b.created_at < now() - interval '{BLOB_GRACE}'
                   AND NOT EXISTS (SELECT 1 FROM cls_backends s WHERE s.spec IS NOT NULL AND (
                     s.spec->>'post_hook' = b.sha256 OR s.spec->>'pre_hook' = b.sha256
                     OR s.spec->'model_upload'->>'sha256' = b.sha256))"
            ),
            &[],
        )
        .await
        .map_err(db_unavailable)?;
        tx.commit().await.map_err(db_unavailable)?;
        Ok(true)
    }

    async fn report_now(&self, replica: &str, reports: &[ReplicaReport]) -> Result<(), StoreError> {
        let mut guard = self.connection().await?;
        let tx = client(&mut guard)?
            .transaction()
            .await
            .map_err(db_unavailable)?;
        tx.execute(
            "INSERT INTO cls_replicas (replica_id, heartbeat) VALUES ($1, now())
             ON CONFLICT (replica_id) DO UPDATE SET heartbeat = now()",
            &[&replica],
        )
        .await
        .map_err(db_unavailable)?;
        tx.execute(
            "DELETE FROM cls_replica_backends WHERE replica_id = $1",
            &[&replica],
        )
        .await
        .map_err(db_unavailable)?;
        for r in reports {
            tx.execute(
                "INSERT INTO cls_replica_backends (replica_id, backend, generation, state, error)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &replica,
                    &r.backend.as_str(),
                    &to_column(r.generation),
                    &r.state.as_str(),
                    &r.error,
                ],
            )
            .await
            .map_err(db_unavailable)?;
        }
        // Replicas gone for a day are forgotten.
        tx.execute(
            "DELETE FROM cls_replicas WHERE heartbeat < now() - interval '1 day'",
            &[],
        )
        .await
        .map_err(db_unavailable)?;
        tx.commit().await.map_err(db_unavailable)
    }

    async fn replicas_now(&self) -> Result<Vec<ReplicaStatus>, StoreError> {
        let mut guard = self.connection().await?;
        let rows = client(&mut guard)?
            .query(
                "SELECT r.replica_id,
                        extract(epoch FROM now() - r.heartbeat)::float8,
                        b.backend, b.generation, b.state, b.error
                 FROM cls_replicas r
                 LEFT JOIN cls_replica_backends b USING (replica_id)
                 WHERE r.heartbeat > now() - make_interval(secs => $1)
                 ORDER BY r.replica_id, b.backend",
                &[&super::LIVE_WITHIN.as_secs_f64()],
            )
            .await
            .map_err(db_unavailable)?;
        let mut replicas: Vec<ReplicaStatus> = Vec::new();
        for row in rows {
            let replica: String = row.get(0);
            if replicas.last().is_none_or(|r| r.replica != replica) {
                replicas.push(ReplicaStatus {
                    replica: replica.clone(),
                    heartbeat_age_s: row.get(1),
                    backends: Vec::new(),
                });
            }
            let backend: Option<String> = row.get(2);
            let (Some(status), Some(Ok(backend))) = (
                replicas.last_mut(),
                backend.as_deref().map(BackendName::new),
            ) else {
                continue;
            };
            let state: String = row.get(4);
            status.backends.push(ReplicaReport {
                backend,
                generation: to_generation(row.get(3)),
                state: ServingState::parse(&state),
                error: row.get(5),
            });
        }
        Ok(replicas)
    }
}

/// The open connection behind `guard`.
fn client<'g>(guard: &'g mut MutexGuard<'_, Option<Client>>) -> Result<&'g mut Client, StoreError> {
    guard.as_mut().ok_or_else(|| unavailable("no connection"))
}

impl BackendStore for PgStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn heads(&self) -> BoxFuture<'_, Result<Vec<Head>, StoreError>> {
        deadline(self.once_more_if_disconnected(|| self.heads_now())).boxed()
    }

    fn load<'a>(
        &'a self,
        name: &'a BackendName,
    ) -> BoxFuture<'a, Result<Option<StoredBackend>, StoreError>> {
        within(
            BLOB_CALL_DEADLINE,
            self.once_more_if_disconnected(|| self.load_now(name)),
        )
        .boxed()
    }

    fn save<'a>(
        &'a self,
        backend: &'a PersistedBackend,
        expect: Precondition,
    ) -> BoxFuture<'a, Result<Generation, StoreError>> {
        within(
            BLOB_CALL_DEADLINE,
            self.once_more_if_disconnected(move || self.save_now(backend, expect)),
        )
        .boxed()
    }

    fn delete<'a>(
        &'a self,
        name: &'a BackendName,
        expect: Precondition,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        deadline(self.once_more_if_disconnected(move || self.delete_now(name, expect))).boxed()
    }

    fn report<'a>(
        &'a self,
        replica: &'a str,
        reports: &'a [ReplicaReport],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        deadline(self.once_more_if_disconnected(|| self.report_now(replica, reports))).boxed()
    }

    fn replicas(&self) -> BoxFuture<'_, Result<Vec<ReplicaStatus>, StoreError>> {
        deadline(self.once_more_if_disconnected(|| self.replicas_now())).boxed()
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.clone())
    }
}

/// The backend's generation, locking its row until the transaction ends
/// (so a concurrent writer with the same `If-Match` waits, then fails).
/// `None` when absent or deleted.
async fn lock_row(
    tx: &tokio_postgres::Transaction<'_>,
    name: &BackendName,
) -> Result<Option<Generation>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT generation, spec IS NOT NULL FROM cls_backends WHERE name = $1 FOR UPDATE",
            &[&name.as_str()],
        )
        .await
        .map_err(db_unavailable)?;
    Ok(row
        .filter(|r| r.get::<_, bool>(1))
        .map(|r| to_generation(r.get(0))))
}

async fn notify(
    tx: &tokio_postgres::Transaction<'_>,
    name: &BackendName,
    generation: Generation,
) -> Result<(), StoreError> {
    let payload = format!("{name}:{generation}");
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await
        .map_err(db_unavailable)?;
    Ok(())
}

/// Keeps a connection that `LISTEN`s, bumping `tx` on every notification
/// and after every (re)connect, since notifications sent while it was away
/// are lost. Ends when nobody holds a receiver any more.
async fn listen(
    config: Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    tx: watch::Sender<u64>,
    connected: Arc<AtomicBool>,
) {
    let bump = |tx: &watch::Sender<u64>| tx.send_modify(|n| *n = n.wrapping_add(1));
    let mut logged_down = false;
    while !tx.is_closed() {
        let attempt = async {
            let (client, mut connection) = config.connect(tls.clone()).await?;
            let mut messages =
                futures::stream::poll_fn(move |cx| connection.poll_message(cx)).fuse();
            let statement = format!("LISTEN {CHANNEL}");
            {
                let listening = client.batch_execute(&statement).fuse();
                futures::pin_mut!(listening);
                // The connection must be driven while LISTEN runs.
                loop {
                    futures::select! {
                        done = listening => { done?; break; }
                        message = messages.next() => match message {
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return Err(e),
                            None => return Ok(()),
                        },
                    }
                }
            }
            connected.store(true, Ordering::Relaxed);
            if logged_down {
                tracing::info!("backend store reachable again; resyncing");
            }
            logged_down = false;
            bump(&tx);
            while let Some(message) = messages.next().await {
                if let AsyncMessage::Notification(n) = message? {
                    tracing::debug!(change = n.payload(), "store change notified");
                    bump(&tx);
                }
            }
            // The client must live as long as the connection is read.
            drop(client);
            Ok::<(), tokio_postgres::Error>(())
        };
        let outcome = attempt.await;
        connected.store(false, Ordering::Relaxed);
        if !logged_down {
            let why = match outcome {
                Err(e) => e.to_string(),
                Ok(()) => "connection closed".to_owned(),
            };
            tracing::warn!(
                "backend store unreachable ({why}); serving the last known configuration and retrying"
            );
            logged_down = true;
        }
        tokio::time::sleep(RECONNECT_EVERY).await;
    }
}

async fn open(
    config: &Config,
    tls: &tokio_postgres_rustls::MakeRustlsConnect,
) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(tls.clone()).await.map_err(db_unavailable)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("store connection ended: {e}");
        }
    });
    Ok(client)
}

/// TLS with the Mozilla roots, used when the URL's `sslmode` asks for it
/// (`prefer`, the default, falls back to plain when the server has no TLS).
fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| unavailable(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

async fn deadline<T>(
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    within(CALL_DEADLINE, call).await
}

/// `call`, or [`StoreError::Unavailable`] if it takes longer than `limit`.
async fn within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(unavailable("no answer in time")))
}

/// A driver error as [`StoreError::Unavailable`], with the server's own
/// words when it sent some (the driver's message alone is "db error").
fn db_unavailable(e: tokio_postgres::Error) -> StoreError {
    match std::error::Error::source(&e) {
        Some(cause) => unavailable(format!("{e}: {cause}")),
        None => unavailable(e),
    }
}

fn unavailable(e: impl ToString) -> StoreError {
    StoreError::Unavailable {
        store: KIND,
        message: e.to_string(),
    }
}

fn to_generation(column: i64) -> Generation {
    Generation::new(u64::try_from(column).unwrap_or(0))
}

fn to_column(generation: Generation) -> i64 {
    i64::try_from(generation.get()).unwrap_or(i64::MAX)
}

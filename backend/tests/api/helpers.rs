//! The test harness: `spawn_app()` -> `TestApp` with typed helpers.

use std::time::Duration;

use actix_web::dev::ServerHandle;
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{json, Value};
use simmer::config::{ConfigArgs, Secret};
use simmer::state::AppState;
use simmer::{Application, Settings};
use simmer_testkit::rest;
use uuid::Uuid;

/// A signing secret the tests know, so they can forge and expire tokens.
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub handle: ServerHandle,
    pub database_url: String,
    pub data_dir: std::path::PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// A response read whole: status, headers of interest and JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts a problem+json error with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(
            self.content_type, "application/problem+json",
            "body: {}",
            self.body
        );
        assert_eq!(self.body["code"], code, "body: {}", self.body);
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string());
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(self.body["type"]
            .as_str()
            .is_some_and(|t| t.ends_with(code)));
    }
}

fn test_database_kind() -> String {
    std::env::var("SIMMER_TEST_DATABASE").unwrap_or_else(|_| "sqlite".into())
}

/// A fresh PostgreSQL database on the server of SIMMER_TEST_POSTGRES_URL.
async fn fresh_postgres_database() -> String {
    let admin = std::env::var("SIMMER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("simmer_t_{}", Uuid::new_v4().simple());
    let conn = Database::connect(&admin)
        .await
        .expect("connect to PostgreSQL (SIMMER_TEST_POSTGRES_URL)");
    conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    conn.close().await.ok();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

/// Settings for a test app in `data_dir` on `database_url`.
pub fn test_settings(data_dir: &std::path::Path, database_url: &str) -> Settings {
    Settings::resolve(ConfigArgs {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(data_dir.to_path_buf()),
        database_url: Some(Secret::new(database_url)),
        jwt_secret: Some(Secret::new(TEST_JWT_SECRET)),
        workers: Some(2),
        db_max_connections: Some(5),
        shutdown_timeout_s: Some(1),
        // The suite runs with the crate's viewer path when
        // SIMMER_MEDIA_EDGE=false (the server's own setting).
        media_edge: std::env::var("SIMMER_MEDIA_EDGE")
            .ok()
            .map(|v| v == "true" || v == "1"),
        ..ConfigArgs::default()
    })
    .unwrap()
}

/// Boots the app on port 0 with its own database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like `spawn_app`, with settings changed first.
pub async fn spawn_app_with(change: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        simmer::telemetry::init(simmer::config::LogFormat::Text);
    }
    let tmp = tempfile::tempdir().unwrap();
    let database_url = if test_database_kind() == "postgres" {
        fresh_postgres_database().await
    } else {
        simmer::config::sqlite_url(&tmp.path().join("simmer.db"))
    };
    let data_dir = tmp.path().to_path_buf();
    let mut settings = test_settings(&data_dir, &database_url);
    change(&mut settings);
    let mut app = boot(settings).await;
    app._tmp = Some(tmp);
    app
}

/// Boots an app with exactly these settings (e.g. a restart on the same
/// database).
pub async fn boot(settings: Settings) -> TestApp {
    let database_url = settings.database_url.expose().to_owned();
    let data_dir = settings.data_dir.clone();
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let handle = app.handle();
    actix_rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        state,
        handle,
        database_url,
        data_dir,
        _tmp: None,
    }
}

/// Another node's take-over of `session` (its fence raised), held open in
/// a connection of its own until the transaction is committed: a chat write
/// of the session waits for it, then finds the fence moved.
pub async fn take_over_held(database_url: &str, session: Uuid) -> sea_orm::DatabaseTransaction {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
    use simmer_entity::session;
    let other = Database::connect(database_url)
        .await
        .expect("second connection");
    let take_over = other.begin().await.expect("transaction");
    let raised = session::Entity::update_many()
        .col_expr(
            session::Column::Fence,
            Expr::col(session::Column::Fence).add(1),
        )
        .filter(session::Column::Id.eq(session))
        .exec(&take_over)
        .await
        .expect("fence raised");
    assert_eq!(raised.rows_affected, 1);
    take_over
}

/// A unique username.
pub fn username() -> String {
    format!("u{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// A recipe body with `n` steps.
pub fn recipe_body(title: &str, n: usize) -> Value {
    let steps: Vec<Value> = (0..n)
        .map(|i| json!({"text": format!("Step {i}"), "duration_s": 60 * (i + 1), "label": format!("s{i}")}))
        .collect();
    json!({"title": title, "description": "A test recipe", "servings": 2, "steps": steps})
}

/// A signed-in user (the test kit's account, as `simmer-bench` has it too).
pub use simmer_testkit::rest::Account as User;

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Sends a request and reads the reply (JSON body, or `Null`).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        read(req.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.request(Method::POST, path, token, Some(body)).await
    }

    /// Registers a new user and returns its tokens.
    pub async fn register(&self) -> User {
        rest::register(
            &self.client,
            &self.address,
            &username(),
            "correct horse battery",
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Creates a recipe with `steps` steps; returns its id.
    pub async fn create_recipe(&self, user: &User, steps: usize) -> Uuid {
        rest::create_recipe(
            &self.client,
            &self.address,
            &user.token,
            recipe_body("Soup", steps),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Creates a scheduled session hosted by `host`; returns its id.
    pub async fn create_session(&self, host: &User) -> Uuid {
        let recipe = self.create_recipe(host, 3).await;
        rest::create_session(
            &self.client,
            &self.address,
            &host.token,
            recipe,
            "Cooking live",
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Creates and starts a session; returns its id.
    pub async fn live_session(&self, host: &User) -> Uuid {
        let id = self.create_session(host).await;
        rest::start_session(&self.client, &self.address, &host.token, id)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        id
    }
}

/// A paired watch.
#[derive(Debug, Clone)]
pub struct PairedWatch {
    pub device_id: Uuid,
    pub token: String,
}

impl TestApp {
    /// Pairs a new watch to `session` on behalf of `user`, the way a watch and
    /// a phone do it.
    pub async fn pair_watch(&self, user: &User, session: Uuid, tick: Option<u32>) -> PairedWatch {
        let mut body = json!({"device_name": "Test watch"});
        if let Some(tick) = tick {
            body["tick_interval_s"] = json!(tick);
        }
        let pairing = self.post("/api/v1/watch/pairings", None, &body).await;
        assert_eq!(pairing.status, 201, "{}", pairing.body);
        let claimed = self
            .post(
                "/api/v1/watch/pairings/claim",
                Some(&user.token),
                &json!({"code": pairing.body["code"], "session_id": session}),
            )
            .await;
        assert_eq!(claimed.status, 200, "{}", claimed.body);
        let polled = self.poll_pairing(&pairing.body).await;
        assert_eq!(polled.body["status"], "claimed", "{}", polled.body);
        PairedWatch {
            device_id: polled.body["device_id"].as_str().unwrap().parse().unwrap(),
            token: polled.body["device_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Polls a pairing (the body `POST /watch/pairings` answered) as its watch.
    pub async fn poll_pairing(&self, pairing: &Value) -> Reply {
        let resp = self
            .client
            .get(self.url(&format!(
                "/api/v1/watch/pairings/{}",
                pairing["pairing_id"].as_str().unwrap()
            )))
            .header("X-Poll-Secret", pairing["poll_secret"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        read(resp).await
    }
}

/// Reads a response whole.
pub async fn read(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.expect("body read");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Reply {
        status,
        content_type,
        headers,
        body,
    }
}

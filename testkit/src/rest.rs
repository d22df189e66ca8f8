//! Setting up over REST what a test or a benchmark needs: accounts,
//! recipes, live sessions, guest tokens (cheap: no password hashing per
//! viewer). Each call checks the status the API documents for it.

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

/// A signed-in account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Its user id.
    pub id: Uuid,
    /// The name it registered with.
    pub username: String,
    /// Its access token.
    pub token: String,
    /// Its refresh token.
    pub refresh_token: String,
}

/// A live session ready for load, and its host's token.
#[derive(Debug, Clone)]
pub struct Scene {
    /// The live session.
    pub session_id: Uuid,
    /// The host's access token.
    pub host_token: String,
}

/// POSTs JSON; the answer's JSON (`Null` if it is not JSON), or an error
/// naming the status if it is not a success.
pub async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let (status, body) = post_for_status(client, &url, token, &body).await?;
    anyhow::ensure!(status.is_success(), "POST {url}: {status} {body}");
    Ok(body)
}

/// POSTs JSON and expects exactly `expected`; the answer's JSON.
async fn post_expecting(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
    expected: StatusCode,
) -> anyhow::Result<Value> {
    let (status, body) = post_for_status(client, &url, token, &body).await?;
    anyhow::ensure!(status == expected, "POST {url}: {status} {body}");
    Ok(body)
}

async fn post_for_status(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut req = client.post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// The id a created resource's JSON names (`id`, or `pointer` such as
/// `/user/id`).
fn id_at(body: &Value, pointer: &str) -> anyhow::Result<Uuid> {
    let id = body
        .pointer(pointer)
        .and_then(Value::as_str)
        .with_context(|| format!("no {pointer} in {body}"))?;
    id.parse().with_context(|| format!("{pointer} {id:?}"))
}

/// The string field `name` of `body`.
fn string_at(body: &Value, name: &str) -> anyhow::Result<String> {
    Ok(body[name]
        .as_str()
        .with_context(|| format!("no {name} in {body}"))?
        .to_owned())
}

/// Registers `username` at the server at `base` (201 expected).
pub async fn register(
    http: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<Account> {
    let body = post_expecting(
        http,
        format!("{base}/api/v1/auth/register"),
        None,
        json!({"username": username, "password": password}),
        StatusCode::CREATED,
    )
    .await?;
    Ok(Account {
        id: id_at(&body, "/user/id")?,
        username: username.to_owned(),
        token: string_at(&body, "access_token")?,
        refresh_token: string_at(&body, "refresh_token")?,
    })
}

/// Creates the recipe `recipe` (its JSON body) as the holder of `token`
/// (201 expected); its id.
pub async fn create_recipe(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    recipe: Value,
) -> anyhow::Result<Uuid> {
    let body = post_expecting(
        http,
        format!("{base}/api/v1/recipes"),
        Some(token),
        recipe,
        StatusCode::CREATED,
    )
    .await?;
    id_at(&body, "/id")
}

/// Schedules a session of `recipe` called `title`, hosted by the holder of
/// `token` (201 expected); its id.
pub async fn create_session(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    recipe: Uuid,
    title: &str,
) -> anyhow::Result<Uuid> {
    let body = post_expecting(
        http,
        format!("{base}/api/v1/sessions"),
        Some(token),
        json!({"recipe_id": recipe, "title": title}),
        StatusCode::CREATED,
    )
    .await?;
    id_at(&body, "/id")
}

/// Starts (goes live with) `session` as its host (200 expected).
pub async fn start_session(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    session: Uuid,
) -> anyhow::Result<()> {
    post_expecting(
        http,
        format!("{base}/api/v1/sessions/{session}/start"),
        Some(token),
        json!({}),
        StatusCode::OK,
    )
    .await?;
    Ok(())
}

/// Registers a new host and starts a session of a one-step recipe.
pub async fn live_session(http: &reqwest::Client, base: &str) -> anyhow::Result<Scene> {
    let name = format!("bench{}", &Uuid::new_v4().simple().to_string()[..10]);
    let host = register(http, base, &name, "bench-password").await?;
    let recipe = create_recipe(
        http,
        base,
        &host.token,
        json!({"title": "Bench soup", "steps": [{"text": "Stir", "duration_s": 60}]}),
    )
    .await?;
    let session_id = create_session(http, base, &host.token, recipe, "Bench").await?;
    start_session(http, base, &host.token, session_id).await?;
    Ok(Scene {
        session_id,
        host_token: host.token,
    })
}

/// A guest token for one viewer of `session`, shown as `name`.
pub async fn guest_token(
    http: &reqwest::Client,
    base: &str,
    session: Uuid,
    name: &str,
) -> anyhow::Result<String> {
    let body = post(
        http,
        format!("{base}/api/v1/sessions/{session}/guest-tokens"),
        None,
        json!({"display_name": name}),
    )
    .await?;
    Ok(body["access_token"]
        .as_str()
        .context("guest token")?
        .to_owned())
}

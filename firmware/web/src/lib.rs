//! The technician's status page, served by cnaptd on CBoxIP (the PAN side;
//! never on an uplink): uplink cards with signal bars and quality, the
//! active path, live updates (server-sent events), the handover history,
//! and buttons — force a switch, manual/automatic, approve or decline a
//! suggestion, open pairing — behind the admin PIN from the configuration.
//! Plain HTML, CSS and JavaScript embedded in the binary (`assets/`), no
//! build step; it reads and commands the box through the same control
//! calls as `cboxctl`.

mod auth;
pub mod qos;
mod server;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use control::{Call, Reply, Request};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

pub use auth::{Auth, LOCKOUT, MAX_FAILURES, Refusal, pin_matches};
pub use daemon::accept::AcceptStats;
pub use server::Limits;

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const COOKIE: &str = "cbox_session";

/// Where and for whom.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Address on the PAN side (CBoxIP) and port.
    pub listen: SocketAddr,
    /// The admin PIN.
    pub pin: String,
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// The box's path notices (`/qos`, `/qos/events`), if it has
    /// `qos_notify` services.
    pub qos: Option<QosPage>,
}

/// What the page needs to serve the path notices.
#[derive(Debug, Clone)]
pub struct QosPage {
    /// The box's hub.
    pub hub: qos_notify::Hub,
    /// The box's id.
    pub box_id: String,
    /// Its services with `qos_notify = true`.
    pub services: Vec<String>,
}

struct App {
    calls: mpsc::UnboundedSender<Call>,
    auth: Mutex<Auth>,
}

type Shared = Arc<App>;

async fn ask(app: &App, req: Request) -> Reply {
    let (tx, rx) = oneshot::channel();
    if app.calls.send((req, tx)).is_err() {
        return Reply::err("cnaptd is stopping");
    }
    match tokio::time::timeout(Duration::from_secs(45), rx).await {
        Ok(Ok(r)) => r,
        _ => Reply::err("cnaptd did not answer"),
    }
}

fn token() -> Option<String> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(String::from)
        })
}

fn authed(app: &App, headers: &HeaderMap) -> bool {
    let Some(t) = session(headers) else {
        return false;
    };
    app.auth
        .lock()
        .map(|a| a.valid(&t, Instant::now()))
        .unwrap_or(false)
}

fn error(code: StatusCode, why: impl Into<String>) -> Response {
    (code, Json(json!({ "ok": false, "error": why.into() }))).into_response()
}

fn reply(r: Reply) -> Response {
    let code = if r.ok {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    (
        code,
        Json(json!({ "ok": r.ok, "error": r.error, "data": r.data })),
    )
        .into_response()
}

/// POSTs must be JSON: a cross-site form cannot send that without the
/// browser asking first (with the SameSite=Strict cookie, CSRF is out).
fn json_post(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    let mut r = asset("text/html; charset=utf-8", INDEX);
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    r
}

#[derive(Deserialize)]
struct Login {
    pin: String,
}

async fn login(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !json_post(&headers) {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send JSON");
    }
    let Ok(l) = serde_json::from_slice::<Login>(&body) else {
        return error(StatusCode::BAD_REQUEST, "expected {\"pin\": \"…\"}");
    };
    let Some(t) = token() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "no randomness");
    };
    let r = match app.auth.lock() {
        Ok(mut a) => a.login(peer.ip(), &l.pin, t.clone(), Instant::now()),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "auth state poisoned"),
    };
    match r {
        Ok(()) => {
            info!(from = %peer.ip(), "status page: login");
            let cookie = format!("{COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/");
            let mut resp = Json(json!({ "ok": true })).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(Refusal::WrongPin) => {
            warn!(from = %peer.ip(), "status page: wrong PIN");
            error(StatusCode::UNAUTHORIZED, "wrong PIN")
        }
        Err(Refusal::Locked(d)) => {
            warn!(from = %peer.ip(), "status page: locked out after wrong PINs");
            error(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many wrong PINs; try again in {} s", d.as_secs().max(1)),
            )
        }
    }
}

async fn logout(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if let (Some(t), Ok(mut a)) = (session(&headers), app.auth.lock()) {
        a.logout(&t);
    }
    Json(json!({ "ok": true })).into_response()
}

async fn status(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if !authed(&app, &headers) {
        return error(StatusCode::UNAUTHORIZED, "log in with the admin PIN");
    }
    reply(ask(&app, Request::Status).await)
}

/// The QR code phones join the box's Wi-Fi access point from (behind the
/// PIN, never cached: it carries the passphrase).
async fn wifi_qr(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if !authed(&app, &headers) {
        return error(StatusCode::UNAUTHORIZED, "log in with the admin PIN");
    }
    let r = ask(&app, Request::PanWifi).await;
    if !r.ok {
        return error(
            StatusCode::NOT_FOUND,
            r.error.unwrap_or_else(|| "no access point".into()),
        );
    }
    let Some(uri) = r.data["uri"].as_str() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "no join code");
    };
    match pairing::join_code::svg(uri, 240) {
        Ok(svg) => {
            let mut resp = svg.into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn stream(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if !authed(&app, &headers) {
        return error(StatusCode::UNAUTHORIZED, "log in with the admin PIN");
    }
    let token = session(&headers).unwrap_or_default();
    let events = futures_util::stream::unfold(
        (app, String::new(), token),
        |(app, last, token)| async move {
            loop {
                let alive = app
                    .auth
                    .lock()
                    .map(|a| a.valid(&token, Instant::now()))
                    .unwrap_or(false);
                if !alive {
                    return None;
                }
                let r = ask(&app, Request::Status).await;
                let text = if r.ok {
                    r.data.to_string()
                } else {
                    String::new()
                };
                if !text.is_empty() && text != last {
                    let ev = Event::default().event("status").data(text.clone());
                    return Some((Ok::<_, Infallible>(ev), (app, text, token)));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[derive(Deserialize)]
struct Action {
    #[serde(default)]
    uplink: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    seconds: Option<u32>,
    #[serde(default)]
    yes: Option<bool>,
}

async fn action(
    app: Shared,
    headers: HeaderMap,
    body: axum::body::Bytes,
    make: fn(Action) -> Result<Request, &'static str>,
) -> Response {
    if !authed(&app, &headers) {
        return error(StatusCode::UNAUTHORIZED, "log in with the admin PIN");
    }
    if !json_post(&headers) {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send JSON");
    }
    let a: Action = match serde_json::from_slice(if body.is_empty() { b"{}" } else { &body }) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request: {e}")),
    };
    match make(a) {
        Ok(req) => {
            info!(request = ?req, "status page action");
            reply(ask(&app, req).await)
        }
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

/// A POST route acting on the box through `make`'s request.
fn act(make: fn(Action) -> Result<Request, &'static str>) -> axum::routing::MethodRouter<Shared> {
    post(move |State(a): State<Shared>, h: HeaderMap, b: axum::body::Bytes| action(a, h, b, make))
}

/// The page's routes.
pub fn router(calls: mpsc::UnboundedSender<Call>, pin: String, ttl: Duration) -> Router {
    let app: Shared = Arc::new(App {
        calls,
        auth: Mutex::new(Auth::new(pin, ttl)),
    });
    Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/status", get(status))
        .route("/api/stream", get(stream))
        .route("/api/wifi-qr.svg", get(wifi_qr))
        .route(
            "/api/switch",
            act(|x| {
                x.uplink
                    .map(|uplink| Request::Switch { uplink })
                    .ok_or("which uplink?")
            }),
        )
        .route(
            "/api/mode",
            act(|x| {
                x.mode
                    .map(|mode| Request::Mode { mode })
                    .ok_or("which mode?")
            }),
        )
        .route("/api/approve", act(|_| Ok(Request::Approve)))
        .route("/api/decline", act(|_| Ok(Request::Decline)))
        .route(
            "/api/pair",
            act(|x| Ok(Request::PanPair { seconds: x.seconds })),
        )
        .route("/api/pair/close", act(|_| Ok(Request::PanClose)))
        .route(
            "/api/pair/confirm",
            act(|x| {
                x.yes
                    .map(|yes| Request::PanConfirm { yes })
                    .ok_or("yes: true or false?")
            }),
        )
        .with_state(app)
}

/// Serves the page for ever (an error only if it cannot listen), with the
/// connection limits and header deadline of [`Limits::default`].
pub async fn serve(cfg: WebConfig, calls: mpsc::UnboundedSender<Call>) -> std::io::Result<()> {
    serve_with(cfg, calls, Limits::default(), AcceptStats::default()).await
}

/// As [`serve`], with explicit limits; `stats` counts accept errors and
/// connections refused over a limit.
pub async fn serve_with(
    cfg: WebConfig,
    calls: mpsc::UnboundedSender<Call>,
    limits: Limits,
    stats: AcceptStats,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    info!(listen = %cfg.listen, total = limits.total, per_client = limits.per_client, "status page");
    let mut app = router(calls, cfg.pin, cfg.session_ttl);
    if let Some(q) = cfg.qos {
        app = app.merge(qos::routes(q.hub, q.box_id, q.services));
    }
    server::run(listener, app, limits, stats).await;
    Ok(())
}

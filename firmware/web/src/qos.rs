//! The path notices on the page, for the PAN's applications (no PIN: they
//! say nothing a phone on the PAN could not measure itself): `GET /qos`,
//! the latest notice as JSON, and `GET /qos/events[?service=NAME]`, every
//! notice as a server-sent event (`event: path`, `id:` its `seq`, `data:`
//! its JSON), the latest first. A subscriber that reads too slowly loses
//! the oldest notices; the next one's `dropped` says how many.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use qos_notify::{Filter, Hub};

use crate::error;

/// The `service` parameter of a query string, if given (service names
/// need no percent-decoding: letters, digits, `-`, `_`, `.`).
fn service_param(uri: &Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("service="))
        .map(str::to_owned)
}

/// The notice routes of box `box_id`, whose `services` have
/// `qos_notify = true`.
pub fn routes(hub: Hub, box_id: String, services: Vec<String>) -> Router {
    let latest = {
        let hub = hub.clone();
        move || {
            let hub = hub.clone();
            let box_id = box_id.clone();
            async move {
                match hub.latest(&box_id) {
                    Some(n) => axum::Json(n).into_response(),
                    None => error(StatusCode::NOT_FOUND, "no path notice yet (no session)"),
                }
            }
        }
    };
    let events = move |uri: Uri| {
        let hub = hub.clone();
        let services = services.clone();
        async move { events(hub, &services, service_param(&uri)) }
    };
    Router::new()
        .route("/qos", get(latest))
        .route("/qos/events", get(events))
}

fn events(hub: Hub, services: &[String], service: Option<String>) -> Response {
    if let Some(s) = &service
        && !services.contains(s)
    {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "service {s:?} has no qos_notify = true (these have: {})",
                services.join(", ")
            ),
        );
    }
    let sub = hub.subscribe(Filter {
        box_id: None,
        service,
    });
    let stream = futures_util::stream::unfold(sub, |mut sub| async move {
        let n = sub.next().await?;
        let data = serde_json::to_string(&n).unwrap_or_default();
        let ev = Event::default()
            .event("path")
            .id(n.seq.to_string())
            .data(data);
        Some((Ok::<_, Infallible>(ev), sub))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

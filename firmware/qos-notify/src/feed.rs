//! The relay's subscription feed for servers: a server connects (TCP or a
//! Unix socket), sends one JSON line naming the box (or `*`) and a service
//! with `qos_notify = true`, and then reads one JSON notice per line for as
//! long as it stays. Bounded: subscribers at once, the request's size and
//! time, each write's time (a subscriber that stops reading is cut, one
//! that reads slowly loses the oldest notices, counted in `dropped`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use daemon::accept::{AcceptStats, accept_loop};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tracing::{debug, info, warn};

use crate::hub::{Filter, Hub};
use crate::notice::Notice;

/// Time a subscriber has to send its request.
pub const REQUEST_TIME: Duration = Duration::from_secs(5);
/// The longest request line.
pub const REQUEST_MAX: u64 = 1024;
/// Time one notice may take to be written before the subscriber is cut.
pub const WRITE_TIME: Duration = Duration::from_secs(10);

/// A subscription request, one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The box id, or `*` for every box.
    #[serde(rename = "box")]
    pub box_id: String,
    /// A service with `qos_notify = true`.
    pub service: String,
}

/// Where the feed listens.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix socket.
    Unix(UnixListener),
}

/// What the feed serves.
#[derive(Debug, Clone)]
pub struct Feed {
    hub: Hub,
    services: Arc<Vec<String>>,
    max: usize,
    open: Arc<AtomicUsize>,
}

impl Feed {
    /// A feed of `hub`'s notices for `services`, at most `max` subscribers
    /// at once.
    pub fn new(hub: Hub, services: Vec<String>, max: usize) -> Self {
        Self {
            hub,
            services: Arc::new(services),
            max,
            open: Arc::default(),
        }
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Serves `listener` for ever; `stats` counts accept errors and
    /// subscribers refused over the limit.
    pub async fn serve(self, listener: Listener, stats: AcceptStats) {
        match listener {
            Listener::Tcp(l) => {
                let counts = stats.clone();
                accept_loop(l, "qos feed", stats, move |(s, peer): (TcpStream, _)| {
                    let _ = s.set_nodelay(true);
                    debug!(%peer, "qos subscriber");
                    self.spawn(s, &counts);
                    true
                })
                .await
            }
            Listener::Unix(l) => {
                let counts = stats.clone();
                accept_loop(l, "qos feed", stats, move |s| {
                    self.spawn(s, &counts);
                    true
                })
                .await
            }
        }
    }

    fn spawn<S>(&self, s: S, stats: &AcceptStats)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let feed = self.clone();
        let over = feed.open.fetch_add(1, Ordering::Relaxed) >= feed.max;
        if over {
            let n = stats.refuse();
            if n.is_power_of_two() {
                warn!(
                    max = feed.max,
                    refused = n,
                    "qos feed: subscriber over the limit refused"
                );
            }
        }
        tokio::spawn(async move {
            let why = format!("too many subscribers (at most {})", feed.max);
            let r = if over {
                refuse(s, &why).await
            } else {
                feed.subscriber(s).await
            };
            feed.open.fetch_sub(1, Ordering::Relaxed);
            if let Err(e) = r {
                debug!(error = %e, "qos subscriber gone");
            }
        });
    }

    /// What `line` asks for, or why it cannot have it.
    pub fn check(&self, line: &str) -> Result<Filter, String> {
        let r: Request = serde_json::from_str(line.trim()).map_err(|e| {
            format!("bad request ({e}); send {{\"box\":\"ID or *\",\"service\":\"NAME\"}}")
        })?;
        if !self.services.contains(&r.service) {
            return Err(if self.services.is_empty() {
                "no service of this relay has qos_notify = true".to_owned()
            } else {
                format!(
                    "service {:?} has no qos_notify = true (these have: {})",
                    r.service,
                    self.services.join(", ")
                )
            });
        }
        let box_id = match r.box_id.as_str() {
            "*" => None,
            b => Some(
                wire::BoxId::new(b)
                    .map_err(|e| format!("bad box id: {e}"))?
                    .as_str()
                    .to_owned(),
            ),
        };
        Ok(Filter {
            box_id,
            service: Some(r.service),
        })
    }

    async fn subscriber<S>(&self, s: S) -> std::io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (rd, mut wr) = tokio::io::split(s);
        let mut rd = BufReader::new(rd.take(REQUEST_MAX));
        let mut line = String::new();
        match tokio::time::timeout(REQUEST_TIME, rd.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 && line.ends_with('\n') => {}
            Ok(Ok(_)) => {
                return write_line(
                    &mut wr,
                    &error(&format!(
                        "send one JSON line of at most {REQUEST_MAX} bytes"
                    )),
                )
                .await;
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return write_line(&mut wr, &error("no request within 5 s")).await,
        }
        let filter = match self.check(&line) {
            Ok(f) => f,
            Err(why) => return write_line(&mut wr, &error(&why)).await,
        };
        info!(box_id = ?filter.box_id, service = ?filter.service, "qos subscription");
        let ok = json!({"ok": true, "box": filter.box_id.clone().unwrap_or_else(|| "*".into()), "service": filter.service});
        write_line(&mut wr, &ok.to_string()).await?;
        let mut sub = self.hub.subscribe(filter);
        let mut rest = rd.into_inner().into_inner();
        let mut sink = [0u8; 256];
        loop {
            tokio::select! {
                n = sub.next() => {
                    let Some(n) = n else { return Ok(()) };
                    write_line(&mut wr, &notice_line(&n)).await?;
                }
                r = rest.read(&mut sink) => {
                    // The subscriber closed (or sent more, which is ignored).
                    if matches!(r, Ok(0) | Err(_)) {
                        return Ok(());
                    }
                }
            }
        }
    }
}

fn error(why: &str) -> String {
    json!({"ok": false, "error": why}).to_string()
}

fn notice_line(n: &Notice) -> String {
    serde_json::to_string(n).unwrap_or_default()
}

async fn refuse<S: AsyncWrite + Unpin>(mut s: S, why: &str) -> std::io::Result<()> {
    write_line(&mut s, &error(why)).await
}

async fn write_line<W: AsyncWrite + Unpin>(w: &mut W, line: &str) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    match tokio::time::timeout(WRITE_TIME, w.write_all(&buf)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "subscriber stopped reading",
        )),
    }
}

/// A server's side of the feed (for Rust servers and the tests).
#[derive(Debug)]
pub struct Client<S> {
    lines: tokio::io::Lines<BufReader<S>>,
}

/// Why a subscription failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed.
    #[error("qos feed: {0}")]
    Io(#[from] std::io::Error),
    /// The relay refused the request.
    #[error("qos feed refused: {0}")]
    Refused(String),
    /// The relay sent something that is not a notice.
    #[error("qos feed: bad line ({0})")]
    Bad(String),
}

impl Client<TcpStream> {
    /// Subscribes at `addr` to `box_id`'s (or `*`) notices for `service`.
    pub async fn tcp(
        addr: std::net::SocketAddr,
        box_id: &str,
        service: &str,
    ) -> Result<Self, ClientError> {
        Self::over(TcpStream::connect(addr).await?, box_id, service).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Subscribes over an open connection.
    pub async fn over(mut s: S, box_id: &str, service: &str) -> Result<Self, ClientError> {
        let req = Request {
            box_id: box_id.into(),
            service: service.into(),
        };
        let line = serde_json::to_string(&req).map_err(|e| ClientError::Bad(e.to_string()))?;
        write_line(&mut s, &line).await?;
        let mut lines = BufReader::new(s).lines();
        let answer = lines
            .next_line()
            .await?
            .ok_or_else(|| ClientError::Refused("closed without an answer".into()))?;
        let v: serde_json::Value =
            serde_json::from_str(&answer).map_err(|e| ClientError::Bad(e.to_string()))?;
        if v["ok"] != true {
            return Err(ClientError::Refused(
                v["error"].as_str().unwrap_or("no reason").to_owned(),
            ));
        }
        Ok(Self { lines })
    }

    /// The next notice; none when the relay closed the feed.
    pub async fn next(&mut self) -> Result<Option<Notice>, ClientError> {
        match self.lines.next_line().await? {
            None => Ok(None),
            Some(l) => serde_json::from_str(&l)
                .map(Some)
                .map_err(|e| ClientError::Bad(format!("{e}: {l}"))),
        }
    }
}

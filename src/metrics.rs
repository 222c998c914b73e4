//! Counters kept by the reactor and the Hub; the endpoints that show them: `/healthz`,
//! `/metrics` (Prometheus text) and `/admin/stats`.

use crate::chat::{ChatStats, Hub};
use crate::http::{Request, Response};
use crate::time::Now;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::time::{Duration, Instant};

/// Seconds of per-second samples kept for `/admin/stats` (its charts span ten minutes).
const WINDOW: usize = 600;

/// One second of the server, for the admin dashboard.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    wall_ms: i64,
    stored: u64,
    delivered: u64,
    connections: u32,
    users_online: u32,
}

/// Upper bounds (µs) of the reactor pass histogram.
pub const PASS_BUCKETS_US: [u64; 11] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
];

#[derive(Default)]
pub struct Metrics {
    pub accepted: u64,
    pub refused: u64,
    pub ws_opened: u64,
    pub ws_received: u64,
    pub messages_stored: u64,
    pub frames_delivered: u64,
    /// write/writev system calls on sockets (frames per call = frames_delivered / this).
    pub socket_writes: u64,
    /// Typing and presence frames not queued to backed-up readers.
    pub ephemeral_shed: u64,
    /// Times a WebSocket was not read because all queued output was past its limit.
    pub senders_held: u64,
    /// Times a WebSocket ran out of its frame budget and waited.
    pub frame_budget_waits: u64,
    pub slow_consumers: u64,
    pub idle_closed: u64,
    pub request_timeouts: u64,
    pub rate_limited: u64,
    pub http_responses: BTreeMap<u16, u64>,
    /// How long each reactor pass took (events in, work done, output flushed): the time
    /// a socket can wait for the reactor. Counts per `PASS_BUCKETS_US` bound, plus over.
    pub pass_buckets: [u64; PASS_BUCKETS_US.len() + 1],
    pub pass_sum_us: u64,
    /// One a second at most, the last `WINDOW` seconds (`/admin/stats`'s charts).
    samples: VecDeque<Sample>,
}

/// Gauges the reactor reads at the time of the scrape.
pub struct Gauges {
    pub connections: usize,
    pub websockets: usize,
    pub users_online: usize,
    pub rooms: usize,
    pub storage_ok: bool,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Takes the Hub's counters, which it keeps itself.
    pub fn absorb(&mut self, chat: ChatStats) {
        self.messages_stored = chat.messages_stored;
        self.rate_limited = chat.rate_limited;
    }

    /// Records one reactor pass of `us` microseconds.
    pub fn pass(&mut self, us: u64) {
        let i = PASS_BUCKETS_US.partition_point(|&b| b < us);
        self.pass_buckets[i] += 1;
        self.pass_sum_us += us;
    }

    pub fn count_status(&mut self, status: u16) {
        *self.http_responses.entry(status).or_insert(0) += 1;
    }

    /// Whether a second has passed since the last sample (then the reactor takes one).
    pub fn sample_due(&self, now: Instant) -> bool {
        self.samples
            .back()
            .is_none_or(|s| now.duration_since(s.at) >= Duration::from_secs(1))
    }

    pub fn next_sample(&self) -> Option<Instant> {
        self.samples.back().map(|s| s.at + Duration::from_secs(1))
    }

    /// Records this second's counters and gauges; keeps the last `WINDOW` seconds.
    pub fn sample(&mut self, now: Instant, wall_ms: i64, g: &Gauges) {
        self.samples.push_back(Sample {
            at: now,
            wall_ms,
            stored: self.messages_stored,
            delivered: self.frames_delivered,
            connections: g.connections as u32,
            users_online: g.users_online as u32,
        });
        while self
            .samples
            .front()
            .is_some_and(|s| now.duration_since(s.at) > Duration::from_secs(WINDOW as u64))
        {
            self.samples.pop_front();
        }
    }

    /// Messages stored and frames delivered per second over the last minute.
    pub fn rates(&self) -> (f64, f64) {
        let Some(b) = self.samples.back() else {
            return (0.0, 0.0);
        };
        let a = self
            .samples
            .iter()
            .find(|s| b.at.duration_since(s.at) <= Duration::from_secs(60))
            .unwrap_or(b);
        let secs = b.at.duration_since(a.at).as_secs_f64();
        if secs <= 0.0 {
            return (0.0, 0.0);
        }
        (
            (b.stored - a.stored) as f64 / secs,
            (b.delivered - a.delivered) as f64 / secs,
        )
    }

    /// The last ten minutes, one point a second (fewer when the server was idle):
    /// connections, users online, and stored/delivered per second since the point before.
    pub fn series(&self) -> Vec<Value> {
        let mut out = Vec::with_capacity(self.samples.len());
        let mut prev: Option<&Sample> = None;
        for s in &self.samples {
            let (mps, dps) = match prev {
                Some(p) if s.at > p.at => {
                    let secs = s.at.duration_since(p.at).as_secs_f64();
                    (
                        (s.stored - p.stored) as f64 / secs,
                        (s.delivered - p.delivered) as f64 / secs,
                    )
                }
                _ => (0.0, 0.0),
            };
            out.push(json!({
                "t": s.wall_ms,
                "connections": s.connections,
                "users_online": s.users_online,
                "messages_per_sec": (mps * 10.0).round() / 10.0,
                "deliveries_per_sec": dps.round(),
            }));
            prev = Some(s);
        }
        out
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "chatterbox_connections_open",
            "gauge",
            "Open TCP connections.",
            g.connections.to_string(),
        );
        metric(
            "chatterbox_websockets_open",
            "gauge",
            "Open WebSocket connections.",
            g.websockets.to_string(),
        );
        metric(
            "chatterbox_users_online",
            "gauge",
            "Users with at least one WebSocket.",
            g.users_online.to_string(),
        );
        metric("chatterbox_rooms", "gauge", "Rooms.", g.rooms.to_string());
        metric(
            "chatterbox_storage_up",
            "gauge",
            "1 while the storage writer commits.",
            u8::from(g.storage_ok).to_string(),
        );
        metric(
            "chatterbox_connections_accepted_total",
            "counter",
            "Connections accepted.",
            self.accepted.to_string(),
        );
        metric(
            "chatterbox_connections_refused_total",
            "counter",
            "Connections refused (limit or no descriptors).",
            self.refused.to_string(),
        );
        metric(
            "chatterbox_websockets_opened_total",
            "counter",
            "WebSocket upgrades.",
            self.ws_opened.to_string(),
        );
        metric(
            "chatterbox_ws_messages_received_total",
            "counter",
            "WebSocket messages received.",
            self.ws_received.to_string(),
        );
        metric(
            "chatterbox_messages_stored_total",
            "counter",
            "Chat messages committed.",
            self.messages_stored.to_string(),
        );
        metric(
            "chatterbox_frames_delivered_total",
            "counter",
            "WebSocket frames queued to clients.",
            self.frames_delivered.to_string(),
        );
        metric(
            "chatterbox_socket_writes_total",
            "counter",
            "Write system calls on client sockets.",
            self.socket_writes.to_string(),
        );
        metric(
            "chatterbox_ephemeral_shed_total",
            "counter",
            "Typing and presence frames skipped for backed-up readers.",
            self.ephemeral_shed.to_string(),
        );
        metric(
            "chatterbox_senders_held_total",
            "counter",
            "WebSockets not read while all queued output was past its limit.",
            self.senders_held.to_string(),
        );
        metric(
            "chatterbox_frame_budget_waits_total",
            "counter",
            "Times a WebSocket sent frames faster than its budget and was not read for a while.",
            self.frame_budget_waits.to_string(),
        );
        metric(
            "chatterbox_slow_consumers_total",
            "counter",
            "Connections closed for not reading.",
            self.slow_consumers.to_string(),
        );
        metric(
            "chatterbox_idle_closed_total",
            "counter",
            "WebSockets closed for silence.",
            self.idle_closed.to_string(),
        );
        metric(
            "chatterbox_request_timeouts_total",
            "counter",
            "HTTP requests not completed in time.",
            self.request_timeouts.to_string(),
        );
        metric(
            "chatterbox_rate_limited_total",
            "counter",
            "Requests refused by a rate limit.",
            self.rate_limited.to_string(),
        );
        let _ = writeln!(out, "# HELP chatterbox_reactor_pass_seconds Time of one reactor pass (how long a ready socket can wait).\n# TYPE chatterbox_reactor_pass_seconds histogram");
        let mut cumulative = 0;
        for (i, n) in self.pass_buckets.iter().enumerate() {
            cumulative += n;
            let le = PASS_BUCKETS_US
                .get(i)
                .map_or("+Inf".to_string(), |b| format!("{}", *b as f64 / 1e6));
            let _ = writeln!(
                out,
                "chatterbox_reactor_pass_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "chatterbox_reactor_pass_seconds_sum {}\nchatterbox_reactor_pass_seconds_count {cumulative}",
            self.pass_sum_us as f64 / 1e6
        );
        let _ = writeln!(out, "# HELP chatterbox_http_responses_total HTTP responses by status.\n# TYPE chatterbox_http_responses_total counter");
        for (status, n) in &self.http_responses {
            let _ = writeln!(
                out,
                "chatterbox_http_responses_total{{status=\"{status}\"}} {n}"
            );
        }
        out
    }
}

/// `GET /healthz`: 503 while the storage writer fails.
pub fn healthz(storage_ok: bool) -> Response {
    if storage_ok {
        Response::json(200, &json!({ "status": "ok" }))
    } else {
        Response::json(
            503,
            &json!({ "status": "unavailable", "error": "overloaded", "message": "storage is failing" }),
        )
    }
}

/// `GET /metrics`.
pub fn exposition(m: &mut Metrics, g: &Gauges, hub: &Hub) -> Response {
    m.absorb(hub.stats);
    let mut text = m.render(g);
    if let Some(node) = hub.node() {
        // Which node answered (cluster mode: the nodes share a port).
        let _ = writeln!(
            text,
            "# HELP chatterbox_node_info The node that took this connection.\n\
             # TYPE chatterbox_node_info gauge\nchatterbox_node_info{{node=\"{}\"}} 1",
            node.replace('\\', "\\\\").replace('"', "\\\"")
        );
    }
    Response::new(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        text.into_bytes(),
    )
}

/// `GET /admin/stats`: who is online, rooms by activity, rates; admins only.
pub fn admin_stats(m: &mut Metrics, g: &Gauges, hub: &Hub, req: &Request, now: Now) -> Response {
    let Some(user) = hub.authenticate(req, now) else {
        return Response::error(401, "unauthorized", "missing, invalid or expired token")
            .with_header("WWW-Authenticate", "Bearer");
    };
    if !hub.is_admin(user) {
        return Response::error(403, "forbidden", "admins only");
    }
    m.absorb(hub.stats);
    let (stored, delivered) = m.rates();
    let mut rooms: Vec<Value> = hub
        .room_summaries()
        .into_iter()
        .map(|(name, private, members, online)| {
            json!({ "name": name, "private": private, "members": members, "online": online })
        })
        .collect();
    rooms.sort_by(|a, b| b["online"].as_u64().cmp(&a["online"].as_u64()));
    let cluster = match (hub.node(), req.query_param("scope").as_deref()) {
        (Some(_), Some("cluster")) => hub.cluster_stats(now),
        _ => Value::Null,
    };
    Response::json(
        200,
        &json!({
            "cluster": cluster,
            "node": hub.node(),
            "online_users": hub.online_names(),
            "connections": g.connections,
            "websockets": g.websockets,
            "rooms": rooms,
            "messages_stored_per_sec": stored,
            "deliveries_per_sec": delivered,
            "messages_stored_total": m.messages_stored,
            "deliveries_total": m.frames_delivered,
            "storage_ok": g.storage_ok,
            "series": m.series(),
        }),
    )
}

#[cfg(test)]
mod pass_tests {
    use super::*;

    #[test]
    fn passes_fall_into_cumulative_buckets() {
        let mut m = Metrics::new();
        for us in [10, 50, 51, 1_000, 1_001, 200_000] {
            m.pass(us);
        }
        let g = Gauges {
            connections: 0,
            websockets: 0,
            users_online: 0,
            rooms: 0,
            storage_ok: true,
        };
        let text = m.render(&g);
        let bucket = |le: &str| {
            let key = format!("chatterbox_reactor_pass_seconds_bucket{{le=\"{le}\"}} ");
            let line = text.lines().find(|l| l.starts_with(&key)).unwrap();
            line[key.len()..].parse::<u64>().unwrap()
        };
        assert_eq!(bucket("0.00005"), 2, "a bound is inclusive");
        assert_eq!(bucket("0.0001"), 3);
        assert_eq!(bucket("0.001"), 4);
        assert_eq!(bucket("0.0025"), 5);
        assert_eq!(bucket("+Inf"), 6);
        assert!(text.contains("chatterbox_reactor_pass_seconds_count 6"));
        assert!(text.contains("chatterbox_reactor_pass_seconds_sum 0.202112"));
    }
}

#[cfg(test)]
mod series_tests {
    use super::*;

    #[test]
    fn ten_minutes_of_seconds_with_rates_between_points() {
        let mut m = Metrics::new();
        let t0 = Instant::now();
        let g = |c| Gauges {
            connections: c,
            websockets: c,
            users_online: 1,
            rooms: 1,
            storage_ok: true,
        };
        for i in 0..700u64 {
            let at = t0 + Duration::from_secs(i);
            assert!(m.sample_due(at));
            m.messages_stored = i * 3;
            m.frames_delivered = i * 30;
            m.sample(at, 1_000 * i as i64, &g(i as usize));
            assert!(!m.sample_due(at + Duration::from_millis(999)));
        }
        let s = m.series();
        assert_eq!(s.len(), WINDOW + 1, "ten minutes, both ends");
        assert_eq!(s.last().unwrap()["connections"], 699);
        assert_eq!(s.last().unwrap()["messages_per_sec"], 3.0);
        assert_eq!(s.last().unwrap()["deliveries_per_sec"], 30.0);
        assert_eq!(m.rates(), (3.0, 30.0));
    }
}

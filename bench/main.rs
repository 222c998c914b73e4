//! `chatterbox-bench`: a load generator for connection-scaling benchmarks.
//!
//! Its own mio event loop drives thousands of WebSocket clients with hand-written client
//! framing (masked frames out, unmasked frames in), so the generator costs far less per
//! message than the server it measures. Modes: `connect`, `fanout`, `churn`, `login`,
//! `storm`.
//! Each prints a human summary, or one JSON object with `--json`.
//!
//! `--peer` drives a reference peer (../shared/peers) instead: no accounts, any token,
//! only `hello`, `send` and `message`. Every mode that measures also reports the
//! generator's own CPU and `valid: false` when the generator's core was ≥ 90% busy
//! (then the figures say more about the generator than about the server).

mod client;
mod connect;
mod storm;
mod tls;

use client::{Event, Fleet};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: chatterbox-bench MODE [options]
modes:
  connect  open N authenticated WebSockets at --rate per second, wait for every hello,
           hold them --hold seconds; RSS of --pid before and after
  fanout   N sockets in `general`, S of them sending R messages/s in total for D seconds;
           deliveries/s, latency percentiles, loss, duplicates, order
  churn    open and close sockets at --rate per second for D seconds; RSS and fds before
           and after
  login    --threads parallel logins for D seconds; logins/s and chat round trips meanwhile
  storm    N sockets on the first --server, then SIGKILL to --kill PID: every socket
           reconnects to the other --servers with the web UI's jittered backoff (first
           wait up to --first-wait-ms, doubling to 30 s); time until all are back
options:
  --server [https://]HOST:PORT (127.0.0.1:8000; https:// or wss://: TLS); repeatable:
           fanout spreads its sockets and senders over the servers (cluster nodes);
           accounts, /metrics and --pid are the first one's
  --cacert FILE (the CA that signed a TLS server's certificate; else system roots)
  -n N (1000)        --users K (20)
  --rate PER_SEC (5000)                  --senders S (10)   --msg-rate R (1000)
  --duration SECS (10)                   --hold SECS (0)    --pid SERVER_PID
  --settle SECS (0.3: fanout's pause between connecting and sending)
  --procs P (1; connect splits over P processes with source addresses 127.0.0.2..,
           and by itself into ceil(N/10000) processes past 19,000 sockets)
  --source IP (bind client sockets to this address)       --threads T (4)   --json
  --kill PID (storm: the victim)         --first-wait-ms MS (1000; 0: all at once)
  --source-base B (2: connect's and storm's children bind to 127.0.0.B, 127.0.0.B+1, …)
  --peer    the server is a reference peer: no register/login (tokens x0, x1, ...),
            only hello, send -> message (connect, fanout, churn)";

#[derive(Clone, Debug)]
pub struct Opts {
    pub mode: String,
    pub server: SocketAddr,
    /// Every `--server` given (cluster nodes); `server` is the first. fanout spreads its
    /// sockets (and so its senders) over them, round robin.
    pub servers: Vec<SocketAddr>,
    pub n: usize,
    pub users: usize,
    pub rate: f64,
    pub senders: usize,
    pub msg_rate: f64,
    pub duration: f64,
    pub hold: f64,
    pub settle: f64,
    pub pid: Option<i32>,
    pub procs: usize,
    pub source: Option<IpAddr>,
    /// `connect`'s children bind to 127.0.0.{source_base + i}: several `connect`s at once
    /// (one per cluster node) each need addresses of their own, since a bound source
    /// address has one ephemeral port range whatever the destination.
    pub source_base: u8,
    pub threads: usize,
    pub json: bool,
    /// Tokens passed by a parent process (comma-separated, or `@FILE` holding them), so
    /// children skip logins.
    pub tokens: Option<String>,
    /// Set by a parent `connect` on its children (`--child 1`): report, then hold.
    pub child: bool,
    /// The server is a reference peer speaking the minimal subset (`--peer`).
    pub peer: bool,
    /// The server speaks TLS (`--server https://…`), trusting these roots.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub cacert: Option<String>,
    /// `storm`'s victim, killed once every socket holds.
    pub kill: Option<i32>,
    /// `storm`'s first reconnect wait ceiling (0: immediate).
    pub first_wait_ms: u64,
}

impl Opts {
    /// The server's base URL for HTTP calls.
    pub fn base(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.server)
    }

    /// `--server` as children must be given it.
    pub fn server_arg(&self) -> String {
        if self.tls.is_some() {
            format!("https://{}", self.server)
        } else {
            self.server.to_string()
        }
    }
}

fn parse_opts() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or("missing mode")?;
    let mut o = Opts {
        mode,
        server: "127.0.0.1:8000".parse().unwrap(),
        servers: Vec::new(),
        n: 1000,
        users: 20,
        rate: 5000.0,
        senders: 10,
        msg_rate: 1000.0,
        duration: 10.0,
        hold: 0.0,
        settle: 0.3,
        pid: None,
        procs: 1,
        source: None,
        source_base: 2,
        threads: 4,
        json: false,
        tokens: None,
        child: false,
        peer: false,
        tls: None,
        cacert: None,
        kill: None,
        first_wait_ms: 1000,
    };
    let mut tls = false;
    while let Some(flag) = args.next() {
        if flag == "--json" {
            o.json = true;
            continue;
        }
        if flag == "--peer" || flag == "--minimal" {
            o.peer = true;
            continue;
        }
        let v = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |_| format!("bad value for {flag}: {v}");
        match flag.as_str() {
            "--server" => {
                let (secure, addr) = match v.split_once("://") {
                    Some(("https" | "wss", a)) => (true, a),
                    Some(("http" | "ws", a)) => (false, a),
                    Some(_) => return Err(format!("bad --server {v}")),
                    None => (false, v.as_str()),
                };
                tls = secure;
                let addr: SocketAddr = addr
                    .trim_end_matches('/')
                    .parse()
                    .map_err(|_| format!("bad --server {v} (HOST:PORT with an IP address)"))?;
                if o.servers.is_empty() {
                    o.server = addr;
                }
                o.servers.push(addr);
            }
            "--cacert" => o.cacert = Some(v),
            "-n" => o.n = v.parse().map_err(bad)?,
            "--users" => o.users = v.parse().map_err(bad)?,
            "--rate" => o.rate = v.parse().map_err(|_| format!("bad --rate {v}"))?,
            "--senders" => o.senders = v.parse().map_err(bad)?,
            "--msg-rate" => o.msg_rate = v.parse().map_err(|_| format!("bad --msg-rate {v}"))?,
            "--duration" => o.duration = v.parse().map_err(|_| format!("bad --duration {v}"))?,
            "--hold" => o.hold = v.parse().map_err(|_| format!("bad --hold {v}"))?,
            "--settle" => o.settle = v.parse().map_err(|_| format!("bad --settle {v}"))?,
            "--pid" => o.pid = Some(v.parse().map_err(bad)?),
            "--procs" => o.procs = v.parse().map_err(bad)?,
            "--source" => o.source = Some(v.parse().map_err(|_| format!("bad --source {v}"))?),
            "--threads" => o.threads = v.parse().map_err(bad)?,
            "--source-base" => o.source_base = v.parse().map_err(bad)?,
            "--tokens" => o.tokens = Some(v),
            "--child" => o.child = v == "1",
            "--kill" => o.kill = Some(v.parse().map_err(bad)?),
            "--first-wait-ms" => o.first_wait_ms = v.parse().map_err(bad)?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if tls {
        let pem = chatterbox::tls::root_pem(o.cacert.as_deref().map(std::path::Path::new))?;
        o.tls = Some(chatterbox::tls::client_config(&pem)?);
    }
    Ok(o)
}

fn main() {
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("chatterbox-bench: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let result = match o.mode.as_str() {
        "connect" => connect::connect(&o),
        "fanout" => fanout(&o),
        "churn" => churn(&o),
        "login" => login(&o),
        "storm" => storm::storm(&o),
        m => Err(format!("unknown mode {m}")),
    };
    match result {
        Ok(v) => {
            if v.is_null() {
                return;
            }
            if o.json {
                println!("{v}");
            } else {
                print_human(&v);
            }
            if v["ok"] == false {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("chatterbox-bench: {e}");
            std::process::exit(1);
        }
    }
}

fn print_human(v: &Value) {
    let Value::Object(m) = v else { return };
    for (k, val) in m {
        println!("{k:>28}: {val}");
    }
}

// ---- HTTP and accounts ----------------------------------------------------------

/// The client for the plain HTTP calls: every status comes back as a response, and each
/// request has its own connection as before (logins/s stays comparable), no proxy.
fn http_agent(o: &Opts) -> ureq::Agent {
    let mut roots = Vec::new();
    if o.tls.is_some() {
        let pem = chatterbox::tls::root_pem(o.cacert.as_deref().map(std::path::Path::new))
            .unwrap_or_default();
        roots = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
    }
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .proxy(None)
        .max_idle_connections(0)
        .timeout_per_read(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// One POST with a JSON body; returns (status, body).
fn post(
    agent: &ureq::Agent,
    base: &str,
    path: &str,
    body: &Value,
) -> Result<(u16, String), String> {
    let fail = |e: ureq::Error| format!("POST {path} to {base}: {e}");
    let mut resp = agent
        .post(format!("{base}{path}"))
        .send_json(body)
        .map_err(fail)?;
    let text = resp.body_mut().read_to_string().map_err(fail)?;
    Ok((resp.status().as_u16(), text))
}

/// Registers (if needed) and logs in `k` users; returns their tokens.
pub fn tokens(o: &Opts) -> Result<Vec<String>, String> {
    if let Some(t) = &o.tokens {
        let t = match t.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
            None => t.clone(),
        };
        return Ok(t.trim().split(',').map(str::to_string).collect());
    }
    if o.peer {
        // A peer takes any token; one per "user" keeps the requests alike.
        return Ok((0..o.users.max(1)).map(|i| format!("x{i}")).collect());
    }
    let password = "bench-password";
    let agent = http_agent(o);
    (0..o.users.max(1))
        .map(|i| {
            let name = format!("bench{i}");
            let creds = json!({"username": name, "password": password});
            let (st, body) = post(&agent, &o.base(), "/register", &creds)?;
            if st != 201 && st != 409 {
                return Err(format!("register {name}: {st} {body}"));
            }
            let (st, body) = post(&agent, &o.base(), "/login", &creds)?;
            if st != 200 {
                return Err(format!(
                    "login {name}: {st} {body} (start the server with a high --auth-per-minute)"
                ));
            }
            let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            Ok(v["token"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

// ---- /proc ------------------------------------------------------------------------

pub fn rss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn fds(pid: i32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// CPU seconds (user + system) of a process.
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().ok()? + f[12].parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// CPU seconds (user + system) of this process, to the microsecond (getrusage).
pub fn own_cpu_secs() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return cpu_secs("self").unwrap_or(0.0);
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

pub fn server_cpu(o: &Opts) -> Option<f64> {
    o.pid.and_then(|p| cpu_secs(&p.to_string()))
}

/// A run is invalid when the generator's core was at least this busy (percent).
pub const BUSY_LIMIT: f64 = 90.0;

/// The one CPU this process may run on (`taskset -c 1` → 1), if it is pinned to one.
fn pinned_cpu() -> Option<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        if libc::CPU_COUNT(&set) != 1 {
            return None;
        }
        (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set))
    }
}

/// (busy, total) jiffies of one CPU from /proc/stat; busy excludes idle and iowait.
fn core_jiffies(cpu: usize) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{cpu}");
    let line = s
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8) // user nice system idle iowait irq softirq steal (guest is inside user)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The generator's own CPU over a measured phase: user + system of this process (plus
/// children that report theirs), as seconds and as % of the elapsed time, and how busy
/// the core it is pinned to was meanwhile (anything else on that core counts too).
pub struct GenCpu {
    t0: Instant,
    cpu0: f64,
    core: Option<(usize, (u64, u64))>,
}

impl GenCpu {
    pub fn start() -> GenCpu {
        let core = pinned_cpu().and_then(|c| Some((c, core_jiffies(c)?)));
        GenCpu {
            t0: Instant::now(),
            cpu0: own_cpu_secs(),
            core,
        }
    }

    /// The JSON fields for the phase so far; `children` is CPU seconds of helper processes.
    pub fn finish(&self, children: f64) -> Value {
        let elapsed = self.t0.elapsed().as_secs_f64().max(1e-9);
        let cpu = own_cpu_secs() - self.cpu0 + children;
        let pct = cpu / elapsed * 100.0;
        let core = self.core.and_then(|(c, (b0, t0))| {
            let (b1, t1) = core_jiffies(c)?;
            (t1 > t0).then(|| (c, (b1 - b0) as f64 / (t1 - t0) as f64 * 100.0))
        });
        // Invalid when the generator's core was saturated: by the generator itself, or
        // with other work on that core (other processes, or kernel network work in
        // interrupt context that no process is charged for): the generator was starved.
        let reason = if pct >= BUSY_LIMIT {
            Some("generator")
        } else if core.is_some_and(|(_, b)| b >= BUSY_LIMIT) {
            Some("core")
        } else {
            None
        };
        json!({
            "bench_cpu_secs": cpu,
            "bench_elapsed_secs": elapsed,
            "bench_cpu_pct": pct,
            "bench_core": core.map(|(c, _)| c),
            "bench_core_busy_pct": core.map(|(_, b)| b),
            "valid": reason.is_none(),
            "invalid_reason": reason,
        })
    }
}

/// Adds every field of `extra` (an object) to `v`.
pub fn merge(v: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (v, extra) {
        a.extend(b);
    }
}

/// Counters from the server's /metrics (name → value); None when unreachable.
fn scrape(o: &Opts) -> Option<std::collections::HashMap<String, f64>> {
    if o.peer {
        return None;
    }
    let agent = http_agent(o);
    let mut resp = agent.get(format!("{}/metrics", o.base())).call().ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    let text = resp.body_mut().read_to_string().ok()?;
    // Series with labels are summed under their bare name.
    let mut m = std::collections::HashMap::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = l.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let bare = name.split('{').next().unwrap_or(name).trim();
        *m.entry(bare.to_string()).or_insert(0.0) += value;
    }
    Some(m)
}

pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

// ---- modes ------------------------------------------------------------------------

fn fanout(o: &Opts) -> Result<Value, String> {
    let tokens = tokens(o)?;
    let mut fleet = Fleet::new(o.server, o.source, o.tls.clone())?;
    fleet.spread_over(&o.servers);
    let opened = fleet.open_paced(o.n, o.rate, &tokens, Duration::from_secs(60))?;
    if opened < o.n {
        return Err(format!("only {opened} of {} connections opened", o.n));
    }
    // The marker lets a profiler attach to the server between connecting and sending.
    eprintln!(
        "chatterbox-bench: fanout: {opened} connected; sending in {} s",
        o.settle
    );
    fleet.run_for(Duration::from_secs_f64(o.settle), |_| {});
    let senders = o.senders.clamp(1, o.n);
    let interval = Duration::from_secs_f64(1.0 / o.msg_rate);
    let duration = Duration::from_secs_f64(o.duration);
    let mut st = FanoutStats {
        senders,
        last_seq: vec![u32::MAX; o.n * senders],
        // Capped: past the server's capacity most of the offered load never arrives.
        latencies: Vec::with_capacity(((o.msg_rate * o.duration) as usize * o.n).min(20_000_000)),
        dup: 0,
        reordered: 0,
        received: 0,
        first_rx: None,
        last_rx: Instant::now(),
        epoch: Instant::now(),
    };
    let metrics0 = scrape(o);
    let cpu0 = server_cpu(o);
    let gen = GenCpu::start();
    let closed0 = fleet.disconnected;
    st.epoch = Instant::now();
    let epoch = st.epoch;
    let mut sent = 0u64;
    let mut next = epoch;
    while epoch.elapsed() < duration {
        let now = Instant::now();
        while next <= now && epoch.elapsed() < duration {
            let s = (sent as usize) % senders;
            let seq = (sent / senders as u64) as u32;
            let t = epoch.elapsed().as_micros();
            let text = format!("b {s} {seq} {t}");
            fleet.send_text(
                s,
                &json!({"type": "send", "room": "general", "text": text}).to_string(),
            );
            sent += 1;
            next += interval;
        }
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(5));
        fleet.poll_once(wait, |ev| st.record(ev));
    }
    let expected = sent * o.n as u64;
    // Drain: at most 10 s, and stop once nothing has arrived for 1 s (a server that drops
    // or disconnects never completes the count).
    let drain_until = Instant::now() + Duration::from_secs(10);
    let mut last_progress = (st.received, Instant::now());
    let drain_start = Instant::now();
    while st.received < expected && Instant::now() < drain_until {
        fleet.poll_once(Duration::from_millis(20), |ev| st.record(ev));
        if st.received != last_progress.0 {
            last_progress = (st.received, Instant::now());
        } else if last_progress.1.elapsed() > Duration::from_secs(1) {
            break;
        }
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();
    let drain_timed_out = st.received < expected && Instant::now() >= drain_until;
    let gen_cpu = gen.finish(0.0);
    let disconnected = fleet.disconnected - closed0;
    let FanoutStats {
        mut latencies,
        dup,
        reordered,
        received,
        first_rx,
        last_rx,
        ..
    } = st;
    let cpu1 = server_cpu(o);
    let metrics1 = scrape(o);
    let delta = |k: &str| {
        let (a, b) = (metrics0.as_ref()?.get(k)?, metrics1.as_ref()?.get(k)?);
        Some(b - a)
    };
    let writes = delta("chatterbox_socket_writes_total");
    let frames = delta("chatterbox_frames_delivered_total");
    let server_cpu_secs = cpu0.zip(cpu1).map(|(a, b)| b - a);
    latencies.sort_unstable();
    let span = first_rx
        .map(|f| last_rx.duration_since(f).as_secs_f64())
        .unwrap_or(0.0)
        .max(1e-9);
    let errors = fleet.errors;
    let mut v = json!({
        "mode": "fanout",
        "peer": o.peer,
        "servers": o.servers.len().max(1),
        "ok": received == expected && dup == 0 && reordered == 0 && errors == 0
            && disconnected == 0,
        "connections": o.n,
        "senders": senders,
        "offered_msgs_per_sec": o.msg_rate,
        "sent": sent,
        "expected_deliveries": expected,
        "received": received,
        // Lost, or still queued when the drain gave up (see drain_timed_out).
        "lost": expected.saturating_sub(received),
        "drain_secs": drain_secs,
        "drain_timed_out": drain_timed_out,
        "duplicates": dup,
        "out_of_order": reordered,
        "server_errors": errors,
        "readers_disconnected": disconnected,
        "deliveries_per_sec": received as f64 / span,
        "latency_ms_p50": percentile(&latencies, 0.50),
        "latency_ms_p99": percentile(&latencies, 0.99),
        "latency_ms_p999": percentile(&latencies, 0.999),
        "latency_ms_max": percentile(&latencies, 1.0),
        "server_cpu_secs": server_cpu_secs,
        "deliveries_per_server_cpu_sec": server_cpu_secs
            .filter(|&c| c > 0.0)
            .map(|c| received as f64 / c),
        // Absent counters (an older server, or a peer) give nulls.
        "server_frames_delivered": frames,
        "server_socket_writes": writes,
        "syscalls_per_delivery": writes.zip(frames).filter(|&(_, f)| f > 0.0).map(|(w, f)| w / f),
    });
    merge(&mut v, gen_cpu);
    Ok(v)
}

struct FanoutStats {
    senders: usize,
    /// Per receiver and sender: the last sequence number seen.
    last_seq: Vec<u32>,
    latencies: Vec<u32>,
    dup: u64,
    reordered: u64,
    received: u64,
    first_rx: Option<Instant>,
    last_rx: Instant,
    epoch: Instant,
}

impl FanoutStats {
    /// Records one delivery; texts are "b <sender> <seq> <micros since epoch>".
    fn record(&mut self, ev: Event) {
        let mut it = ev.text.split(' ');
        if it.next() != Some("b") {
            return;
        }
        let (Some(s), Some(q), Some(t)) = (it.next(), it.next(), it.next()) else {
            return;
        };
        let (Ok(s), Ok(q), Ok(t)) = (s.parse::<usize>(), q.parse::<u32>(), t.parse::<u64>()) else {
            return;
        };
        if s >= self.senders {
            return;
        }
        self.received += 1;
        self.first_rx.get_or_insert(ev.at);
        self.last_rx = ev.at;
        let now_us = ev.at.duration_since(self.epoch).as_micros() as u64;
        self.latencies
            .push(now_us.saturating_sub(t).min(u32::MAX as u64) as u32);
        let slot = &mut self.last_seq[ev.conn * self.senders + s];
        if *slot != u32::MAX && q <= *slot {
            if q == *slot {
                self.dup += 1;
            } else {
                self.reordered += 1;
            }
        } else {
            *slot = q;
        }
    }
}

fn churn(o: &Opts) -> Result<Value, String> {
    let tokens = tokens(o)?;
    let pid = o.pid;
    // Warm up once so lazily allocated server structures are in the baseline.
    let mut fleet = Fleet::new(o.server, o.source, o.tls.clone())?;
    fleet.open_paced(50.min(o.n.max(1)), o.rate, &tokens, Duration::from_secs(30))?;
    fleet.close_all();
    fleet.run_for(Duration::from_millis(500), |_| {});
    let (rss0, fds0) = (pid.and_then(rss_kib), pid.and_then(fds));
    let t0 = Instant::now();
    let duration = Duration::from_secs_f64(o.duration);
    let mut cycles = 0u64;
    let batch = (o.rate / 10.0).ceil().max(1.0) as usize;
    // RSS half-way too: warm-up growth (allocator arenas, slab and map capacity) stops,
    // a leak keeps growing in the second half as in the first.
    let mut rss_mid = None;
    while t0.elapsed() < duration {
        let tick = Instant::now();
        let opened = fleet.open_paced(batch, o.rate * 4.0, &tokens, Duration::from_secs(10))?;
        cycles += opened as u64;
        fleet.close_all();
        let left = Duration::from_millis(100).saturating_sub(tick.elapsed());
        fleet.run_for(left, |_| {});
        if rss_mid.is_none() && t0.elapsed() >= duration / 2 {
            rss_mid = pid.and_then(rss_kib);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    fleet.run_for(Duration::from_secs(2), |_| {});
    let (rss1, fds1) = (pid.and_then(rss_kib), pid.and_then(fds));
    let rss_ok = rss0
        .zip(rss1)
        .is_none_or(|(a, b)| (b as f64) <= a as f64 * 1.05 + 1024.0);
    let fds_ok = fds0.zip(fds1).is_none_or(|(a, b)| b <= a);
    Ok(json!({
        "mode": "churn",
        "peer": o.peer,
        "ok": rss_ok && fds_ok && fleet.errors == 0,
        "connections_opened_and_closed": cycles,
        "per_sec": cycles as f64 / secs,
        "server_rss_before_kib": rss0,
        "server_rss_mid_kib": rss_mid,
        "server_rss_after_kib": rss1,
        "server_fds_before": fds0,
        "server_fds_after": fds1,
        "failed": fleet.errors,
    }))
}

fn login(o: &Opts) -> Result<Value, String> {
    if o.peer {
        return Err("login needs accounts; a --peer server has none".into());
    }
    let tokens = tokens(o)?;
    let duration = Duration::from_secs_f64(o.duration);
    let base = o.base();
    let t0 = Instant::now();
    let workers: Vec<_> = (0..o.threads)
        .map(|i| {
            let agent = http_agent(o);
            let base = base.clone();
            std::thread::spawn(move || {
                let creds =
                    json!({"username": format!("bench{}", i % 20), "password": "bench-password"});
                let mut ok = 0u64;
                let mut other = 0u64;
                while t0.elapsed() < duration {
                    match post(&agent, &base, "/login", &creds) {
                        Ok((200, _)) => ok += 1,
                        _ => other += 1,
                    }
                }
                (ok, other)
            })
        })
        .collect();
    // Meanwhile, chat round trips on one socket.
    let mut fleet = Fleet::new(o.server, o.source, o.tls.clone())?;
    fleet.open_paced(1, 10.0, &tokens, Duration::from_secs(10))?;
    let mut rtts: Vec<u32> = Vec::new();
    while t0.elapsed() < duration {
        let sent_at = Instant::now();
        fleet.send_text(
            0,
            &json!({"type": "send", "room": "general", "text": "rtt"}).to_string(),
        );
        let mut got = false;
        let until = Instant::now() + Duration::from_secs(5);
        while !got && Instant::now() < until {
            fleet.poll_once(Duration::from_millis(5), |ev| got |= ev.text == "rtt");
        }
        rtts.push(sent_at.elapsed().as_micros() as u32);
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut ok, mut other) = (0, 0);
    for w in workers {
        let (a, b) = w.join().map_err(|_| "login thread panicked")?;
        ok += a;
        other += b;
    }
    rtts.sort_unstable();
    Ok(json!({
        "mode": "login",
        "ok": ok > 0,
        "threads": o.threads,
        "logins": ok,
        "other_responses": other,
        "logins_per_sec": ok as f64 / t0.elapsed().as_secs_f64(),
        "chat_rtt_ms_p50_during_logins": percentile(&rtts, 0.5),
        "chat_rtt_ms_max_during_logins": percentile(&rtts, 1.0),
    }))
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 501.0);
        assert_eq!(percentile(&v, 1.0), 1000.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}

//! Every knob of the server, with its default.
//!
//! `Config` is plain data: the binary fills it from flags and `CHATTERBOX_*` variables,
//! tests build it directly. Nothing else in the library reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Address the server listens on when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
/// Database file used when none is given.
pub const DEFAULT_DB: &str = "chatterbox.db";
/// Where uploaded files live with a PostgreSQL database (`--files-dir`); with SQLite they
/// are in `DB.files/` beside the database file.
pub const DEFAULT_PG_FILES_DIR: &str = "chatterbox-files";
/// Most bytes of request line plus headers (431 past it).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most header lines in one request (431 past it).
pub const DEFAULT_MAX_HEADERS: usize = 64;
/// Largest request body (413 past it).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Time allowed from the first byte of a request to its last (408 past it).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle keep-alive connection is closed after this long.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// The server pings every WebSocket this often.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);
/// A WebSocket that sent nothing (not even a pong) for this long is closed.
pub const DEFAULT_WS_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Largest WebSocket frame or message a client may send (closed with 1009 past it).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;
/// Output queued for one connection alone (replies, pongs; a broadcast frame shared with
/// others is not counted here) before it is closed as a slow consumer (1008).
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024;
/// A connection with output queued that accepts none of it for this long is closed as a
/// slow consumer (1008). A reader that keeps reading, however slowly, never is.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// All output queued in the process, each broadcast frame counted once. Past it the
/// server stops reading WebSockets (senders wait; nothing committed is dropped) until
/// the total is back under `RESUME_OUTPUT_BYTES`.
pub const MAX_TOTAL_OUTPUT_BYTES: usize = 256 * 1024 * 1024;
pub const RESUME_OUTPUT_BYTES: usize = 192 * 1024 * 1024;
/// Above this much unsent output a connection is not read (no request parsed, no ping
/// answered) until it drains: a client that does not read cannot make the server
/// produce more for it.
pub const OUTPUT_PAUSE_BYTES: usize = 32 * 1024;
/// WebSocket frames (pings and every request included) read from one connection per
/// second, and their burst. Past it the connection is not read until the budget refills,
/// so no client can make the server do more than this for it, whatever it sends; the
/// chat budgets (10 messages a second, …) sit well inside it.
pub const DEFAULT_WS_FRAME_RATE: f64 = 100.0;
pub const DEFAULT_WS_FRAME_BURST: f64 = 200.0;
/// Unparsed input a connection may hold once it has a whole request waiting: pipelined
/// requests stay in the socket (and its sender's) buffers, not ours.
pub const READ_AHEAD_BYTES: usize = 16 * 1024;
/// How long the name of a deleted account stays taken, so nobody can pose as its owner.
pub const NAME_QUARANTINE_MS: i64 = 30 * 24 * 3600 * 1000;
/// Rooms with at most this many members get `delivered` receipts broadcast (ticks are
/// shown in DMs and small rooms; in big rooms they would cost more than they tell).
pub const RECEIPTS_MAX_MEMBERS: usize = 50;
/// Messages per page of an account export.
pub const EXPORT_PAGE: usize = 100;
/// An export asks for its next page once its connection has less than this queued.
pub const EXPORT_LOW_WATER: usize = 64 * 1024;
/// Sessions shown by `GET /account/sessions` (a user rarely has more; the rest exist).
pub const MAX_SESSIONS_LISTED: usize = 100;
/// A token's "last used" is written at most this often.
pub const TOKEN_TOUCH_MS: i64 = 5 * 60 * 1000;
/// The user agent kept with a session, in bytes.
pub const MAX_USER_AGENT_BYTES: usize = 200;
/// Threads running TLS handshakes' costly steps (key exchange and signature, ~0.3 ms
/// each with ECDSA P-256) off the reactor.
pub const TLS_HANDSHAKE_THREADS: usize = 2;
/// Longest message text, in characters, after trimming.
pub const DEFAULT_MAX_TEXT_CHARS: usize = 4000;
/// Committed messages each room keeps in memory for `join` and catch-up.
pub const DEFAULT_RING_SIZE: usize = 1000;
/// Messages returned by `join` without `since`.
pub const DEFAULT_JOIN_HISTORY: usize = 50;
/// Session token lifetime.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Threads hashing and verifying passwords.
pub const DEFAULT_PASSWORD_THREADS: usize = 2;
/// Sustained chat actions (send, dm, edit, delete) per user per second.
pub const DEFAULT_MSG_RATE: f64 = 10.0;
/// Burst of chat actions per user.
pub const DEFAULT_MSG_BURST: f64 = 20.0;
/// Typing notices per user per second (also the burst).
pub const DEFAULT_TYPING_RATE: f64 = 2.0;
/// Other state-changing actions per user per second (join, leave, create_room, invite,
/// decline, history, members, search over HTTP and WebSocket), and their burst.
pub const DEFAULT_ACTION_RATE: f64 = 5.0;
pub const DEFAULT_ACTION_BURST: f64 = 50.0;
/// Read receipts (`seen`) per user per second, and their burst.
pub const DEFAULT_SEEN_RATE: f64 = 10.0;
pub const DEFAULT_SEEN_BURST: f64 = 20.0;
/// Rooms one user may own (create_room; DMs are owned by nobody).
pub const DEFAULT_MAX_ROOMS_OWNED: usize = 100;
/// Rooms one user may be a member of (pending invitations do not count).
pub const DEFAULT_MAX_MEMBERSHIPS: usize = 1000;
/// Connections from one address that have not authenticated (not a WebSocket yet).
pub const DEFAULT_MAX_PENDING_PER_IP: usize = 256;
/// WebSockets one user may hold open at once.
pub const DEFAULT_MAX_SOCKETS_PER_USER: usize = 64;
/// Pending invitations one user may hold; the oldest goes past it.
pub const MAX_INVITATIONS: usize = 100;
/// Rooms named in `hello` (the rest via `GET /rooms`), invitations in `hello`, and names
/// per page of members (`joined`, `members`).
pub const HELLO_ROOMS_MAX: usize = 100;
pub const MEMBERS_PAGE: usize = 100;
/// Rooms past this many members get no per-user presence events.
pub const PRESENCE_MAX_MEMBERS: usize = 1000;
/// A user's presence in one room is announced at most this often; the latest state
/// follows when the interval is up.
pub const PRESENCE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Most bytes of messages in one catch-up (`joined` with `since`) or `history` reply.
pub const REPLY_MAX_BYTES: usize = 256 * 1024;
/// Default and largest page of `GET /rooms`.
pub const ROOMS_PAGE_DEFAULT: usize = 200;
pub const ROOMS_PAGE_MAX: usize = 1000;
/// Login and register attempts per IP address per minute (also the burst).
pub const DEFAULT_AUTH_PER_MINUTE: f64 = 10.0;
/// `general` is created by the first migration with this id; everyone is a member.
pub const GENERAL_ID: i64 = 1;
/// Default and largest page of history over HTTP and WebSocket.
pub const HISTORY_DEFAULT: usize = 50;
pub const HISTORY_MAX: usize = 200;
/// Most messages a `join` with `since` returns.
pub const CATCH_UP_MAX: usize = 1000;
/// History reads one socket may have waiting on the reader threads.
pub const MAX_PENDING_READS: u8 = 4;
/// Largest upload by default (`--max-file-bytes`).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 10 << 20;
/// All files together by default (`--files-max-bytes`).
pub const DEFAULT_FILES_MAX_BYTES: u64 = 10 << 30;
/// One user's files together by default (`--user-files-max-bytes`).
pub const DEFAULT_USER_FILES_MAX_BYTES: u64 = 1 << 30;
/// Uploads per user per minute by default (`--uploads-per-minute`).
pub const DEFAULT_UPLOADS_PER_MINUTE: f64 = 20.0;
/// Uploads one user may have in progress (each holds a socket and an open file).
pub const MAX_UPLOADS_AT_ONCE: usize = 4;
/// Uploads in progress in the whole server (503 past it): each holds two descriptors.
pub const MAX_UPLOADS_IN_ALL: usize = 256;
/// The slowest an upload may average: past `request_timeout` plus its size at this rate
/// it is ended (408), so that a trickle cannot hold a quota reservation for ever.
pub const MIN_UPLOAD_BYTES_PER_SEC: u64 = 16 << 10;
/// Files one message may carry.
pub const MAX_ATTACHMENTS: usize = 10;
/// An upload's bytes given to the file worker and not yet written: past it the
/// uploader is not read until the worker catches up (a slow disk slows the uploader,
/// never the reactor, and memory stays bounded).
pub const UPLOAD_WINDOW_BYTES: usize = 256 << 10;
/// Largest piece of a file read for a download at once.
pub const DOWNLOAD_CHUNK_BYTES: usize = 64 << 10;
/// A file attached to no message is forgotten after this long.
pub const UNATTACHED_FILE_TTL_MS: i64 = 24 * 3600 * 1000;
/// How often the store is asked to forget unattached files.
pub const FILE_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Longest file name kept (bytes, cut at a character boundary).
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Names in one page of `reactors`.
pub const REACTORS_PAGE: usize = 50;
/// Default and largest number of search results.
pub const SEARCH_DEFAULT: usize = 20;
pub const SEARCH_MAX: usize = 100;
/// Longest search query, in bytes.
pub const MAX_QUERY_BYTES: usize = 500;
/// Per-IP login buckets are pruned (full ones dropped) past this many addresses.
pub const IP_BUCKETS_PRUNE_AT: usize = 10_000;
/// File descriptors kept back from the connection limit for SQLite, workers and a spare.
pub const FD_MARGIN: usize = 64;

/// Durability of a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    /// `synchronous=NORMAL` in WAL mode: survives a process crash (`kill -9`).
    Normal,
    /// `synchronous=FULL`: also survives power loss.
    Full,
}

/// The server's configuration.
/// `--registration`: who may create an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Anyone.
    Open,
    /// Whoever has an invite code an admin made.
    Invite,
    /// Only admins (`chatterbox admin add-user`).
    Closed,
}

impl Registration {
    pub fn parse(s: &str) -> Result<Registration, String> {
        match s {
            "open" => Ok(Registration::Open),
            "invite" => Ok(Registration::Invite),
            "closed" => Ok(Registration::Closed),
            _ => Err(format!(
                "--registration takes open, invite or closed, not {s:?}"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Open => "open",
            Registration::Invite => "invite",
            Registration::Closed => "closed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// A SQLite file, or a PostgreSQL URL (`postgres://user@host:port/dbname`).
    pub db: PathBuf,
    /// Uploaded files (`--files-dir`); `None`: beside a SQLite database, or
    /// `DEFAULT_PG_FILES_DIR` with PostgreSQL.
    pub files_dir: Option<PathBuf>,
    /// PEM certificate chain and private key: the listener speaks TLS (https, wss).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub sync: Sync,
    /// Origins (`scheme://host[:port]`) allowed besides the server's own `Host`.
    pub allowed_origins: Vec<String>,
    /// Usernames with admin rights (compared case-insensitively).
    pub admins: Vec<String>,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub ping_interval: Duration,
    pub ws_idle_timeout: Duration,
    pub max_frame_bytes: usize,
    pub max_output_bytes: usize,
    pub stall_timeout: Duration,
    pub max_text_chars: usize,
    pub ring_size: usize,
    pub join_history: usize,
    pub token_ttl: Duration,
    pub password_threads: usize,
    pub msg_rate: f64,
    pub msg_burst: f64,
    pub typing_rate: f64,
    pub auth_per_minute: f64,
    /// Who may create an account.
    pub registration: Registration,
    /// Failed logins one account may have per hour, from anywhere (then 429).
    pub login_failures_per_hour: f64,
    pub action_rate: f64,
    pub action_burst: f64,
    pub seen_rate: f64,
    pub seen_burst: f64,
    pub max_rooms_owned: usize,
    pub max_memberships: usize,
    pub max_pending_per_ip: usize,
    pub max_sockets_per_user: usize,
    pub ws_frame_rate: f64,
    pub ws_frame_burst: f64,
    /// Most open connections; `None` derives it from the open-file limit.
    pub max_connections: Option<usize>,
    /// Largest file one upload may be (413 past it).
    pub max_file_bytes: u64,
    /// All stored files together (507 past it).
    pub files_max_bytes: u64,
    /// One user's stored files together (507 past it).
    pub user_files_max_bytes: u64,
    /// Uploads one user may start per minute (429 past it).
    pub uploads_per_minute: f64,
    /// Cluster mode: the Redis URL of the bus every node shares (`--bus`).
    pub bus: Option<String>,
    /// This node's name on the bus (`--node`; by default host and process id).
    pub node: String,
    /// The cluster's name on the bus (`--cluster`): its channels' prefix.
    pub cluster: String,
    /// How often a node tells the others it is alive, and how long without word until
    /// they take it for dead and its users offline.
    pub node_heartbeat: Duration,
    pub node_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            db: PathBuf::from(DEFAULT_DB),
            files_dir: None,
            tls_cert: None,
            tls_key: None,
            sync: Sync::Normal,
            allowed_origins: Vec::new(),
            admins: Vec::new(),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            ws_idle_timeout: DEFAULT_WS_IDLE_TIMEOUT,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            files_max_bytes: DEFAULT_FILES_MAX_BYTES,
            user_files_max_bytes: DEFAULT_USER_FILES_MAX_BYTES,
            uploads_per_minute: DEFAULT_UPLOADS_PER_MINUTE,
            max_text_chars: DEFAULT_MAX_TEXT_CHARS,
            ring_size: DEFAULT_RING_SIZE,
            join_history: DEFAULT_JOIN_HISTORY,
            token_ttl: DEFAULT_TOKEN_TTL,
            password_threads: DEFAULT_PASSWORD_THREADS,
            msg_rate: DEFAULT_MSG_RATE,
            msg_burst: DEFAULT_MSG_BURST,
            typing_rate: DEFAULT_TYPING_RATE,
            auth_per_minute: DEFAULT_AUTH_PER_MINUTE,
            login_failures_per_hour: 20.0,
            registration: Registration::Open,
            action_rate: DEFAULT_ACTION_RATE,
            action_burst: DEFAULT_ACTION_BURST,
            seen_rate: DEFAULT_SEEN_RATE,
            seen_burst: DEFAULT_SEEN_BURST,
            max_rooms_owned: DEFAULT_MAX_ROOMS_OWNED,
            max_memberships: DEFAULT_MAX_MEMBERSHIPS,
            max_pending_per_ip: DEFAULT_MAX_PENDING_PER_IP,
            max_sockets_per_user: DEFAULT_MAX_SOCKETS_PER_USER,
            ws_frame_rate: DEFAULT_WS_FRAME_RATE,
            ws_frame_burst: DEFAULT_WS_FRAME_BURST,
            max_connections: None,
            bus: None,
            node: default_node_name(),
            cluster: "chatterbox".into(),
            node_heartbeat: DEFAULT_NODE_HEARTBEAT,
            node_timeout: DEFAULT_NODE_TIMEOUT,
        }
    }
}

/// Cluster mode: a node says it is alive this often…
pub const DEFAULT_NODE_HEARTBEAT: Duration = Duration::from_secs(5);
/// …and is taken for dead (its users offline everywhere) after this long without word:
/// a killed node's users go offline within 20–25 s.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(20);

/// `HOST-PID`: unique among nodes on one machine, and says where a node runs.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() { "node".into() } else { host };
    format!("{host}-{}", std::process::id())
}

impl Config {
    /// Where uploaded files are kept.
    pub fn files_dir(&self) -> PathBuf {
        match (&self.files_dir, crate::store::sql::is_postgres(&self.db)) {
            (Some(dir), _) => dir.clone(),
            (None, true) => PathBuf::from(DEFAULT_PG_FILES_DIR),
            (None, false) => crate::files::dir_for(&self.db),
        }
    }

    /// Checks values that would make the server misbehave rather than fail loudly.
    pub fn validate(&self) -> Result<(), String> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("--tls-cert and --tls-key go together".into());
        }
        if self.max_header_bytes < 256 || self.max_headers == 0 {
            return Err("header limits are too small".into());
        }
        if self.max_frame_bytes < 1024 || self.max_output_bytes < self.max_frame_bytes {
            return Err("frame and output limits are too small".into());
        }
        if self.password_threads == 0 {
            return Err("password_threads must be at least 1".into());
        }
        let rates = [
            self.msg_rate,
            self.typing_rate,
            self.action_rate,
            self.seen_rate,
        ];
        let bursts = [self.msg_burst, self.action_burst, self.seen_burst];
        if rates.iter().any(|r| *r <= 0.0) || bursts.iter().any(|b| *b < 1.0) {
            return Err("rate limits must be positive".into());
        }
        if self.login_failures_per_hour < 1.0 {
            return Err("login_failures_per_hour must be at least 1".into());
        }
        if self.auth_per_minute <= 0.0 {
            return Err("auth_per_minute must be positive".into());
        }
        if self.max_pending_per_ip == 0 || self.max_sockets_per_user == 0 {
            return Err("connection caps must be at least 1".into());
        }
        if self.join_history > self.ring_size {
            return Err("join_history must not exceed ring_size".into());
        }
        Ok(())
    }

    pub fn is_admin(&self, username: &str) -> bool {
        self.admins.iter().any(|a| a.eq_ignore_ascii_case(username))
    }
}

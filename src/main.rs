//! The `chatterbox` binary: flags and `CHATTERBOX_*` variables into a `Config`, logging,
//! signals, then the server.

use chatterbox::config::{Config, Sync};
use std::process::ExitCode;

const USAGE: &str = "usage: chatterbox [--listen ADDR] [--db PATH|postgres://USER@HOST:PORT/DB]
                  [--files-dir DIR] [--sync normal|full]
                  [--tls-cert FILE --tls-key FILE] [--registration open|invite|closed]
                  [--allowed-origin ORIGIN]... [--admin NAME]... [--max-connections N]
                  [--max-pending-per-ip N] [--max-sockets-per-user N]
                  [--max-file-bytes N] [--files-max-bytes N] [--user-files-max-bytes N]
                  [--uploads-per-minute N]
       chatterbox admin grant|revoke NAME [--db PATH]

Each flag can also be set with an environment variable: CHATTERBOX_LISTEN, CHATTERBOX_DB,
CHATTERBOX_SYNC, CHATTERBOX_ALLOWED_ORIGINS and CHATTERBOX_ADMINS (comma-separated),
CHATTERBOX_MAX_CONNECTIONS, CHATTERBOX_MAX_PENDING_PER_IP, CHATTERBOX_MAX_SOCKETS_PER_USER,
CHATTERBOX_TLS_CERT and CHATTERBOX_TLS_KEY (PEM files; SIGHUP reloads them),
CHATTERBOX_REGISTRATION, CHATTERBOX_FILES_DIR. Shared files are kept in PATH.files/ beside
a SQLite database; with PostgreSQL in --files-dir (default ./chatterbox-files).
Logging: RUST_LOG (default info).";

fn main() -> ExitCode {
    // tungstenite logs whole frames (message text) at trace level; cap it so that no
    // RUST_LOG setting can put message text in the logs.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .filter_module("tungstenite", log::LevelFilter::Debug)
        // The PostgreSQL client logs every statement's parameters (message text, token
        // hashes) at debug level: never below info.
        .filter_module("tokio_postgres", log::LevelFilter::Info)
        .filter_module("postgres", log::LevelFilter::Info)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("admin") {
        return admin_command(&args[1..], |k| std::env::var(k).ok());
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    install_panic_hook();
    let config = match parse_args(args.into_iter(), |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chatterbox: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // An unreachable PostgreSQL is a configuration error, said plainly before anything
    // starts (once running, a lost connection is retried instead).
    if let Err(e) = chatterbox::store::load::check_reachable(&config.db) {
        eprintln!("chatterbox: {e}");
        return ExitCode::from(2);
    }
    // argon2 allocates ~19 MiB per hash. glibc raises its mmap threshold after freeing
    // such a block and then keeps later ones in its arenas, so every password thread
    // would pin ~20 MiB for good. A fixed threshold keeps big blocks mmap'd and returned.
    // SAFETY: mallopt only changes allocator tuning; called before any other thread.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => match chatterbox::tls::load(cert, key) {
            Ok(t) => Some((t, cert.clone(), key.clone())),
            Err(e) => {
                eprintln!("chatterbox: cannot use the TLS certificate: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    // Signals are blocked before any thread starts, so every thread inherits the mask
    // and only the waiting thread below ever sees SIGINT/SIGTERM.
    let signals = block_signals();
    // Cluster nodes on one machine share the port (`SO_REUSEPORT`).
    let bound = match config.bus {
        Some(_) => chatterbox::reactor::bind_shared(config.listen),
        None => std::net::TcpListener::bind(config.listen),
    };
    let listener = match bound {
        Ok(l) => l,
        Err(e) => {
            eprintln!("chatterbox: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let mut server = match chatterbox::Server::new(config, listener) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chatterbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let reload = server.tls_reload();
    let mut files = None;
    if let Some((cfg, cert, key)) = tls {
        if let Err(e) = server.use_tls(cfg) {
            eprintln!("chatterbox: {e}");
            return ExitCode::FAILURE;
        }
        files = Some((cert, key));
    }
    println!("chatterbox listening on {scheme}://{}", server.local_addr());
    let handle = server.shutdown_handle();
    std::thread::spawn(move || loop {
        if wait_for_signal(&signals) != libc::SIGHUP {
            log::info!("signal received");
            handle.shutdown();
            return;
        }
        // Certificates are read here, off the reactor; a bad file keeps the old ones.
        match &files {
            Some((cert, key)) => match chatterbox::tls::load(cert, key) {
                Ok(cfg) => {
                    reload.replace(cfg);
                    log::info!("TLS certificate reloaded");
                }
                Err(e) => log::error!("TLS certificate not reloaded, keeping the old one: {e}"),
            },
            None => log::info!("SIGHUP: no TLS certificate to reload"),
        }
    });
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatterbox: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(
    args: impl Iterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, String> {
    let mut c = Config::default();
    let list = |v: String| -> Vec<String> {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    if let Some(v) = env("CHATTERBOX_LISTEN") {
        c.listen = v
            .parse()
            .map_err(|_| format!("bad CHATTERBOX_LISTEN {v:?}"))?;
    }
    if let Some(v) = env("CHATTERBOX_DB") {
        c.db = v.into();
    }
    if let Some(v) = env("CHATTERBOX_BUS") {
        c.bus = Some(v);
    }
    if let Some(v) = env("CHATTERBOX_NODE") {
        c.node = v;
    }
    if let Some(v) = env("CHATTERBOX_CLUSTER") {
        c.cluster = v;
    }
    if let Some(v) = env("CHATTERBOX_FILES_DIR") {
        c.files_dir = Some(v.into());
    }
    if let Some(v) = env("CHATTERBOX_REGISTRATION") {
        c.registration = chatterbox::config::Registration::parse(&v)?;
    }
    if let Some(v) = env("CHATTERBOX_TLS_CERT") {
        c.tls_cert = Some(v.into());
    }
    if let Some(v) = env("CHATTERBOX_TLS_KEY") {
        c.tls_key = Some(v.into());
    }
    if let Some(v) = env("CHATTERBOX_SYNC") {
        c.sync = parse_sync(&v)?;
    }
    if let Some(v) = env("CHATTERBOX_ALLOWED_ORIGINS") {
        c.allowed_origins = list(v);
    }
    if let Some(v) = env("CHATTERBOX_ADMINS") {
        c.admins = list(v);
    }
    if let Some(v) = env("CHATTERBOX_MAX_PENDING_PER_IP") {
        c.max_pending_per_ip = v.parse().map_err(|_| "bad CHATTERBOX_MAX_PENDING_PER_IP")?;
    }
    if let Some(v) = env("CHATTERBOX_MAX_SOCKETS_PER_USER") {
        c.max_sockets_per_user = v
            .parse()
            .map_err(|_| "bad CHATTERBOX_MAX_SOCKETS_PER_USER")?;
    }
    if let Some(v) = env("CHATTERBOX_MAX_CONNECTIONS") {
        c.max_connections = Some(v.parse().map_err(|_| "bad CHATTERBOX_MAX_CONNECTIONS")?);
    }
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (flag, None),
        };
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(format!("{flag} needs a value")),
        };
        match flag.as_str() {
            "--listen" => {
                c.listen = value
                    .parse()
                    .map_err(|_| format!("bad address {value:?}"))?
            }
            "--db" => c.db = value.into(),
            "--bus" => c.bus = Some(value),
            "--node" => c.node = value,
            "--cluster" => c.cluster = value,
            "--files-dir" => c.files_dir = Some(value.into()),
            "--tls-cert" => c.tls_cert = Some(value.into()),
            "--registration" => c.registration = chatterbox::config::Registration::parse(&value)?,
            "--tls-key" => c.tls_key = Some(value.into()),
            "--sync" => c.sync = parse_sync(&value)?,
            "--allowed-origin" => c.allowed_origins.push(value),
            "--admin" => c.admins.push(value),
            "--max-connections" => {
                c.max_connections = Some(value.parse().map_err(|_| "bad --max-connections")?)
            }
            "--max-pending-per-ip" => {
                c.max_pending_per_ip = value.parse().map_err(|_| "bad --max-pending-per-ip")?
            }
            "--max-sockets-per-user" => {
                c.max_sockets_per_user = value.parse().map_err(|_| "bad --max-sockets-per-user")?
            }
            // Knobs for tests and operators who need them; not in the usage line.
            "--ping-interval-ms" => c.ping_interval = ms(&value)?,
            "--node-heartbeat-ms" => c.node_heartbeat = ms(&value)?,
            "--node-timeout-ms" => c.node_timeout = ms(&value)?,
            "--ws-idle-timeout-ms" => c.ws_idle_timeout = ms(&value)?,
            "--request-timeout-ms" => c.request_timeout = ms(&value)?,
            "--keepalive-timeout-ms" => c.keepalive_timeout = ms(&value)?,
            "--msg-rate" => c.msg_rate = value.parse().map_err(|_| "bad --msg-rate")?,
            "--msg-burst" => c.msg_burst = value.parse().map_err(|_| "bad --msg-burst")?,
            "--typing-rate" => c.typing_rate = value.parse().map_err(|_| "bad --typing-rate")?,
            "--ws-frame-rate" => {
                c.ws_frame_rate = value.parse().map_err(|_| "bad --ws-frame-rate")?
            }
            "--ws-frame-burst" => {
                c.ws_frame_burst = value.parse().map_err(|_| "bad --ws-frame-burst")?
            }
            "--action-rate" => c.action_rate = value.parse().map_err(|_| "bad --action-rate")?,
            "--action-burst" => c.action_burst = value.parse().map_err(|_| "bad --action-burst")?,
            "--max-rooms-owned" => {
                c.max_rooms_owned = value.parse().map_err(|_| "bad --max-rooms-owned")?
            }
            "--max-memberships" => {
                c.max_memberships = value.parse().map_err(|_| "bad --max-memberships")?
            }
            "--login-failures-per-hour" => {
                c.login_failures_per_hour =
                    value.parse().map_err(|_| "bad --login-failures-per-hour")?
            }
            "--auth-per-minute" => {
                c.auth_per_minute = value.parse().map_err(|_| "bad --auth-per-minute")?
            }
            "--stall-timeout-ms" => c.stall_timeout = ms(&value)?,
            "--max-file-bytes" => {
                c.max_file_bytes = value.parse().map_err(|_| "bad --max-file-bytes")?
            }
            "--files-max-bytes" => {
                c.files_max_bytes = value.parse().map_err(|_| "bad --files-max-bytes")?
            }
            "--user-files-max-bytes" => {
                c.user_files_max_bytes = value.parse().map_err(|_| "bad --user-files-max-bytes")?
            }
            "--uploads-per-minute" => {
                c.uploads_per_minute = value.parse().map_err(|_| "bad --uploads-per-minute")?
            }
            "--max-output-bytes" => {
                c.max_output_bytes = value.parse().map_err(|_| "bad --max-output-bytes")?
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    c.validate()?;
    Ok(c)
}

const ADMIN_USAGE: &str = "usage: chatterbox admin grant|revoke NAME [--db PATH]
       chatterbox admin reset-password NAME [--db PATH]
       chatterbox admin invite [--uses N] [--expires DAYSd] [--db PATH]
       chatterbox admin add-user NAME [--db PATH]   (password on stdin)

grant/revoke: admin rights of an existing account. reset-password: prints a one-time code,
valid for an hour, for POST /account/reset. invite: prints an invite code for
--registration invite (default 1 use, 7 days). add-user: creates an account (for
--registration closed). The database is ./chatterbox.db or CHATTERBOX_DB (a SQLite path
or a postgres:// URL); a running server on it follows within a second.";

/// `chatterbox admin grant|revoke NAME [--db PATH]`.
fn admin_command(args: &[String], env: impl Fn(&str) -> Option<String>) -> ExitCode {
    let mut db = env("CHATTERBOX_DB").unwrap_or_else(|| chatterbox::config::DEFAULT_DB.into());
    let mut words = Vec::new();
    let mut uses: u32 = 1;
    let mut days: i64 = 7;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--db" => match it.next() {
                Some(p) => db = p.clone(),
                None => return usage_error(ADMIN_USAGE),
            },
            "--uses" => match it.next().and_then(|v| v.parse().ok()).filter(|n| *n >= 1) {
                Some(n) => uses = n,
                None => return usage_error(ADMIN_USAGE),
            },
            "--expires" => {
                let v = it.next().map(|v| v.trim_end_matches('d').to_string());
                match v
                    .and_then(|v| v.parse().ok())
                    .filter(|d| (1..=365).contains(d))
                {
                    Some(d) => days = d,
                    None => return usage_error(ADMIN_USAGE),
                }
            }
            "-h" | "--help" => {
                println!("{ADMIN_USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => words.push(a.as_str()),
        }
    }
    let path = std::path::Path::new(&db);
    let (grant, name) = match words.as_slice() {
        ["grant", name] => (true, *name),
        ["revoke", name] => (false, *name),
        ["reset-password", name] => return admin_codes(path, Some(name), uses, days),
        ["invite"] => return admin_codes(path, None, uses, days),
        ["add-user", name] => return admin_add_user(path, name),
        _ => return usage_error(ADMIN_USAGE),
    };
    if !chatterbox::store::load::exists(path) {
        eprintln!("chatterbox: no database at {db}");
        return ExitCode::FAILURE;
    }
    let result = chatterbox::store::load::open_writer(path, false).and_then(|conn| {
        chatterbox::store::load::set_admin(conn.db(), name, grant).map_err(|e| e.to_string())
    });
    match result {
        Ok(true) => {
            let what = if grant {
                "is now an admin"
            } else {
                "is no longer an admin"
            };
            println!("{name} {what}");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("chatterbox: no account named {name:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("chatterbox: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `reset-password NAME` (with `name`) or `invite`: prints the code.
fn admin_codes(path: &std::path::Path, name: Option<&str>, uses: u32, days: i64) -> ExitCode {
    use chatterbox::store::load;
    if !load::exists(path) {
        eprintln!("chatterbox: no database at {}", path.display());
        return ExitCode::FAILURE;
    }
    let result = load::open_writer(path, false).and_then(|conn| {
        match name {
            Some(n) => load::create_reset_code(conn.db(), n, 3_600_000),
            None => load::create_invite(conn.db(), uses, days * 86_400_000).map(Some),
        }
        .map_err(|e| e.to_string())
    });
    match (result, name) {
        (Ok(Some(code)), Some(n)) => {
            println!("{code}");
            eprintln!("one-time reset code for {n}, valid for an hour: POST /account/reset {{\"name\", \"code\", \"new\"}}");
            ExitCode::SUCCESS
        }
        (Ok(Some(code)), None) => {
            println!("{code}");
            eprintln!("invite code for {uses} registration(s), valid for {days} days");
            ExitCode::SUCCESS
        }
        (Ok(None), _) => {
            eprintln!("chatterbox: no account named {:?}", name.unwrap_or(""));
            ExitCode::FAILURE
        }
        (Err(e), _) => {
            eprintln!("chatterbox: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `add-user NAME`: the password is the first line of stdin.
fn admin_add_user(path: &std::path::Path, name: &str) -> ExitCode {
    let mut password = String::new();
    if std::io::stdin().read_line(&mut password).is_err() {
        eprintln!("chatterbox: give the password on stdin");
        return ExitCode::from(2);
    }
    let password = password.trim_end_matches(['\n', '\r']);
    if !chatterbox::auth::valid_password(password) {
        eprintln!("chatterbox: passwords are 8 to 1024 bytes");
        return ExitCode::from(2);
    }
    if !chatterbox::store::load::exists(path) {
        eprintln!("chatterbox: no database at {}", path.display());
        return ExitCode::FAILURE;
    }
    let phc = match chatterbox::auth::pool::hash_password(password) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("chatterbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = chatterbox::store::load::open_writer(path, false)
        .and_then(|conn| chatterbox::store::load::add_user(conn.db(), name, &phc));
    match result {
        Ok(_) => {
            println!("{name} can log in now");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chatterbox: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(usage: &str) -> ExitCode {
    eprintln!("{usage}");
    ExitCode::from(2)
}

/// A panic anywhere is a bug that may have left the reactor's state half-changed, so the
/// process does not try to carry on: it logs where, and exits non-zero at once (every
/// message it acknowledged is already committed) for its supervisor to restart it.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("?");
        log::error!("internal error in thread {name}: {info}; exiting, restart the server");
        default(info);
        std::process::exit(70);
    }));
}

fn ms(v: &str) -> Result<std::time::Duration, String> {
    v.parse()
        .map(std::time::Duration::from_millis)
        .map_err(|_| format!("bad duration {v:?} (milliseconds)"))
}

fn parse_sync(v: &str) -> Result<Sync, String> {
    match v {
        "normal" => Ok(Sync::Normal),
        "full" => Ok(Sync::Full),
        _ => Err(format!("--sync takes normal or full, not {v:?}")),
    }
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a local, zero-initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        // Past a file-size limit a write should fail with EFBIG (and be reported as a
        // storage fault), not kill the process.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        set
    }
}

/// Waits for SIGINT, SIGTERM or SIGHUP; returns which.
fn wait_for_signal(set: &libc::sigset_t) -> libc::c_int {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is a valid signal set blocked in every thread; sigwait only writes
    // the delivered signal number into `sig`.
    unsafe {
        libc::sigwait(set, &mut sig);
    }
    sig
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_environment() {
        let env = |k: &str| (k == "CHATTERBOX_DB").then(|| "from-env.db".to_string());
        let args = ["--listen", "127.0.0.1:0", "--sync=full", "--admin", "root"];
        let c = parse_args(args.iter().map(|s| s.to_string()), env).unwrap();
        assert_eq!(c.db.to_str(), Some("from-env.db"));
        assert_eq!(c.sync, Sync::Full);
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.admins, vec!["root"]);
        assert!(parse_args(["--sync", "maybe"].iter().map(|s| s.to_string()), |_| None).is_err());
        assert!(parse_args(["--bogus", "1"].iter().map(|s| s.to_string()), |_| None).is_err());
    }
}

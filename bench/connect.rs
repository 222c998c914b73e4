//! `connect` mode: open N authenticated WebSockets at a bounded rate, wait for every
//! `hello`, hold them, and read the server's memory while they are all open.
//!
//! One process holds at most [`PER_PROCESS`] sockets (the machine allows 20,000 open
//! files per process, and each socket is one); past that the parent spawns children, each
//! bound to its own source address 127.0.0.2, 127.0.0.3, … so the ephemeral ports of one
//! address never run out. A child prints one JSON line once its sockets are greeted, then
//! holds them until its standard input closes; the parent reads the server's RSS while
//! every child still holds its sockets.

use crate::client::Fleet;
use crate::{merge, percentile, rss_kib, server_cpu, tokens, GenCpu, Opts};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sockets one process opens before the work is split over several processes.
pub const PER_PROCESS: usize = 10_000;
/// Beyond this many sockets `connect` splits even without `--procs`.
const SPLIT_ABOVE: usize = 19_000;
/// The longest a child holds its sockets when nobody tells it to stop.
const CHILD_HOLD_CAP: Duration = Duration::from_secs(300);

pub fn connect(o: &Opts) -> Result<Value, String> {
    let procs = if o.n > SPLIT_ABOVE {
        o.procs.max(o.n.div_ceil(PER_PROCESS))
    } else {
        o.procs
    };
    if procs > 1 && !o.child {
        return split(o, procs);
    }
    let tokens = tokens(o)?;
    let rss_before = o.pid.and_then(rss_kib);
    let cpu0 = server_cpu(o);
    let mut fleet = Fleet::new(o.server, o.source, o.tls.clone())?;
    let gen = GenCpu::start();
    let t0 = Instant::now();
    let opened = fleet.open_paced(o.n, o.rate, &tokens, Duration::from_secs(60))?;
    let open_secs = t0.elapsed().as_secs_f64();
    let cpu1 = server_cpu(o);
    let gen_cpu = gen.finish(0.0);
    let mut hello = std::mem::take(&mut fleet.hello_us);
    hello.sort_unstable();
    let failed = o.n - opened;
    let mut v = json!({
        "mode": "connect",
        "peer": o.peer,
        "ok": failed == 0,
        "processes": 1,
        "users": o.users,
        "connections": opened,
        "failed": failed,
        "open_secs": open_secs,
        "upgrades_per_sec": opened as f64 / open_secs,
        "hello_ms_p50": percentile(&hello, 0.50),
        "hello_ms_p99": percentile(&hello, 0.99),
        "hello_ms_max": percentile(&hello, 1.0),
        "server_cpu_secs": cpu0.zip(cpu1).map(|(a, b)| b - a),
    });
    merge(&mut v, gen_cpu);
    if o.child {
        // Report, then hold until the parent closes our stdin.
        println!("{v}");
        let released = Arc::new(AtomicBool::new(false));
        let flag = released.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            flag.store(true, Ordering::Relaxed);
        });
        let until = Instant::now() + CHILD_HOLD_CAP;
        while !released.load(Ordering::Relaxed) && Instant::now() < until {
            fleet.run_for(Duration::from_millis(50), |_| {});
        }
        return Ok(Value::Null);
    }
    // Let the server settle before reading its memory.
    fleet.run_for(Duration::from_millis(500), |_| {});
    let rss_after = o.pid.and_then(rss_kib);
    if o.hold > 0.0 {
        fleet.run_for(Duration::from_secs_f64(o.hold), |_| {});
    }
    v["server_rss_before_kib"] = json!(rss_before);
    v["server_rss_after_kib"] = json!(rss_after);
    v["server_bytes_per_conn"] = json!(per_conn(rss_before, rss_after, opened as u64));
    Ok(v)
}

fn per_conn(before: Option<u64>, after: Option<u64>, opened: u64) -> Option<f64> {
    let (a, b) = before.zip(after)?;
    (opened > 0).then(|| (b.saturating_sub(a) * 1024) as f64 / opened as f64)
}

/// Writes the tokens for children to read (`--tokens @FILE`), readable by us alone:
/// 1,900 tokens of 64 characters come close to the kernel's 128 KiB limit on one
/// command-line argument.
pub fn write_token_file(tokens: &[String]) -> Result<std::path::PathBuf, String> {
    let path = std::env::temp_dir().join(format!("chatterbox-bench-tokens-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(tokens.join(",").as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Past one process's descriptor limit: children, each with its own source address.
fn split(o: &Opts, procs: usize) -> Result<Value, String> {
    let token_file = write_token_file(&tokens(o)?)?;
    let tokens = format!("@{}", token_file.display());
    let rss_before = o.pid.and_then(rss_kib);
    let cpu0 = server_cpu(o);
    let gen = GenCpu::start();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let per = o.n.div_ceil(procs);
    let mut children: Vec<Child> = Vec::new();
    let spawned = (0..procs).try_for_each(|i| {
        let n = per.min(o.n - (i * per).min(o.n));
        let c = Command::new(&exe)
            .arg("connect")
            .args(["--child", "1", "--json", "--server", &o.server_arg()])
            .args(o.cacert.iter().flat_map(|c| ["--cacert", c.as_str()]))
            .args([
                "-n",
                &n.to_string(),
                "--rate",
                &(o.rate / procs as f64).to_string(),
            ])
            .args(["--tokens", &tokens])
            .args([
                "--source",
                &format!("127.0.0.{}", o.source_base as usize + i % 8),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        children.push(c);
        Ok::<(), String>(())
    });
    let results = spawned.and_then(|()| {
        children
            .iter_mut()
            .map(|c| {
                // Each child prints one line once its sockets are greeted (or gave up).
                let mut line = String::new();
                let out = c.stdout.take().ok_or("no child stdout")?;
                BufReader::new(out)
                    .read_line(&mut line)
                    .map_err(|e| e.to_string())?;
                serde_json::from_str::<Value>(&line).map_err(|e| format!("child: {e}: {line:?}"))
            })
            .collect::<Result<Vec<Value>, String>>()
    });
    // Every child now holds its sockets (or failed): the generator's CPU is its own plus
    // what each child reports for its opening phase; read the server, then release them.
    let children_cpu = results.as_ref().map_or(0.0, |rs| {
        rs.iter().filter_map(|r| r["bench_cpu_secs"].as_f64()).sum()
    });
    let gen_cpu = gen.finish(children_cpu);
    let cpu1 = server_cpu(o);
    let mut rss_after = None;
    if results.is_ok() {
        std::thread::sleep(Duration::from_millis(500));
        rss_after = o.pid.and_then(rss_kib);
        if o.hold > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(o.hold));
        }
    }
    for c in &mut children {
        drop(c.stdin.take());
    }
    for c in &mut children {
        let _ = c.wait();
    }
    let _ = std::fs::remove_file(&token_file);
    let results = results?;
    let sum = |k: &str| results.iter().filter_map(|r| r[k].as_u64()).sum::<u64>();
    let max = |k: &str| {
        results
            .iter()
            .filter_map(|r| r[k].as_f64())
            .fold(0.0, f64::max)
    };
    let opened = sum("connections");
    let failed = o.n as u64 - opened;
    let open_secs = max("open_secs");
    let mut v = json!({
        "mode": "connect",
        "peer": o.peer,
        "ok": failed == 0,
        "processes": procs,
        "connections": opened,
        "failed": failed,
        "open_secs": open_secs,
        "upgrades_per_sec": opened as f64 / open_secs.max(1e-9),
        "hello_ms_p50": max("hello_ms_p50"),
        "hello_ms_p99": max("hello_ms_p99"),
        "hello_ms_max": max("hello_ms_max"),
        "server_cpu_secs": cpu0.zip(cpu1).map(|(a, b)| b - a),
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "server_bytes_per_conn": per_conn(rss_before, rss_after, opened),
        "users": o.users,
    });
    merge(&mut v, gen_cpu);
    // Invalid when any child's core was saturated too.
    if let Some(r) = results.iter().find(|r| r["valid"] == false) {
        if v["valid"] != false {
            v["valid"] = json!(false);
            v["invalid_reason"] = r["invalid_reason"].clone();
        }
    }
    Ok(v)
}

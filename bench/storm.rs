//! `storm` mode: the reconnect storm after a node dies. N authenticated sockets are opened
//! to the first `--server` (the victim); the victim is killed (`--kill PID`, SIGKILL); every
//! socket then reconnects to the other servers the way the web UI does, with jittered
//! exponential backoff, until each is greeted again. Reports how long the sockets took to
//! be back (from the first close each process saw, so it includes the kernel closing the
//! victim's sockets one by one), each socket's own outage (from its close to its `hello`),
//! how many tries it took, and the peak rate at which they came back.
//!
//! The sockets live in child processes (at most [`PER_PROCESS`] each, each bound to its
//! own source address), so the parent is free to kill the victim once all of them hold.
//! A child prints one line when its sockets are greeted, and a second one, with every
//! socket's reconnect time, when all are back or [`BACK_WITHIN`] has passed.

use crate::client::Fleet;
use crate::connect::{write_token_file, PER_PROCESS};
use crate::{percentile, tokens, Opts};
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a child waits for its sockets to be back after the first one closed.
const BACK_WITHIN: Duration = Duration::from_secs(120);
/// How long a child holds its sockets waiting for the victim to die.
const KILL_WITHIN: Duration = Duration::from_secs(120);
/// The longest wait between two tries (the web UI's ceiling).
const MAX_WAIT_MS: u64 = 30_000;
/// The first wait's ceiling when `--first-wait-ms 0` asks for an immediate first try.
const RETRY_FLOOR_MS: u64 = 250;

/// The wait before try `attempt` (0 = the first after the close): a random time between
/// half and all of `first_ms · 2^attempt`, capped at [`MAX_WAIT_MS`]. `first_ms` 0 makes
/// the first try immediate (every client at once: the storm without jitter) and the later
/// ones follow the same rule from [`RETRY_FLOOR_MS`].
pub fn backoff_ms(first_ms: u64, attempt: u32, unit: f64) -> u64 {
    if first_ms == 0 && attempt == 0 {
        return 0;
    }
    let base = if first_ms == 0 {
        RETRY_FLOOR_MS
    } else {
        first_ms
    };
    let ceiling = base.saturating_mul(1 << attempt.min(16)).min(MAX_WAIT_MS);
    ceiling / 2 + (unit.clamp(0.0, 1.0) * (ceiling / 2) as f64) as u64
}

/// A small xorshift: the jitter needs spread, not secrecy.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn storm(o: &Opts) -> Result<Value, String> {
    if o.servers.len() < 2 {
        return Err("storm needs the victim and at least one more --server".into());
    }
    if o.child {
        return child(o);
    }
    let procs = o.procs.max(o.n.div_ceil(PER_PROCESS)).max(1);
    let tokens = write_token_file(&tokens(o)?)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let per = o.n.div_ceil(procs);
    let mut children: Vec<Child> = Vec::new();
    let mut spawn = || -> Result<(), String> {
        for i in 0..procs {
            let n = per.min(o.n - (i * per).min(o.n));
            let mut c = Command::new(&exe);
            c.arg("storm").args(["--child", "1", "--json"]);
            for s in &o.servers {
                c.args(["--server", &s.to_string()]);
            }
            c.args(["-n", &n.to_string()])
                .args(["--rate", &(o.rate / procs as f64).to_string()])
                .args(["--first-wait-ms", &o.first_wait_ms.to_string()])
                .args(["--tokens", &format!("@{}", tokens.display())])
                .args([
                    "--source",
                    &format!("127.0.0.{}", o.source_base as usize + i % 8),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            children.push(c.spawn().map_err(|e| e.to_string())?);
        }
        Ok(())
    };
    let spawned = spawn();
    let mut outs: Vec<BufReader<std::process::ChildStdout>> = children
        .iter_mut()
        .filter_map(|c| c.stdout.take().map(BufReader::new))
        .collect();
    let line = |r: &mut BufReader<std::process::ChildStdout>| -> Result<Value, String> {
        let mut l = String::new();
        r.read_line(&mut l).map_err(|e| e.to_string())?;
        serde_json::from_str(&l).map_err(|e| format!("child: {e}: {l:?}"))
    };
    let result = spawned.and_then(|()| {
        let ready: Vec<Value> = outs.iter_mut().map(line).collect::<Result<_, _>>()?;
        let held: u64 = ready.iter().filter_map(|r| r["held"].as_u64()).sum();
        // Let the victim settle with everyone in, then kill it.
        std::thread::sleep(Duration::from_secs(1));
        if let Some(pid) = o.kill {
            // SAFETY: a signal to a process id we were given; no memory is involved.
            if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
                return Err(format!("kill {pid}: {}", std::io::Error::last_os_error()));
            }
        }
        let done: Vec<Value> = outs.iter_mut().map(line).collect::<Result<_, _>>()?;
        Ok((held, done))
    });
    for c in &mut children {
        drop(c.stdin.take());
    }
    for c in &mut children {
        let _ = c.wait();
    }
    let _ = std::fs::remove_file(&tokens);
    let (held, done) = result?;
    let all = |key: &str| {
        let mut v: Vec<u32> = done
            .iter()
            .filter_map(|r| r[key].as_array())
            .flatten()
            .filter_map(|x| x.as_u64())
            .map(|x| x.min(u32::MAX as u64) as u32)
            .collect();
        v.sort_unstable();
        v
    };
    let back = all("back_ms");
    let gap: Vec<u32> = all("gap_ms")
        .iter()
        .map(|ms| ms.saturating_mul(1000))
        .collect();
    let sum = |k: &str| done.iter().filter_map(|r| r[k].as_u64()).sum::<u64>();
    let reconnected = back.len() as u64;
    // The busiest 100 ms for the surviving nodes: sockets greeted again in it, per second.
    let mut buckets = std::collections::HashMap::<u32, u32>::new();
    for ms in &back {
        *buckets.entry(ms / 100).or_default() += 1;
    }
    let peak = buckets.values().max().copied().unwrap_or(0) as f64 * 10.0;
    let us: Vec<u32> = back.iter().map(|ms| ms.saturating_mul(1000)).collect();
    Ok(json!({
        "mode": "storm",
        "ok": held == o.n as u64 && reconnected == held,
        "processes": procs,
        "sockets": o.n,
        "held": held,
        "reconnected": reconnected,
        "failed": held - reconnected.min(held),
        "first_wait_ms": o.first_wait_ms,
        "tries": sum("tries"),
        "refused": sum("refused"),
        "back_ms_p50": percentile(&us, 0.50),
        "back_ms_p90": percentile(&us, 0.90),
        "back_ms_p99": percentile(&us, 0.99),
        "back_ms_max": percentile(&us, 1.0),
        "peak_reconnects_per_sec": peak,
        "outage_ms_p50": percentile(&gap, 0.50),
        "outage_ms_p99": percentile(&gap, 0.99),
        "outage_ms_max": percentile(&gap, 1.0),
    }))
}

/// One child: opens its sockets to the victim, reports, then redials every socket that
/// closes, with backoff, until all are greeted again.
fn child(o: &Opts) -> Result<Value, String> {
    let tokens = tokens(o)?;
    let victim = o.servers[0];
    let others = &o.servers[1..];
    let mut fleet = Fleet::new(victim, o.source, o.tls.clone())?;
    let held = fleet.open_paced(o.n, o.rate, &tokens, Duration::from_secs(60))?;
    println!("{}", json!({ "held": held }));
    let parent_gone = Arc::new(AtomicBool::new(false));
    let flag = parent_gone.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        flag.store(true, Ordering::Relaxed);
    });
    fleet.closed.clear();
    fleet.greeted.clear();
    // Only sockets that were in before the kill are redialled and counted.
    let was_held: Vec<bool> = (0..o.n).map(|i| fleet.is_greeted(i)).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64);
    let n = o.n;
    let mut tries = vec![0u32; n];
    let mut back_at: Vec<Option<Instant>> = vec![None; n];
    let mut closed_at: Vec<Option<Instant>> = vec![None; n];
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut first_close: Option<Instant> = None;
    let mut refused = 0u64;
    let mut remaining = held;
    let waited = Instant::now();
    loop {
        let now = Instant::now();
        match first_close {
            None if now > waited + KILL_WITHIN => break,
            Some(t) if now > t + BACK_WITHIN => break,
            _ => {}
        }
        if remaining == 0 || parent_gone.load(Ordering::Relaxed) {
            break;
        }
        let errors = fleet.errors;
        let timeout = due
            .peek()
            .map(|Reverse((at, _))| at.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(50))
            .min(Duration::from_millis(50));
        fleet.poll_once(timeout, |_| {});
        refused += fleet.errors - errors;
        let now = Instant::now();
        for i in std::mem::take(&mut fleet.closed) {
            if !was_held[i] {
                continue;
            }
            first_close.get_or_insert(now);
            closed_at[i].get_or_insert(now);
            let wait = backoff_ms(o.first_wait_ms, tries[i], rng.unit());
            due.push(Reverse((now + Duration::from_millis(wait), i)));
        }
        for i in std::mem::take(&mut fleet.greeted) {
            if tries[i] > 0 && back_at[i].is_none() {
                back_at[i] = Some(now);
                remaining -= 1;
            }
        }
        while let Some(Reverse((at, i))) = due.peek().copied() {
            if at > now {
                break;
            }
            due.pop();
            let server = others[(i + tries[i] as usize) % others.len()];
            tries[i] += 1;
            fleet.redial(i, server, &tokens[i % tokens.len()]);
        }
    }
    let t0 = first_close.unwrap_or(waited);
    let back_ms: Vec<u64> = back_at
        .iter()
        .flatten()
        .map(|t| t.duration_since(t0).as_millis() as u64)
        .collect();
    // Each socket's own outage: from its close to its hello elsewhere.
    let gap_ms: Vec<u64> = back_at
        .iter()
        .zip(&closed_at)
        .filter_map(|(b, c)| Some(b.as_ref()?.duration_since(*c.as_ref()?).as_millis() as u64))
        .collect();
    println!(
        "{}",
        json!({
            "back_ms": back_ms,
            "gap_ms": gap_ms,
            "tries": tries.iter().map(|&t| t as u64).sum::<u64>(),
            "refused": refused,
        })
    );
    Ok(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_doubles_and_caps() {
        assert_eq!(backoff_ms(1000, 0, 0.0), 500);
        assert_eq!(backoff_ms(1000, 0, 1.0), 1000);
        assert_eq!(backoff_ms(1000, 1, 0.0), 1000);
        assert_eq!(backoff_ms(1000, 3, 1.0), 8000);
        assert_eq!(backoff_ms(1000, 10, 1.0), MAX_WAIT_MS);
        assert_eq!(backoff_ms(1000, 40, 0.0), MAX_WAIT_MS / 2);
        assert_eq!(backoff_ms(0, 0, 0.7), 0);
        assert_eq!(backoff_ms(0, 1, 1.0), 2 * RETRY_FLOOR_MS);
    }
}

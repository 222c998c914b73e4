//! A thread that notices account changes made outside this process (`chatterbox admin
//! grant NAME` on the same database): once a second it reads which accounts are admins
//! or suspended and, when that changed, tells the reactor.

use super::load::{account_flags, open_reader};
use super::{Completion, Notifier, Outcome};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the database is looked at.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Starts the watcher; `known` is what the reactor loaded. The thread ends when the
/// reactor is gone.
pub fn start(
    path: &Path,
    known: Vec<(i64, bool, bool)>,
    notify: Notifier,
) -> Result<JoinHandle<()>, String> {
    let conn = open_reader(path)?;
    std::thread::Builder::new()
        .name("store-watch".into())
        .spawn(move || {
            let mut last = known;
            loop {
                std::thread::sleep(WATCH_INTERVAL);
                let Ok(now) = account_flags(&conn) else {
                    continue;
                };
                if now == last {
                    continue;
                }
                last = now.clone();
                let c = Completion {
                    reply: None,
                    outcome: Outcome::Flags(now),
                };
                if !notify.send(c) {
                    return;
                }
            }
        })
        .map_err(|e| e.to_string())
}

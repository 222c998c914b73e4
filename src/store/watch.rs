//! A thread that notices account changes made outside this process (`chatterbox admin
//! grant NAME`, `add-user NAME` on the same database): once a second it reads which
//! accounts are admins or suspended, and which accounts are new, and tells the reactor.

use super::load::{account_flags, max_user_id, open_reader, users_after};
use super::sql::Conn;
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
            let conn: Conn = conn;
            let mut last = known;
            let mut newest = max_user_id(conn.db()).unwrap_or(0);
            loop {
                std::thread::sleep(WATCH_INTERVAL);
                // A lost PostgreSQL connection comes back here, with backoff.
                if !conn.ensure() {
                    continue;
                }
                // Accounts this server registered come back here too; the Hub skips
                // those it knows.
                if let Ok(rows) = users_after(conn.db(), newest) {
                    if let Some(last_row) = rows.last() {
                        newest = last_row.id;
                        let c = Completion {
                            reply: None,
                            outcome: Outcome::NewUsers(rows),
                        };
                        if !notify.send(c) {
                            return;
                        }
                    }
                }
                let Ok(now) = account_flags(conn.db()) else {
                    continue;
                };
                if now == last {
                    continue;
                }
                // Only what changed between two reads: a read taken just before this
                // server's own change committed must not undo it in memory.
                let changed = diff(&last, &now);
                last = now;
                let c = Completion {
                    reply: None,
                    outcome: Outcome::Flags(changed),
                };
                if !notify.send(c) {
                    return;
                }
            }
        })
        .map_err(|e| e.to_string())
}

/// Accounts whose flags differ from `before` to `after`; one that left the list has
/// both flags off now.
fn diff(before: &[(i64, bool, bool)], after: &[(i64, bool, bool)]) -> Vec<(i64, bool, bool)> {
    let mut out: Vec<(i64, bool, bool)> = after
        .iter()
        .filter(|f| !before.contains(f))
        .copied()
        .collect();
    for (id, _, _) in before {
        if !after.iter().any(|(a, _, _)| a == id) {
            out.push((*id, false, false));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn diff_lists_changes_only() {
        let before = [(1, true, false), (2, false, true)];
        let after = [(1, true, false), (3, true, false)];
        assert_eq!(
            super::diff(&before, &after),
            vec![(3, true, false), (2, false, false)]
        );
    }
}

//! A fixed set of worker threads taking jobs from one shared channel: the argon2 password
//! pool and the SQLite readers are both this, with their own per-thread state.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Starts one thread per element of `states`, named `name-N`. Each takes the next job and
/// runs `work` on it with its own state; `work` returns false when its answers have
/// nowhere to go (the reactor is gone), which ends that thread. Dropping the returned
/// sender ends them all once the queue is empty.
pub fn start<J, S, F>(
    name: &str,
    states: Vec<S>,
    work: F,
) -> std::io::Result<(Sender<J>, Vec<JoinHandle<()>>)>
where
    J: Send + 'static,
    S: Send + 'static,
    F: Fn(&mut S, J) -> bool + Send + Sync + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel::<J>();
    let rx = Arc::new(Mutex::new(rx));
    let work = Arc::new(work);
    let mut handles = Vec::with_capacity(states.len());
    for (i, mut state) in states.into_iter().enumerate() {
        let rx = Arc::clone(&rx);
        let work = Arc::clone(&work);
        handles.push(
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    while let Some(job) = next(&rx) {
                        if !work(&mut state, job) {
                            return;
                        }
                    }
                })?,
        );
    }
    Ok((tx, handles))
}

fn next<J>(rx: &Mutex<Receiver<J>>) -> Option<J> {
    // The lock is held only while waiting for one job, so the threads take turns.
    rx.lock().ok()?.recv().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_job_runs_once_on_some_thread() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (tx, handles) = super::start("t", vec![0u32, 0u32], move |seen: &mut u32, j: u32| {
            *seen += 1;
            done_tx.send(j).is_ok()
        })
        .unwrap();
        for j in 0..100 {
            tx.send(j).unwrap();
        }
        drop(tx);
        for h in handles {
            h.join().unwrap();
        }
        let mut got: Vec<u32> = done_rx.try_iter().collect();
        got.sort_unstable();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }
}

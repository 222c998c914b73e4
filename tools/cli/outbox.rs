//! Lines typed in `chat` until the server has stored them: each gets a `client_id`, is
//! sent, and is sent again with the same id after a rate-limit refusal (when the server
//! says) or a reconnect, so nothing typed is lost and nothing is stored twice.

use crate::catchup::{jitter_ms, retry_after};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const REF_PREFIX: &str = "out:";

struct Pending {
    cid: String,
    req: Value,
    /// Sent and not answered yet.
    sent: bool,
    /// Not to be sent before this.
    due: Instant,
}

#[derive(Default)]
pub struct Outbox {
    items: VecDeque<Pending>,
    nonce: String,
    next: u64,
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox {
            nonce: format!("{:08x}", getrandom::u32().unwrap_or(0)),
            ..Outbox::default()
        }
    }

    /// Queues a `send` or `dm` request.
    pub fn push(&mut self, mut req: Value, now: Instant) {
        self.next += 1;
        let cid = format!("cli-{}-{}", self.nonce, self.next);
        req["client_id"] = json!(cid);
        req["ref"] = json!(format!("{REF_PREFIX}{cid}"));
        self.items.push_back(Pending {
            cid,
            req,
            sent: false,
            due: now,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The requests to send now, in the order typed; a line waits while an earlier one
    /// waits out the rate limit, so lines are stored in the order they were typed.
    pub fn due(&mut self, now: Instant) -> Vec<Value> {
        let mut out = Vec::new();
        for p in &mut self.items {
            if p.sent {
                continue;
            }
            if p.due > now {
                break;
            }
            p.sent = true;
            out.push(p.req.clone());
        }
        out
    }

    /// Looks at a frame: the echo of a queued line clears it; a rate-limit refusal
    /// schedules it again; any other refusal drops it and says why (returned).
    pub fn answer(&mut self, v: &Value, now: Instant) -> Option<String> {
        let cid = v["ref"].as_str()?.strip_prefix(REF_PREFIX)?;
        let i = self.items.iter().position(|p| p.cid == cid)?;
        match v["type"].as_str() {
            Some("message") => {
                self.items.remove(i);
                None
            }
            Some("error") if v["code"] == "rate_limited" => {
                let wait = retry_after(v) + Duration::from_millis(jitter_ms(50));
                // This one and every later line wait, to keep the order.
                for p in self.items.iter_mut().skip(i) {
                    p.sent = false;
                    p.due = p.due.max(now + wait);
                }
                None
            }
            Some("error") => {
                let p = self.items.remove(i)?;
                let text = p.req["text"].as_str().unwrap_or("");
                let short: String = text.chars().take(40).collect();
                let files = match p.req["attachments"].as_array().map(Vec::len) {
                    Some(n) if n > 0 => format!(" with {n} file(s)"),
                    _ => String::new(),
                };
                Some(format!(
                    "not sent: {short:?}{files}: {} ({})",
                    v["message"].as_str().unwrap_or("refused"),
                    v["code"].as_str().unwrap_or("?")
                ))
            }
            _ => None,
        }
    }

    /// After a reconnect everything unanswered goes again (the server stores each
    /// `client_id` once).
    pub fn resend(&mut self, now: Instant) {
        for p in &mut self.items {
            p.sent = false;
            p.due = p.due.min(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_in_order_wait_out_refusals_and_survive_a_reconnect() {
        let t0 = Instant::now();
        let mut o = Outbox::new();
        o.push(json!({"type": "send", "room": "r", "text": "one"}), t0);
        o.push(json!({"type": "send", "room": "r", "text": "two"}), t0);
        let sent = o.due(t0);
        assert_eq!(sent.len(), 2);
        assert!(o.due(t0).is_empty(), "not twice");
        let refs: Vec<String> = sent
            .iter()
            .map(|r| r["ref"].as_str().unwrap().into())
            .collect();
        // The first is refused for the rate: both wait (order), then go again.
        let refusal =
            json!({"type": "error", "code": "rate_limited", "retry_after_ms": 100, "ref": refs[0]});
        assert_eq!(o.answer(&refusal, t0), None);
        assert!(o.due(t0 + Duration::from_millis(50)).is_empty());
        let again = o.due(t0 + Duration::from_millis(200));
        assert_eq!(again.len(), 2);
        assert_eq!(
            again[0]["client_id"], sent[0]["client_id"],
            "the same client_id"
        );
        let echo = json!({"type": "message", "ref": refs[0]});
        assert_eq!(o.answer(&echo, t0), None);
        // Lost connection: what is unanswered goes again.
        o.resend(t0);
        assert_eq!(o.due(t0 + Duration::from_millis(200)).len(), 1);
        let too_long = json!({"type": "error", "code": "too_long", "message": "text is over 4000 characters", "ref": refs[1]});
        assert!(o.answer(&too_long, t0).unwrap().contains("\"two\""));
        assert!(o.is_empty());
    }
}

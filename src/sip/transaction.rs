//! Non-INVITE transactions over reliable transports (RFC 3261 §17.1.2, §17.2.2).
//!
//! A *server transaction* exists per request received (keyed like §17.2.3: top Via branch,
//! sent-by and method). It absorbs retransmissions: while the request is being worked on they
//! are dropped, once answered they get the same final response again, and never a second
//! forward. It holds the one final response; [`ServerTx::complete`] refuses a second, which is
//! how "exactly one final response per request" is enforced in one place.
//!
//! A *client transaction* exists per request forwarded (keyed by the branch of the Via the
//! proxy added). Over TCP/TLS Timer E never retransmits, so what remains is Timer F (64 × T1):
//! if no final response arrives by then, the server transaction is answered with 408. Timer K
//! is zero on reliable transports, so a client transaction ends with its first final response.
//!
//! Deliberate deviation: Timer J is zero on reliable transports too, but a completed server
//! transaction is kept for 64 × T1 anyway. Emulated clients reconnect and retransmit over the
//! new connection; keeping the answer costs a few hundred bytes and prevents a MESSAGE from
//! being delivered twice.
//!
//! What that costs: a client that sends one request per connection (a load generator, any SIP
//! client probing with OPTIONS) leaves one completed transaction per connection for 32 s, about
//! 80,000 at 2,500 connections per second. Every close must forget its connection in the
//! transactions it owns, and a scan of all of them per close made the per-connection cost grow
//! with the number held (measured: 220× at 80,000 in `benches/load_sip_core.rs`; `serve`'s
//! handshake rate fell ~15 % within seconds of a storm). [`ServerTable`] indexes the
//! transactions by connection, so a close touches only its own.
//!
//! And memory: 3 × 50,000 OPTIONS with unique branches on one connection held 150,000 answers
//! (RSS 120 → 321 MB). So completed transactions are capped, per connection they were answered
//! on and in total ([`CompletedCaps`], `[sip] max_completed_transactions*` in lcs.toml); past a
//! cap the oldest is released early, its linger timer cancelled, and counted. A retransmission
//! of a released request is then handled as new: a fresh answer, which is safe for what this
//! server answers itself (OPTIONS, REGISTER), and for a MESSAGE means a second delivery only
//! when its client retransmits after thousands of newer requests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::actions::{ConnId, Payload};
use super::config::RouteId;
use super::header::{BRANCH_COOKIE, HeaderError};
use super::message::{Request, Response, reason_phrase};
use super::method::Method;
use super::timers::TimerKey;

/// The most completed server transactions held: per connection they were answered on, and in
/// total. Each is at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedCaps {
    /// Per connection (default 4,096).
    pub per_connection: usize,
    /// In total (default 32,768).
    pub total: usize,
}

impl Default for CompletedCaps {
    fn default() -> Self {
        CompletedCaps {
            per_connection: 4096,
            total: 32_768,
        }
    }
}

/// Completed server transactions released before their linger ended, by the cap that did it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// The connection's cap.
    pub per_connection: u64,
    /// The total cap.
    pub total: u64,
}

/// Identifies a server transaction (RFC 3261 §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ServerKey {
    branch: String,
    sent_by: String,
    method: Method,
}

impl ServerKey {
    /// The key of a request. Pre-RFC 3261 branches (no magic cookie) fall back to Call-ID,
    /// CSeq and From tag, as §17.2.3 allows.
    pub(crate) fn for_request(request: &Request) -> Result<ServerKey, HeaderError> {
        let via = request.headers.top_via()?;
        let branch = match via.branch() {
            Some(b) if b.starts_with(BRANCH_COOKIE) && b.len() > BRANCH_COOKIE.len() => {
                b.to_owned()
            }
            _ => {
                let h = &request.headers;
                let from_tag = h.from_addr()?.tag().unwrap_or_default().to_owned();
                format!("rfc2543:{}:{}:{from_tag}", h.call_id()?, h.cseq()?.seq)
            }
        };
        // ACK to a non-2xx final belongs to the INVITE's transaction (§17.2.3).
        let method = match request.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        Ok(ServerKey {
            branch,
            sent_by: via.sent_by(),
            method,
        })
    }
}

/// Where a server transaction stands.
#[derive(Debug)]
pub(crate) enum ServerState {
    /// Waiting for the final response (being handled or forwarded).
    Proceeding,
    /// Answered; `response` is resent to retransmissions until the linger timer fires.
    Completed {
        /// The final response as sent.
        response: Vec<u8>,
        /// What it is, for counting each resend.
        payload: Payload,
    },
}

/// A server transaction.
#[derive(Debug)]
pub(crate) struct ServerTx {
    /// Connection responses go to; `None` once it closed (the originator went away).
    pub(crate) conn: Option<ConnId>,
    /// Via, From, To, Call-ID, CSeq of the request: the skeleton of any response we generate.
    template: Response,
    /// The request's method.
    pub(crate) method: Method,
    /// The state.
    pub(crate) state: ServerState,
    /// Once completed: its place in the completion order, the connection it was answered on,
    /// and its linger timer.
    completion: Option<Completion>,
}

/// Where a completed transaction stands in [`ServerTable`]'s caps.
#[derive(Debug, Clone, Copy)]
struct Completion {
    seq: u64,
    on: Option<ConnId>,
    linger: TimerKey,
}

impl ServerTx {
    /// A new server transaction for `request`, received on `conn`.
    pub(crate) fn new(request: &Request, conn: ConnId) -> ServerTx {
        ServerTx {
            conn: Some(conn),
            template: Response::for_request(request, 100),
            method: request.method.clone(),
            state: ServerState::Proceeding,
            completion: None,
        }
    }

    /// The request's Call-ID (for events).
    pub(crate) fn call_id(&self) -> &str {
        self.template.headers.get("Call-ID").unwrap_or_default()
    }

    /// A response of ours to the request, with a To tag.
    pub(crate) fn response(&self, status: u16, to_tag: &str) -> Response {
        let mut response = self.template.clone().with_to_tag(to_tag);
        response.status = status;
        response.reason = reason_phrase(status).to_owned();
        response
    }

    /// Records the final response, unless one was already recorded (then `false`).
    pub(crate) fn complete(&mut self, response: Vec<u8>, payload: Payload) -> bool {
        if matches!(self.state, ServerState::Completed { .. }) {
            return false;
        }
        self.state = ServerState::Completed { response, payload };
        true
    }
}

/// The server transactions, indexed by key and by the connection their answer goes to.
///
/// The index holds exactly the transactions whose `conn` is set, so [`ServerTable::detach`]
/// costs the connection's own transactions, not all of them, and a closed connection leaves no
/// index entry behind. The completed ones are also kept in completion order, overall and per
/// connection answered on (while it is open), for the caps.
#[derive(Debug, Default)]
pub(crate) struct ServerTable {
    txs: BTreeMap<ServerKey, ServerTx>,
    by_conn: BTreeMap<ConnId, BTreeSet<ServerKey>>,
    caps: CompletedCaps,
    completed: BTreeMap<u64, ServerKey>,
    completed_on: BTreeMap<ConnId, BTreeSet<u64>>,
    next_seq: u64,
    released: Released,
}

impl ServerTable {
    /// An empty table under `caps`.
    pub(crate) fn new(caps: CompletedCaps) -> ServerTable {
        ServerTable {
            caps,
            ..ServerTable::default()
        }
    }

    /// `key` was completed (answered) and lingers until `linger` fires: holds it under the
    /// caps, and returns the linger timers of the transactions released early to make room
    /// (to cancel: the oldest on its connection, then the oldest overall).
    pub(crate) fn completed(&mut self, key: &ServerKey, linger: TimerKey) -> Vec<TimerKey> {
        let Some(tx) = self.txs.get_mut(key) else {
            return Vec::new();
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        tx.completion = Some(Completion {
            seq,
            on: tx.conn,
            linger,
        });
        self.completed.insert(seq, key.clone());
        let mut cancel = Vec::new();
        if let Some(conn) = tx.conn {
            let mine = self.completed_on.entry(conn).or_default();
            mine.insert(seq);
            let over = mine.len().saturating_sub(self.caps.per_connection.max(1));
            let oldest: Vec<u64> = mine.iter().take(over).copied().collect();
            for seq in oldest {
                self.released.per_connection += 1;
                cancel.extend(self.release(seq));
            }
        }
        while self.completed.len() > self.caps.total.max(1) {
            let Some((&seq, _)) = self.completed.first_key_value() else {
                break;
            };
            self.released.total += 1;
            cancel.extend(self.release(seq));
        }
        cancel
    }

    /// Removes the completed transaction `seq`; its linger timer.
    fn release(&mut self, seq: u64) -> Option<TimerKey> {
        let key = self.completed.get(&seq)?.clone();
        self.remove(&key)?.completion.map(|c| c.linger)
    }

    /// Completed transactions released early, so far.
    pub(crate) fn released(&self) -> Released {
        self.released
    }
    /// The transaction of `key`.
    pub(crate) fn get(&self, key: &ServerKey) -> Option<&ServerTx> {
        self.txs.get(key)
    }

    /// The transaction of `key`, to complete it. Its connection changes only through
    /// [`ServerTable::rebind`], which keeps the index right.
    pub(crate) fn get_mut(&mut self, key: &ServerKey) -> Option<&mut ServerTx> {
        self.txs.get_mut(key)
    }

    /// Adds a transaction.
    pub(crate) fn insert(&mut self, key: ServerKey, tx: ServerTx) {
        if let Some(conn) = tx.conn {
            self.by_conn.entry(conn).or_default().insert(key.clone());
        }
        self.txs.insert(key, tx);
    }

    /// Forgets a transaction (its linger is over, or a cap released it).
    pub(crate) fn remove(&mut self, key: &ServerKey) -> Option<ServerTx> {
        let tx = self.txs.remove(key)?;
        if let Some(conn) = tx.conn {
            self.unindex(conn, key);
        }
        if let Some(c) = tx.completion {
            self.completed.remove(&c.seq);
            if let Some(conn) = c.on
                && let Some(mine) = self.completed_on.get_mut(&conn)
            {
                mine.remove(&c.seq);
                if mine.is_empty() {
                    self.completed_on.remove(&conn);
                }
            }
        }
        Some(tx)
    }

    /// A retransmission of `key`'s request arrived on `conn`: answers now go there.
    pub(crate) fn rebind(&mut self, key: &ServerKey, conn: ConnId) -> Option<&mut ServerTx> {
        let old = self.txs.get_mut(key)?.conn.replace(conn);
        if let Some(old) = old {
            self.unindex(old, key);
        }
        self.by_conn.entry(conn).or_default().insert(key.clone());
        self.txs.get_mut(key)
    }

    /// `conn` closed: its transactions keep their answers (for a retransmission over a new
    /// connection) but have nowhere to send them.
    /// The completed ones stay under the total cap only.
    pub(crate) fn detach(&mut self, conn: ConnId) {
        for key in self.by_conn.remove(&conn).unwrap_or_default() {
            if let Some(tx) = self.txs.get_mut(&key) {
                tx.conn = None;
            }
        }
        for seq in self.completed_on.remove(&conn).unwrap_or_default() {
            let Some(key) = self.completed.get(&seq) else {
                continue;
            };
            if let Some(c) = self.txs.get_mut(key).and_then(|tx| tx.completion.as_mut()) {
                c.on = None;
            }
        }
    }

    fn unindex(&mut self, conn: ConnId, key: &ServerKey) {
        if let Some(keys) = self.by_conn.get_mut(&conn) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
    }

    /// Number of transactions held.
    pub(crate) fn len(&self) -> usize {
        self.txs.len()
    }

    /// Number of connections in the indexes (by answer, and by completion).
    pub(crate) fn indexed_connections(&self) -> usize {
        self.by_conn.len() + self.completed_on.len()
    }
}

/// Where a forwarded request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A registered local user's connection.
    User(ConnId),
    /// A static route, connected or not.
    Route(RouteId),
}

/// A client transaction: a request we forwarded and whose final response we await.
#[derive(Debug)]
pub(crate) struct ClientTx {
    /// The server transaction to answer.
    pub(crate) server: ServerKey,
    /// The forwarded request, serialised (with our Via), ready to (re)send from the queue.
    pub(crate) request: Vec<u8>,
    /// Where it goes.
    pub(crate) target: Target,
    /// The connection it was written to; `None` while queued for a route.
    pub(crate) sent_on: Option<ConnId>,
    /// Timer F.
    pub(crate) timer_f: TimerKey,
    /// When it was created (for diagnostics).
    pub(crate) created: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{RequestIds, Uri, UserAgent};

    fn request(n: u32) -> Request {
        let ua = UserAgent::new(Uri::parse("sip:a@contoso.com").unwrap(), "10.0.0.1");
        let ids = RequestIds {
            call_id: format!("c{n}"),
            from_tag: "t".into(),
            branch: format!("b{n}"),
            cseq: 1,
        };
        ua.options(&Uri::parse("sip:contoso.com").unwrap(), &ids)
    }

    fn add(table: &mut ServerTable, n: u32, conn: u64) -> ServerKey {
        let r = request(n);
        let key = ServerKey::for_request(&r).unwrap();
        table.insert(key.clone(), ServerTx::new(&r, ConnId(conn)));
        key
    }

    #[test]
    fn detach_forgets_only_that_connections_transactions() {
        let mut table = ServerTable::default();
        let a = add(&mut table, 1, 1);
        let b = add(&mut table, 2, 2);
        let moved = add(&mut table, 3, 1);
        table.rebind(&moved, ConnId(3)); // retransmitted over a new connection
        table.detach(ConnId(1));
        assert_eq!(table.get(&a).unwrap().conn, None);
        assert_eq!(table.get(&b).unwrap().conn, Some(ConnId(2)));
        assert_eq!(table.get(&moved).unwrap().conn, Some(ConnId(3)));
        assert_eq!((table.len(), table.indexed_connections()), (3, 2));
        table.detach(ConnId(3));
        assert_eq!(table.get(&moved).unwrap().conn, None);
        // A detached transaction keeps its place until its linger ends; then nothing is left.
        for key in [a, b, moved] {
            assert!(table.remove(&key).is_some());
        }
        assert_eq!((table.len(), table.indexed_connections()), (0, 0));
    }

    /// Completes `n` on `conn` with a linger timer from `timers`; the timers released early.
    fn complete(
        table: &mut ServerTable,
        timers: &mut crate::sip::timers::TimerQueue<u32>,
        n: u32,
        conn: u64,
    ) -> (ServerKey, TimerKey, Vec<TimerKey>) {
        let key = add(table, n, conn);
        let tx = table.get_mut(&key).unwrap();
        assert!(tx.complete(b"SIP/2.0 200 OK\r\n\r\n".to_vec(), Payload::KeepAlive));
        #[allow(clippy::disallowed_methods)] // a deadline nothing waits for
        let linger = timers.insert(Instant::now(), n);
        let released = table.completed(&key, linger);
        (key, linger, released)
    }

    #[test]
    fn past_the_per_connection_cap_the_oldest_of_that_connection_is_released() {
        let mut table = ServerTable::new(CompletedCaps {
            per_connection: 3,
            total: 100,
        });
        let mut timers = crate::sip::timers::TimerQueue::default();
        let other = complete(&mut table, &mut timers, 100, 2);
        let mut done: Vec<(ServerKey, TimerKey)> = Vec::new();
        for n in 0..5 {
            let (key, linger, released) = complete(&mut table, &mut timers, n, 1);
            let expect: Vec<TimerKey> = match n {
                3 | 4 => vec![done[n as usize - 3].1],
                _ => Vec::new(),
            };
            assert_eq!(released, expect, "request {n}");
            done.push((key, linger));
        }
        assert!(table.get(&done[0].0).is_none() && table.get(&done[1].0).is_none());
        assert!(done[2..].iter().all(|(k, _)| table.get(k).is_some()));
        assert!(
            table.get(&other.0).is_some(),
            "another connection's are not touched"
        );
        assert_eq!(
            table.released(),
            Released {
                per_connection: 2,
                total: 0
            }
        );
        assert_eq!(table.len(), 4);
        // In progress ones are not capped: only answers linger.
        for n in 200..210 {
            add(&mut table, n, 1);
        }
        assert_eq!(table.len(), 14);
    }

    #[test]
    fn past_the_total_cap_the_oldest_overall_is_released_and_a_closed_connection_counts_there() {
        let mut table = ServerTable::new(CompletedCaps {
            per_connection: 100,
            total: 4,
        });
        let mut timers = crate::sip::timers::TimerQueue::default();
        let a = complete(&mut table, &mut timers, 1, 1);
        let b = complete(&mut table, &mut timers, 2, 1);
        table.detach(ConnId(1));
        for n in 3..5 {
            assert!(complete(&mut table, &mut timers, n, 2).2.is_empty());
        }
        let (_, _, released) = complete(&mut table, &mut timers, 5, 3);
        assert_eq!(
            released,
            vec![a.1],
            "the oldest, though its connection closed"
        );
        let (_, _, released) = complete(&mut table, &mut timers, 6, 3);
        assert_eq!(released, vec![b.1]);
        assert_eq!(table.len(), 4);
        assert_eq!(table.released().total, 2);
        // The linger ends as usual for the rest, and nothing is left.
        let keys: Vec<ServerKey> = (3..7)
            .map(|n| ServerKey::for_request(&request(n)).unwrap())
            .collect();
        table.detach(ConnId(2));
        table.detach(ConnId(3));
        for key in &keys {
            assert!(table.remove(key).is_some());
        }
        assert_eq!((table.len(), table.indexed_connections()), (0, 0));
    }

    #[test]
    fn a_closed_connection_leaves_no_index_entry() {
        let mut table = ServerTable::default();
        for n in 0..1000 {
            add(&mut table, n, u64::from(n));
            table.detach(ConnId(u64::from(n)));
        }
        assert_eq!((table.len(), table.indexed_connections()), (1000, 0));
    }
}

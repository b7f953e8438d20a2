//! Forwarding: target selection, client transactions, route connections and their queues.
//!
//! Split from `proxy.rs` so that file reads as the shell-facing API and request dispatch,
//! and this one as "what happens to a request we pass on".

use std::time::Instant;

use super::Proxy;
use crate::sip::actions::{Action, ConnId, ConnKind, Event, Payload};
use crate::sip::config::RouteId;
use crate::sip::header::{BRANCH_COOKIE, NameAddr, Via};
use crate::sip::message::{Request, Response};
use crate::sip::timeouts::Timer;
use crate::sip::transaction::{ClientTx, ServerKey, Target};

impl Proxy {
    /// Routes a MESSAGE (or an OPTIONS for a user); returns the final response if it cannot be
    /// forwarded.
    pub(super) fn route(
        &mut self,
        from: ConnKind,
        key: &ServerKey,
        mut request: Request,
        now: Instant,
    ) -> Option<Response> {
        let max_forwards = request.headers.max_forwards().ok().flatten().unwrap_or(70);
        if max_forwards == 0 {
            return Some(self.reply(key, 483));
        }
        // Loose routing (RFC 3261 §16.4): drop Route entries that name us.
        while let Some(route) = request.headers.get("Route") {
            match NameAddr::parse(route, "Route") {
                Ok(route) if self.config.is_local(&route.uri.host) => {
                    request.headers.remove_first("Route")
                }
                _ => break,
            };
        }
        let target = if self.config.is_local(&request.uri.host) {
            if request.uri.user.is_none() {
                return Some(self.reply(key, 404));
            }
            let Some(binding) = self.registrar.lookup(&self.config.aor(&request.uri)) else {
                return Some(self.reply(key, 480));
            };
            // Retarget to the registered contact (RFC 3261 §16.5).
            request.uri = binding.contact.uri.clone();
            Target::User(binding.conn)
        } else if let Some(route) = self.config.route_for(&request.uri.host) {
            if from.is_federation() {
                return Some(self.reply(key, 403)); // a federation peer may not relay through us
            }
            Target::Route(route)
        } else {
            return Some(self.reply(key, 404));
        };
        request
            .headers
            .set("Max-Forwards", (max_forwards - 1).to_string());
        self.forward(key, request, target, now)
    }

    /// Adds our Via and sends the request (or queues it for its route), starting Timer F.
    fn forward(
        &mut self,
        key: &ServerKey,
        mut request: Request,
        target: Target,
        now: Instant,
    ) -> Option<Response> {
        let branch = format!("{BRANCH_COOKIE}.lcs.{}", self.fresh_id());
        let (transport, conn) = match target {
            Target::User(conn) => (
                self.conns
                    .get(&conn)
                    .map_or("TLS", |c| c.kind.via_transport()),
                Some(conn),
            ),
            Target::Route(route) => ("TLS", self.routes.entry(route).or_default().conn),
        };
        let via = Via::new(transport, &self.config.server_host, None, &branch);
        request.headers.push_front("Via", via.to_string());
        let bytes = request.to_bytes();
        match (conn, target) {
            (Some(conn), _) => self.send(conn, bytes.clone(), Payload::Request),
            (None, Target::Route(route)) => {
                let state = self.routes.entry(route).or_default();
                if state.queue.len() >= self.config.max_route_queue {
                    return Some(self.reply(key, 503));
                }
                state.queue.push_back(branch.clone());
                let depth = state.queue.len();
                self.stats.queued += 1;
                self.stats.queue_depth += 1;
                self.event(Event::Queued { route, depth });
                self.connect_route(route);
            }
            (None, Target::User(_)) => return Some(self.reply(key, 480)),
        }
        let timer_f = self.timers.insert(
            now + self.config.timer_f(),
            Timer::TransactionTimeout {
                branch: branch.clone(),
            },
        );
        let client = ClientTx {
            server: key.clone(),
            request: bytes,
            target,
            sent_on: conn,
            timer_f,
            created: now,
        };
        self.clients.insert(branch, client);
        None
    }

    /// A response arrived: relay it to the server transaction whose request we forwarded.
    pub(super) fn on_response(&mut self, conn: ConnId, mut response: Response, now: Instant) {
        let branch = response
            .headers
            .top_via()
            .ok()
            .and_then(|via| via.branch().map(str::to_owned));
        let Some(branch) = branch.filter(|b| self.clients.contains_key(b)) else {
            // Late (after Timer F or a transport failure) or not ours: relaying it would give
            // the originator a second final response, so it is dropped.
            self.stats.stray_responses += 1;
            self.event(Event::StrayResponse {
                conn,
                status: response.status,
            });
            return;
        };
        response.headers.remove_first("Via");
        if !response.is_final() {
            // 100 Trying is hop-by-hop; other provisional responses are relayed.
            let origin = self
                .clients
                .get(&branch)
                .and_then(|c| self.servers.get(&c.server))
                .and_then(|tx| tx.conn);
            if let (false, Some(origin)) = (response.status == 100, origin) {
                self.respond(origin, &response);
            }
            return;
        }
        if let Some(client) = self.take_client(&branch) {
            self.finish(&client.server, response, now);
        }
    }

    /// Timer F: no final response in 64 × T1.
    pub(super) fn transaction_timeout(&mut self, branch: &str, now: Instant) {
        let Some(client) = self.take_client(branch) else {
            return;
        };
        self.stats.timed_out += 1;
        if let Some(tx) = self.servers.get(&client.server) {
            let event = Event::TimedOut {
                call_id: tx.call_id().to_owned(),
                method: tx.method.clone(),
                was_queued: client.sent_on.is_none(),
            };
            self.event(event);
        }
        let response = self.reply(&client.server, 408);
        self.finish(&client.server, response, now);
    }

    /// The connection a request was written to closed: no response can come back on it.
    /// A user target becomes unreachable (480); a route fails like a transport error (503,
    /// RFC 3261 §16.9). Queued requests are unaffected: they wait for the next connection.
    pub(super) fn fail_in_flight(&mut self, conn: ConnId, now: Instant) {
        let mut lost: Vec<(String, Target, Instant)> = self
            .clients
            .iter()
            .filter(|(_, c)| c.sent_on == Some(conn))
            .map(|(branch, c)| (branch.clone(), c.target, c.created))
            .collect();
        lost.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0))); // deterministic order
        for (branch, target, _) in lost {
            let Some(client) = self.take_client(&branch) else {
                continue;
            };
            let status = match target {
                Target::User(_) => 480,
                Target::Route(_) => 503,
            };
            let response = self.reply(&client.server, status);
            self.finish(&client.server, response, now);
        }
    }

    /// Removes a client transaction, its Timer F and its queue slot.
    fn take_client(&mut self, branch: &str) -> Option<ClientTx> {
        let client = self.clients.remove(branch)?;
        self.timers.cancel(client.timer_f);
        if let (None, Target::Route(route)) = (client.sent_on, client.target)
            && let Some(state) = self.routes.get_mut(&route)
            && let Some(at) = state.queue.iter().position(|b| b == branch)
        {
            state.queue.remove(at);
            self.stats.queue_depth -= 1;
        }
        Some(client)
    }

    /// Asks the shell for the route's connection unless it is up, being opened, or backing off.
    fn connect_route(&mut self, route: RouteId) {
        let state = self.routes.entry(route).or_default();
        if state.conn.is_some() || state.connecting || state.retry.is_some() {
            return;
        }
        state.connecting = true;
        self.actions.push_back(Action::ConnectRoute { route });
    }

    /// A route connection opened: it becomes the route's connection and the queue is sent.
    pub(super) fn route_connected(&mut self, route: RouteId, conn: ConnId) {
        let state = self.routes.entry(route).or_default();
        state.conn = Some(conn);
        state.connecting = false;
        if let Some(retry) = state.retry.take() {
            self.timers.cancel(retry);
        }
        let queued: Vec<String> = state.queue.drain(..).collect();
        self.stats.queue_depth -= queued.len();
        for branch in &queued {
            if let Some(client) = self.clients.get_mut(branch) {
                client.sent_on = Some(conn);
                let bytes = client.request.clone();
                self.send(conn, bytes, Payload::Request);
            }
        }
        self.event(Event::RouteConnected {
            route,
            flushed: queued.len(),
        });
    }

    /// A route connection closed; if requests wait, reconnect.
    pub(super) fn route_disconnected(&mut self, route: RouteId, conn: ConnId, _now: Instant) {
        let state = self.routes.entry(route).or_default();
        if state.conn == Some(conn) {
            state.conn = None;
            if !state.queue.is_empty() {
                self.connect_route(route);
            }
        }
    }

    /// The shell could not open the route's connection (refused, TLS handshake failed, …).
    /// Queued requests stay queued until their Timer F; another attempt is requested after
    /// [`ProxyConfig::route_retry_interval`](crate::sip::ProxyConfig::route_retry_interval)
    /// if requests are still waiting then.
    pub fn route_connect_failed(&mut self, route: RouteId, now: Instant) {
        self.stats.route_connect_failures += 1;
        let state = self.routes.entry(route).or_default();
        state.connecting = false;
        if state.conn.is_none() && state.retry.is_none() {
            let at = now + self.config.route_retry_interval;
            state.retry = Some(self.timers.insert(at, Timer::RouteRetry { route }));
        }
        let queued = state.queue.len();
        self.event(Event::RouteConnectFailed { route, queued });
    }

    /// The back-off after a failed attempt is over.
    pub(super) fn route_retry(&mut self, route: RouteId, _now: Instant) {
        let Some(state) = self.routes.get_mut(&route) else {
            return;
        };
        state.retry = None;
        if !state.queue.is_empty() {
            self.connect_route(route);
        }
    }
}

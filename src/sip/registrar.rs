//! The registrar (RFC 3261 §10.3): bindings from an address of record to contacts.
//!
//! A binding remembers the connection its REGISTER came on, because over TCP/TLS that
//! connection is the only way to reach the client (it sits behind NAT or has no listener).
//! Hence a binding ends three ways: it expires, the client unregisters (`Expires: 0` or
//! `Contact: *`), or its connection closes. Authentication is out of scope for the emulation.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::actions::{Action, BindingRemoval, ConnId, Event};
use super::config::ProxyConfig;
use super::header::{HeaderError, NameAddr};
use super::message::Request;
use super::timeouts::Timer;
use super::timers::{TimerKey, TimerQueue};

/// One contact bound to an address of record.
#[derive(Debug)]
pub(crate) struct Binding {
    id: u64,
    /// The contact (URI and display name; its `expires` parameter removed).
    pub(crate) contact: NameAddr,
    /// The connection to reach it on.
    pub(crate) conn: ConnId,
    expires_at: Instant,
    call_id: String,
    cseq: u32,
    timer: TimerKey,
    /// Order of the last (re-)registration, to pick the most recent binding.
    refreshed: u64,
}

/// How a REGISTER is answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 200 OK listing these Contact values (each with `;expires=`).
    Ok { contacts: Vec<String> },
    /// 423 Interval Too Brief with this Min-Expires.
    TooBrief { min_expires: u32 },
    /// Another final response.
    Reject { status: u16 },
}

/// All bindings.
#[derive(Debug, Default)]
pub(crate) struct Registrar {
    bindings: BTreeMap<String, Vec<Binding>>,
    counter: u64,
}

fn contact_key(contact: &NameAddr) -> String {
    contact.uri.to_string().to_ascii_lowercase()
}

impl Registrar {
    /// Number of bindings.
    pub(crate) fn len(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    /// The most recently (re-)registered binding of `aor`.
    pub(crate) fn lookup(&self, aor: &str) -> Option<&Binding> {
        self.bindings.get(aor)?.iter().max_by_key(|b| b.refreshed)
    }

    /// Processes a REGISTER whose To is in a local domain, received on `conn`.
    pub(crate) fn register(
        &mut self,
        request: &Request,
        conn: ConnId,
        now: Instant,
        config: &ProxyConfig,
        timers: &mut TimerQueue<Timer>,
        actions: &mut VecDeque<Action>,
    ) -> Result<Outcome, HeaderError> {
        let h = &request.headers;
        let aor = config.aor(&h.to_addr()?.uri);
        let (call_id, cseq) = (h.call_id()?.to_owned(), h.cseq()?.seq);
        let default = h.expires()?.unwrap_or(config.default_expires);
        let values: Vec<&str> = h.get_all("Contact").collect();
        if values.iter().any(|v| v.trim() == "*") {
            // Contact: * removes every binding, and only with Expires: 0 (§10.2.2).
            if values.len() != 1 || h.expires()? != Some(0) {
                return Ok(Outcome::Reject { status: 400 });
            }
            for binding in self.bindings.remove(&aor).unwrap_or_default() {
                timers.cancel(binding.timer);
                removed(actions, &aor, BindingRemoval::Unregistered);
            }
            return Ok(Outcome::Ok {
                contacts: Vec::new(),
            });
        }
        let mut updates = Vec::with_capacity(values.len());
        for value in values {
            let mut contact = NameAddr::parse(value, "Contact")?;
            let expires = match contact.param("expires") {
                Some(Some(v)) => v.parse::<u32>().unwrap_or(default),
                _ => default,
            };
            contact
                .params
                .retain(|(k, _)| !k.eq_ignore_ascii_case("expires"));
            if expires != 0 && expires < config.min_expires {
                return Ok(Outcome::TooBrief {
                    min_expires: config.min_expires,
                });
            }
            let stale = self
                .find(&aor, &contact)
                .is_some_and(|b| b.call_id == call_id && b.cseq >= cseq);
            if stale {
                return Ok(Outcome::Reject { status: 500 }); // out-of-order REGISTER (§10.3 step 7)
            }
            updates.push((contact, expires.min(config.max_expires)));
        }
        for (contact, expires) in updates {
            let list = self.bindings.entry(aor.clone()).or_default();
            let existing = list
                .iter()
                .position(|b| contact_key(&b.contact) == contact_key(&contact));
            if expires == 0 {
                if let Some(at) = existing {
                    timers.cancel(list.remove(at).timer);
                    removed(actions, &aor, BindingRemoval::Unregistered);
                }
                continue;
            }
            self.counter += 1;
            let expires_at = now + Duration::from_secs(u64::from(expires));
            match existing {
                Some(at) => {
                    let binding = &mut list[at];
                    timers.cancel(binding.timer);
                    binding.timer = timers.insert(
                        expires_at,
                        Timer::BindingExpiry {
                            aor: aor.clone(),
                            binding: binding.id,
                        },
                    );
                    (binding.conn, binding.expires_at, binding.refreshed) =
                        (conn, expires_at, self.counter);
                    (binding.call_id, binding.cseq, binding.contact) =
                        (call_id.clone(), cseq, contact);
                }
                None => {
                    let id = self.counter;
                    list.push(Binding {
                        id,
                        contact,
                        conn,
                        expires_at,
                        call_id: call_id.clone(),
                        cseq,
                        timer: timers.insert(
                            expires_at,
                            Timer::BindingExpiry {
                                aor: aor.clone(),
                                binding: id,
                            },
                        ),
                        refreshed: id,
                    });
                    actions.push_back(Action::Event(Event::BindingAdded {
                        aor: aor.clone(),
                        conn,
                        expires,
                    }));
                }
            }
        }
        let contacts = self.bindings.get(&aor).map_or_else(Vec::new, |list| {
            list.iter()
                .map(|b| {
                    let left = b.expires_at.saturating_duration_since(now).as_secs();
                    format!("{};expires={left}", b.contact)
                })
                .collect()
        });
        if contacts.is_empty() {
            self.bindings.remove(&aor);
        }
        Ok(Outcome::Ok { contacts })
    }

    fn find(&self, aor: &str, contact: &NameAddr) -> Option<&Binding> {
        let key = contact_key(contact);
        self.bindings
            .get(aor)?
            .iter()
            .find(|b| contact_key(&b.contact) == key)
    }

    /// Timer: removes binding `id` of `aor` if it is still due.
    pub(crate) fn expire(
        &mut self,
        aor: &str,
        id: u64,
        now: Instant,
        actions: &mut VecDeque<Action>,
    ) {
        let Some(list) = self.bindings.get_mut(aor) else {
            return;
        };
        let before = list.len();
        list.retain(|b| b.id != id || b.expires_at > now);
        if list.len() < before {
            removed(actions, aor, BindingRemoval::Expired);
        }
        if list.is_empty() {
            self.bindings.remove(aor);
        }
    }

    /// Removes every binding registered over `conn`.
    pub(crate) fn remove_connection(
        &mut self,
        conn: ConnId,
        timers: &mut TimerQueue<Timer>,
        actions: &mut VecDeque<Action>,
    ) {
        self.bindings.retain(|aor, list| {
            list.retain(|b| {
                if b.conn == conn {
                    timers.cancel(b.timer);
                    removed(actions, aor, BindingRemoval::ConnectionClosed);
                }
                b.conn != conn
            });
            !list.is_empty()
        });
    }
}

fn removed(actions: &mut VecDeque<Action>, aor: &str, reason: BindingRemoval) {
    actions.push_back(Action::Event(Event::BindingRemoved {
        aor: aor.to_owned(),
        reason,
    }));
}

//! The federation peer: fabrikam.com's server, at the end of the mutual-TLS route.
//!
//! It verifies the client certificate our route presents (it must chain to the enterprise CA),
//! and answers every MESSAGE for its users with 200 and every OPTIONS with 200, standing in for
//! fabrikam.com's users. Like any edge server it closes connections after a while (exponential
//! lifetimes from its own seeded RNG, never longer than `federation.connection_max_lifetime`), so our server has to reconnect the route now and then:
//! that reconnection is what a lost key breaks. Refused handshakes and delivered messages are
//! recorded.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use super::record::{self, Shared};
use super::world::{MTLS_PORT, World};
use crate::server::tls;
use crate::sip::{Frame, Framer, Message, Method, Response};

/// Runs the peer until the simulation ends.
pub async fn run(
    config: Arc<rustls::ServerConfig>,
    recorder: Shared,
    seed: u64,
    mean_lifetime: Duration,
    max_lifetime: Duration,
) -> turmoil::Result {
    let listener =
        turmoil::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, MTLS_PORT)).await?;
    let acceptor = TlsAcceptor::from(config);
    let mut rng = StdRng::seed_from_u64(seed ^ 0xFAB1_11CA_u64);
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let recorder = recorder.clone();
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        let lifetime = mean_lifetime.mul_f64(-u.ln()).min(max_lifetime);
        tokio::spawn(async move {
            match acceptor.accept(tcp).await {
                Ok(tls) => {
                    let _ = tokio::time::timeout(lifetime, serve(tls, recorder)).await;
                }
                Err(_) => recorder.lock().expect("recorder").peer_refused += 1,
            }
        });
    }
}

/// The peer's TLS configuration: its own certificate, client certificates required.
pub fn server_config(
    world: &World,
    clock: Arc<dyn crate::clock::Clock>,
) -> Arc<rustls::ServerConfig> {
    let key = tls::provider()
        .key_provider
        .load_private_key(world.peer_key())
        .expect("the peer's key loads");
    let certified = rustls::sign::CertifiedKey::new(world.peer_chain.clone(), key);
    let resolver = Arc::new(rustls::sign::SingleCertAndKey::from(certified));
    let settings = crate::config::TlsSettings::default();
    let config = tls::server_config(resolver, Some(world.roots.clone()), &settings, clock, None)
        .expect("a valid TLS configuration");
    Arc::new(config)
}

async fn serve<IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut io: IO,
    recorder: Shared,
) {
    let mut framer = Framer::new(64 * 1024);
    let mut buf = vec![0u8; 8192];
    let mut tag = 0u64;
    loop {
        let n = match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        while let Some(frame) = framer.pop() {
            let Ok(Frame::Message(bytes)) = frame else {
                continue;
            };
            let Ok(Message::Request(request)) = crate::sip::parse_message(&bytes) else {
                continue;
            };
            let status = match request.method {
                Method::Message => {
                    recorder
                        .lock()
                        .expect("recorder")
                        .peer_delivered
                        .push(record::now());
                    200
                }
                Method::Options => 200,
                _ => 405,
            };
            tag += 1;
            let response =
                Response::for_request(&request, status).with_to_tag(&format!("fab{tag}"));
            if io.write_all(&response.to_bytes()).await.is_err() {
                return;
            }
        }
    }
}

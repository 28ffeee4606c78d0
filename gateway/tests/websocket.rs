//! WebSocket upgrades through the gateway: 200 tunnels in a row against a fast echo
//! server, each echoing at once after its 101 (cloudflare/pingora#946 ended some right
//! after the 101).

use futures_util::{SinkExt, StreamExt};
use test_support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[test]
fn two_hundred_tunnels_in_a_row_all_echo() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ws_addr = rt.block_on(test_support::ws::echo_server());
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("ws", ws_addr.to_string(), 80)]);
    cfg.host_route("ws", "ws.test", "ws.static");
    let gw = Gateway::start(cfg.path());
    let addr = gw.http;
    let broken = rt.block_on(async move {
        let mut broken = 0;
        for i in 0..200 {
            let mut req = format!("ws://{addr}/chat").into_client_request().unwrap();
            req.headers_mut().insert("host", "ws.test".parse().unwrap());
            let (mut sock, resp) = tokio_tungstenite::connect_async(req)
                .await
                .expect("websocket upgrade through the gateway");
            assert_eq!(resp.status(), 101);
            let msg = format!("message {i}");
            let echoed = async {
                sock.send(Message::text(msg.clone())).await.ok()?;
                match sock.next().await {
                    Some(Ok(Message::Text(t))) => Some(t.to_string()),
                    _ => None,
                }
            };
            match tokio::time::timeout(WAIT, echoed).await {
                Ok(Some(t)) if t == msg => {}
                other => {
                    eprintln!("tunnel {i} broken: {other:?}");
                    broken += 1;
                }
            }
            let _ = sock.close(None).await;
        }
        broken
    });
    assert_eq!(broken, 0, "{broken} of 200 tunnels ended after their 101");
}

#[test]
fn a_refused_upgrade_is_answered_and_its_connection_closed() {
    let be = Backend::start("plain");
    let cfg = ConfigDir::routing_all_to(&be);
    let gw = Gateway::start(cfg.path());
    let mut c = Conn::open(gw.http).unwrap();
    let r = c
        .request(
            "GET",
            "x",
            "/chat",
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
        )
        .unwrap();
    // The backend answers as to any GET; the request it saw had no body framing but
    // `Content-Length: 0`.
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    let seen = r.json();
    assert_eq!(seen["headers"]["content-length"], "0", "{seen}");
    assert!(seen["headers"].get("transfer-encoding").is_none(), "{seen}");
    // Closed by the gateway once the client is done (here: the client closes its side).
    c.stream().shutdown(std::net::Shutdown::Write).unwrap();
    assert!(c.closed_within(std::time::Duration::from_secs(10)));
    // And the gateway is fine.
    assert_eq!(get(gw.http, "x", "/").unwrap().status, 200);
}

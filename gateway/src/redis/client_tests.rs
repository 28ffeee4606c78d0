//! The client against a real `redis-server` (Debian package, started per test on a free
//! port by test-support): pipelining, AUTH and SELECT, the server going away and coming
//! back, timeouts.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use test_support::redis::RedisServer;

use super::*;

fn client(timeout_ms: u64) -> RedisClient {
    RedisClient::new(RedisOptions {
        timeout: Duration::from_millis(timeout_ms),
        ..RedisOptions::default()
    })
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_concurrent_calls_on_one_connection() {
    let server = RedisServer::start(None);
    let addr = server.addr;
    let redis = client(5000);
    // Each caller gets its own reply back although they all share one connection.
    let calls = (0..500).map(|i| {
        let redis = redis.clone();
        async move {
            let arg = format!("value-{i}");
            let reply = redis.query(addr, &[b"ECHO", arg.as_bytes()]).await;
            (arg, reply)
        }
    });
    for (arg, reply) in join_all(calls).await {
        assert_eq!(reply.unwrap(), bulk(&arg));
    }
    let incrs = (0..300).map(|_| redis.query(server.addr, &[b"INCR", b"n"]));
    let mut seen: Vec<i64> = join_all(incrs)
        .await
        .into_iter()
        .map(|r| match r.unwrap() {
            Reply::Integer(n) => n,
            other => panic!("{other:?}"),
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=300).collect::<Vec<_>>());
    assert_eq!(server.cli(&["GET", "n"]), "300");
    // One connection served them all (the other one is redis-cli's own).
    assert_eq!(server.cli(&["CLIENT", "LIST"]).lines().count(), 2);

    // `call` hands back the raw reply, an error reply included.
    let raw = redis
        .call(server.addr, resp::encode_command(&[b"GET", b"n"]).into())
        .await
        .unwrap();
    assert_eq!(&raw[..], b"$3\r\n300\r\n");
    let raw = redis
        .call(
            server.addr,
            resp::encode_command(&[b"NOSUCHCOMMAND"]).into(),
        )
        .await
        .unwrap();
    assert!(raw.starts_with(b"-ERR unknown command"), "{raw:?}");
    match redis.query(server.addr, &[b"NOSUCHCOMMAND"]).await {
        Err(RedisError::Server(m)) => assert!(m.starts_with("ERR unknown command"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticates_and_selects_the_database() {
    let server = RedisServer::start(Some("s3cret"));
    let options = RedisOptions {
        password: Some("s3cret".into()),
        database: 3,
        timeout: Duration::from_secs(5),
        ..RedisOptions::default()
    };
    let redis = RedisClient::new(options.clone());
    assert_eq!(
        redis
            .query(server.addr, &[b"SET", b"k", b"v"])
            .await
            .unwrap(),
        Reply::Simple(Bytes::from_static(b"OK"))
    );
    assert_eq!(server.cli(&["-n", "3", "GET", "k"]), "v");
    assert_eq!(server.cli(&["-n", "0", "EXISTS", "k"]), "0");

    // With a username (Redis 6 ACL form): `default` is the user requirepass sets.
    let with_user = RedisClient::new(RedisOptions {
        username: Some("default".into()),
        database: 0,
        ..options.clone()
    });
    assert_eq!(
        with_user.query(server.addr, &[b"GET", b"k"]).await.unwrap(),
        Reply::Bulk(None)
    );

    // A wrong password fails every call with the server's word for it.
    let wrong = RedisClient::new(RedisOptions {
        password: Some("nope".into()),
        ..options.clone()
    });
    match wrong.query(server.addr, &[b"PING"]).await {
        Err(RedisError::Handshake {
            command: "AUTH",
            message,
        }) => {
            assert!(message.contains("WRONGPASS"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // No password where one is required: the command itself is refused.
    match client(5000).query(server.addr, &[b"PING"]).await {
        Err(RedisError::Server(m)) => assert!(m.starts_with("NOAUTH"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A database that does not exist fails the SELECT.
    let bad_db = RedisClient::new(RedisOptions {
        database: 9999,
        ..options
    });
    match bad_db.query(server.addr, &[b"PING"]).await {
        Err(RedisError::Handshake {
            command: "SELECT", ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_fast_while_the_server_is_down_and_recovers() {
    let mut server = RedisServer::start(None);
    let redis = client(10_000);
    assert_eq!(
        redis.query(server.addr, &[b"PING"]).await.unwrap(),
        Reply::Simple(Bytes::from_static(b"PONG"))
    );
    // A call in flight when the server dies fails with the connection, long before
    // its 10 s timeout.
    let blocked = tokio::spawn({
        let redis = redis.clone();
        let addr = server.addr;
        async move { redis.query(addr, &[b"BLPOP", b"never", b"0"]).await }
    });
    // Let BLPOP reach the server.
    test_support::wait_for("BLPOP to block", || {
        server
            .cli(&["INFO", "clients"])
            .contains("blocked_clients:1")
            .then_some(())
    });
    let start = Instant::now();
    server.stop();
    match blocked.await.unwrap() {
        Err(RedisError::Closed | RedisError::Io(_)) => {}
        other => panic!("{other:?}"),
    }
    // While it is down every call is refused at connect, not left to time out.
    for _ in 0..3 {
        match redis.query(server.addr, &[b"PING"]).await {
            Err(RedisError::Connect(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(9),
        "{:?}",
        start.elapsed()
    );

    server.resume();
    assert_eq!(
        redis.query(server.addr, &[b"PING"]).await.unwrap(),
        Reply::Simple(Bytes::from_static(b"PONG"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_out_and_drops_the_connection_with_everything_pending() {
    let server = RedisServer::start(None);
    let redis = client(300);
    redis.query(server.addr, &[b"PING"]).await.unwrap();
    // DEBUG SLEEP holds the connection past the timeout; the commands behind it fail
    // with it, as Envoy fails every pending request when the op timeout fires.
    let slow = redis.query(server.addr, &[b"DEBUG", b"SLEEP", b"1"]);
    let behind = redis.query(server.addr, &[b"PING"]);
    let (slow, behind) = tokio::join!(slow, behind);
    assert!(matches!(slow, Err(RedisError::Timeout)), "{slow:?}");
    assert!(matches!(behind, Err(RedisError::Timeout)), "{behind:?}");
    // Once the server has slept (redis-cli's PING waits for it), the next call gets a
    // fresh connection.
    assert_eq!(server.cli(&["PING"]), "PONG");
    assert_eq!(
        redis.query(server.addr, &[b"PING"]).await.unwrap(),
        Reply::Simple(Bytes::from_static(b"PONG"))
    );

    // A listener that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    let result = redis.query(silent.local_addr().unwrap(), &[b"PING"]).await;
    assert!(matches!(result, Err(RedisError::Timeout)), "{result:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_closes_its_connections() {
    let server = RedisServer::start(None);
    let clients = || {
        server
            .cli(&["INFO", "clients"])
            .lines()
            .find_map(|l| {
                l.strip_prefix("connected_clients:")
                    .map(|n| n.trim().to_string())
            })
            .unwrap()
    };
    let redis = client(5000);
    redis.query(server.addr, &[b"PING"]).await.unwrap();
    // This client's connection and redis-cli's.
    assert_eq!(clients(), "2");
    drop(redis);
    test_support::wait_for("the connection to close", || {
        (clients() == "1").then_some(())
    });
}

//! An async Redis client for the request path: one pipelined connection per server
//! address, shared by every caller of a [`RedisClient`] (and its clones), as Envoy's
//! Redis async client keeps one per host.
//!
//! A connection is a task: it connects lazily (on the first call), sends `AUTH` and
//! `SELECT` ahead of everything when configured (their replies checked), then writes
//! the callers' commands in arrival order and answers their oneshot senders, kept in a
//! FIFO, in reply order. Any failure ends the task and fails every caller waiting on it
//! with the cause; the next call connects again. Timeouts follow Envoy: the op timeout
//! covers the oldest request in flight and restarts on each reply, and when it expires
//! the connection is dropped with every pending request. On top of that each call waits
//! at most `timeout` in all, so a caller never hangs whatever the connection does.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::resp::{self, Reply, RespError};

/// How to talk to the servers of one client.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedisOptions {
    /// `AUTH <username> <password>` when both are set (Redis 6 ACLs), `AUTH <password>`
    /// when only the password is.
    pub username: Option<String>,
    pub password: Option<String>,
    /// `SELECT <database>` on each new connection unless 0.
    pub database: u32,
    /// Connect timeout, op timeout and the bound of each call.
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("username", &self.username)
            // Whether there is one, never what it is.
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            username: None,
            password: None,
            database: 0,
            // wasm-go's and cluster-key-rate-limit's default.
            timeout: Duration::from_millis(1000),
        }
    }
}

/// Why a call got no reply. Clone, because one connection failure answers every caller
/// that was waiting on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisError {
    #[error("cannot connect to redis: {0}")]
    Connect(#[source] Arc<io::Error>),
    #[error("redis did not answer within the timeout")]
    Timeout,
    #[error("redis closed the connection")]
    Closed,
    #[error("redis connection failed: {0}")]
    Io(#[source] Arc<io::Error>),
    #[error("redis sent malformed data: {0}")]
    Protocol(#[from] RespError),
    #[error("redis sent a reply to no request")]
    Unsolicited,
    #[error("redis reply larger than {} bytes", MAX_BUFFERED)]
    ReplyTooLarge,
    #[error("redis refused {command} on connecting: {message}")]
    Handshake {
        command: &'static str,
        message: String,
    },
    /// An error reply (`-ERR ...`) to the command itself; only [`RedisClient::query`]
    /// turns one into an error, [`RedisClient::call`] hands back its bytes.
    #[error("redis error reply: {0}")]
    Server(String),
}

/// Received bytes without one complete reply in them that make the connection fail.
const MAX_BUFFERED: usize = 128 * 1024 * 1024;
/// Commands written with one `write` when callers queue up.
const WRITE_BATCH: usize = 64 * 1024;

/// What a connection task needs of its client. Not the client itself: the tasks end
/// when the last handle to the client is dropped (their queues close).
struct Setup {
    timeout: Duration,
    /// `AUTH` and `SELECT`, encoded once, and the name of each in order.
    handshake: Bytes,
    handshake_commands: Vec<&'static str>,
}

type Answer = oneshot::Sender<Result<Bytes, RedisError>>;

/// A command waiting for the connection task.
struct Request {
    command: Bytes,
    answer: Answer,
}

/// Whose reply is next on the wire.
enum InFlight {
    /// `AUTH` or `SELECT`, sent ahead of the callers' commands.
    Handshake(&'static str),
    Caller(Answer),
}

/// A Redis client; clones share connections.
#[derive(Clone)]
pub struct RedisClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

struct Inner {
    options: RedisOptions,
    setup: Arc<Setup>,
    /// The queue of each address's connection task. A closed queue means the task
    /// ended; the next call starts a new one.
    connections: Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Request>>>,
}

impl RedisClient {
    pub fn new(options: RedisOptions) -> RedisClient {
        let mut handshake = Vec::new();
        let mut handshake_commands = Vec::new();
        if let Some(password) = &options.password {
            match &options.username {
                Some(user) => resp::encode_command_into(
                    &[b"AUTH", user.as_bytes(), password.as_bytes()],
                    &mut handshake,
                ),
                None => resp::encode_command_into(&[b"AUTH", password.as_bytes()], &mut handshake),
            }
            handshake_commands.push("AUTH");
        }
        if options.database != 0 {
            let db = options.database.to_string();
            resp::encode_command_into(&[b"SELECT", db.as_bytes()], &mut handshake);
            handshake_commands.push("SELECT");
        }
        RedisClient {
            inner: Arc::new(Inner {
                setup: Arc::new(Setup {
                    timeout: options.timeout,
                    handshake: handshake.into(),
                    handshake_commands,
                }),
                options,
                connections: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    /// Send one RESP-encoded command to `addr`, return the raw bytes of its one reply
    /// (an error reply included: it is a reply).
    pub async fn call(&self, addr: SocketAddr, command: Bytes) -> Result<Bytes, RedisError> {
        let (answer, reply) = oneshot::channel();
        self.enqueue(addr, Request { command, answer })?;
        match tokio::time::timeout(self.inner.options.timeout, reply).await {
            Ok(Ok(result)) => result,
            // The task ended without answering: it was dropped with its runtime.
            Ok(Err(_)) => Err(RedisError::Closed),
            Err(_) => Err(RedisError::Timeout),
        }
    }

    /// Same, parsed; an error reply becomes [`RedisError::Server`].
    pub async fn query(&self, addr: SocketAddr, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let raw = self.call(addr, resp::encode_command(args).into()).await?;
        match resp::parse(&raw)? {
            Some((Reply::Error(message), _)) => Err(RedisError::Server(
                String::from_utf8_lossy(&message).into_owned(),
            )),
            Some((reply, _)) => Ok(reply),
            // The connection only answers with whole replies.
            None => Err(RedisError::Protocol(RespError::BadLineEnd)),
        }
    }

    /// Hands `request` to `addr`'s connection task, starting one if there is none or
    /// the last one ended.
    fn enqueue(&self, addr: SocketAddr, request: Request) -> Result<(), RedisError> {
        let mut connections = self.inner.connections.lock().unwrap();
        let request = match connections.get(&addr) {
            Some(queue) => match queue.send(request) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(request)) => request,
            },
            None => request,
        };
        let (queue, requests) = mpsc::unbounded_channel();
        queue.send(request).map_err(|_| RedisError::Closed)?;
        connections.insert(addr, queue);
        tokio::spawn(run(addr, self.inner.setup.clone(), requests));
        Ok(())
    }
}

/// One connection's life: connect, serve until something fails, then fail everyone
/// still waiting (in flight or queued) with the cause.
async fn run(addr: SocketAddr, setup: Arc<Setup>, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut in_flight = VecDeque::new();
    let error = serve(addr, &setup, &mut requests, &mut in_flight).await;
    match &error {
        RedisError::Closed => tracing::debug!(%addr, "redis connection closed"),
        e => tracing::warn!(%addr, error = %e, "redis connection failed"),
    }
    requests.close();
    for slot in in_flight.drain(..) {
        if let InFlight::Caller(answer) = slot {
            let _ = answer.send(Err(error.clone()));
        }
    }
    while let Ok(request) = requests.try_recv() {
        let _ = request.answer.send(Err(error.clone()));
    }
}

/// Connects and runs the connection until it fails; returns why.
async fn serve(
    addr: SocketAddr,
    setup: &Setup,
    requests: &mut mpsc::UnboundedReceiver<Request>,
    in_flight: &mut VecDeque<InFlight>,
) -> RedisError {
    let timeout = setup.timeout;
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return RedisError::Connect(Arc::new(e)),
        Err(_) => {
            return RedisError::Connect(Arc::new(io::Error::new(
                io::ErrorKind::TimedOut,
                "connect timed out",
            )))
        }
    };
    // Commands are small and latency is the point.
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    // The handshake goes out first; the writer below only follows it.
    if !setup.handshake.is_empty() {
        if let Err(e) = writer.write_all(&setup.handshake).await {
            return RedisError::Io(Arc::new(e));
        }
        in_flight.extend(
            setup
                .handshake_commands
                .iter()
                .map(|c| InFlight::Handshake(c)),
        );
    }
    // The reader owns the FIFO; the writer sends it each answer before the command's
    // bytes leave, so a reply never finds its slot missing.
    let (sent, mut sent_rx) = mpsc::unbounded_channel();
    let error = tokio::select! {
        e = write_loop(requests, &mut writer, &sent) => e,
        e = read_loop(reader, &mut sent_rx, in_flight, timeout) => e,
    };
    // Answers the reader had not taken yet are failed with the rest.
    while let Ok(slot) = sent_rx.try_recv() {
        in_flight.push_back(slot);
    }
    error
}

async fn write_loop(
    requests: &mut mpsc::UnboundedReceiver<Request>,
    writer: &mut OwnedWriteHalf,
    sent: &mpsc::UnboundedSender<InFlight>,
) -> RedisError {
    let mut batch = Vec::new();
    loop {
        let Some(first) = requests.recv().await else {
            // Every handle to this connection is gone.
            return RedisError::Closed;
        };
        // A caller that gave up before its command left is not sent at all.
        if first.answer.is_closed() {
            continue;
        }
        let _ = sent.send(InFlight::Caller(first.answer));
        let mut single = Some(first.command);
        // Callers that queued meanwhile go out in the same write.
        while batch.len() < WRITE_BATCH {
            let Ok(next) = requests.try_recv() else { break };
            if next.answer.is_closed() {
                continue;
            }
            if let Some(command) = single.take() {
                batch.extend_from_slice(&command);
            }
            batch.extend_from_slice(&next.command);
            let _ = sent.send(InFlight::Caller(next.answer));
        }
        let result = match &single {
            Some(command) => writer.write_all(command).await,
            None => writer.write_all(&batch).await,
        };
        batch.clear();
        if let Err(e) = result {
            return RedisError::Io(Arc::new(e));
        }
    }
}

async fn read_loop(
    mut reader: OwnedReadHalf,
    sent: &mut mpsc::UnboundedReceiver<InFlight>,
    in_flight: &mut VecDeque<InFlight>,
    timeout: Duration,
) -> RedisError {
    let mut buf = BytesMut::with_capacity(4096);
    let mut deadline = (!in_flight.is_empty()).then(|| Instant::now() + timeout);
    loop {
        tokio::select! {
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => return RedisError::Closed,
                Ok(_) => {}
                Err(e) => return RedisError::Io(Arc::new(e)),
            },
            slot = sent.recv(), if in_flight.is_empty() => match slot {
                Some(slot) => {
                    in_flight.push_back(slot);
                    deadline = Some(Instant::now() + timeout);
                    continue;
                }
                // The writer is gone; the select in `serve` reports why.
                None => std::future::pending().await,
            },
            _ = sleep_until(deadline), if deadline.is_some() => return RedisError::Timeout,
        }
        loop {
            let len = match resp::reply_len(&buf) {
                Ok(Some(len)) => len,
                Ok(None) if buf.len() > MAX_BUFFERED => return RedisError::ReplyTooLarge,
                Ok(None) => break,
                Err(e) => return RedisError::Protocol(e),
            };
            let reply = buf.split_to(len).freeze();
            let slot = match in_flight.pop_front() {
                Some(slot) => slot,
                None => match sent.try_recv() {
                    Ok(slot) => slot,
                    Err(_) => return RedisError::Unsolicited,
                },
            };
            match slot {
                InFlight::Caller(answer) => {
                    // A caller that timed out has dropped its receiver; nothing to do.
                    let _ = answer.send(Ok(reply));
                }
                InFlight::Handshake(command) => {
                    if reply.first() == Some(&b'-') {
                        let message = String::from_utf8_lossy(&reply[1..]).trim_end().to_string();
                        return RedisError::Handshake { command, message };
                    }
                }
            }
            // More in flight: the op timeout restarts for the next one, as Envoy's does.
            while let Ok(slot) = sent.try_recv() {
                in_flight.push_back(slot);
            }
            deadline = (!in_flight.is_empty()).then(|| Instant::now() + timeout);
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;

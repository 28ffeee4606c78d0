//! The JSON access log with the Higress keys, one object per line.
//!
//! Lines are handed to a writer thread through a bounded queue, so a slow terminal or
//! disk never stalls a request; if the queue is full the line is dropped and counted.

use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

/// Where access log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Off,
    Stdout,
    File(std::path::PathBuf),
}

impl std::str::FromStr for Target {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "off" => Target::Off,
            "stdout" | "-" => Target::Stdout,
            p => Target::File(p.into()),
        })
    }
}

enum Msg {
    Line(String),
    Flush(std::sync::mpsc::Sender<()>),
}

pub struct AccessLog {
    tx: Option<SyncSender<Msg>>,
    dropped: telemetry::stats::Counter,
}

const QUEUE: usize = 16 * 1024;

impl AccessLog {
    /// Open `target`; lines dropped when the writer falls behind are counted in `dropped`.
    pub fn open(target: &Target, dropped: telemetry::stats::Counter) -> std::io::Result<AccessLog> {
        let mut out: Box<dyn Write + Send> = match target {
            Target::Off => return Ok(AccessLog { tx: None, dropped }),
            Target::Stdout => Box::new(std::io::stdout()),
            Target::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (tx, rx) = sync_channel::<Msg>(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut buf = Vec::with_capacity(64 * 1024);
                let mut acks = Vec::new();
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    while let Some(msg) = next.take() {
                        match msg {
                            Msg::Line(line) => {
                                buf.extend_from_slice(line.as_bytes());
                                buf.push(b'\n');
                            }
                            Msg::Flush(ack) => acks.push(ack),
                        }
                        if buf.len() < 60 * 1024 {
                            next = rx.try_recv().ok();
                        }
                    }
                    let _ = out.write_all(&buf).and_then(|_| out.flush());
                    buf.clear();
                    for ack in acks.drain(..) {
                        let _ = ack.send(());
                    }
                }
            })?;
        Ok(AccessLog {
            tx: Some(tx),
            dropped,
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn write(&self, line: String) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(Msg::Line(line)) {
                self.dropped.inc();
            }
        }
    }

    /// Wait (at most `within`) until every line queued so far is written.
    pub fn flush(&self, within: std::time::Duration) {
        if let Some(tx) = &self.tx {
            let (ack_tx, ack_rx) = std::sync::mpsc::channel();
            if tx.send(Msg::Flush(ack_tx)).is_ok() {
                let _ = ack_rx.recv_timeout(within);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!("off".parse::<Target>().unwrap(), Target::Off);
        assert_eq!("stdout".parse::<Target>().unwrap(), Target::Stdout);
        assert_eq!(
            "/tmp/x".parse::<Target>().unwrap(),
            Target::File("/tmp/x".into())
        );
    }
}

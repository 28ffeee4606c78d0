//! Debian's nginx as a real TLS backend on loopback: one process (`master_process off`),
//! its files in a temp directory, stopped when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::{free_port, wait_for};

pub struct Nginx {
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// An HTTPS server with `cert`/`key` answering every request with what it saw of
    /// TLS: `sni=<server name> client=<client certificate subject>`, and the same in
    /// `x-sni`. `client_ca`: require a client certificate signed by it.
    pub fn tls_echo(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Nginx {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let client = match client_ca {
            Some(ca) => format!(
                "ssl_client_certificate {};\n        ssl_verify_client on;",
                ca.display()
            ),
            None => String::new(),
        };
        let conf = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {client}
        location / {{
            add_header x-sni "$ssl_server_name" always;
            return 200 "sni=$ssl_server_name client=$ssl_client_s_dn\n";
        }}
    }}
}}
"#,
            cert = cert.display(),
            key = key.display(),
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx (Debian nginx-light) must be installed: scripts/test.sh installs it");
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut n = Nginx { addr, child, dir };
        wait_for("nginx to listen", || {
            if let Ok(Some(status)) = n.child.try_wait() {
                panic!("nginx exited with {status}: {}", n.log());
            }
            std::net::TcpStream::connect(addr).ok()
        });
        n
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

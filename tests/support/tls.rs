//! Certificates made at test time with the `openssl` command: a CA, and a
//! server certificate for 127.0.0.1 signed by it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{RedisServer, free_port};

/// A directory holding `ca.crt` (and, for a server, `server.crt` and `server.key`).
pub struct Certificates {
    pub dir: PathBuf,
}

impl Certificates {
    /// A new CA, and a server certificate it signed, in a fresh directory.
    pub fn new(name: &str) -> Certificates {
        let dir =
            std::env::temp_dir().join(format!("cached-api-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for the certificates");
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=cached-api test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ],
        );
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-days",
                "1",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "san.ext",
                "-out",
                "server.crt",
            ],
        );
        Certificates { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A `redis-server` serving TLS only, with this certificate.
    pub fn start_server(&self) -> RedisServer {
        let port = free_port();
        let args = self.server_args(port);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        RedisServer::start_with(port, &args)
    }

    /// `redis-server` arguments serving TLS only, on `port`, with this certificate.
    fn server_args(&self, port: u16) -> Vec<String> {
        let path = |name: &str| self.dir.join(name).to_str().unwrap().to_owned();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path("server.crt"),
            "--tls-key-file".into(),
            path("server.key"),
            "--tls-ca-cert-file".into(),
            path("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| {
            panic!("could not run openssl (apt-get install -y openssl), which makes the test certificates: {error}")
        });
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

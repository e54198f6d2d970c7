//! Real PostgreSQL and nginx processes for the fleet tests: a throwaway
//! database cluster on a loopback port (run by the dedicated system user
//! when the tests run as root, since PostgreSQL refuses root), and an nginx
//! that spreads requests round-robin over server replicas.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// PostgreSQL's programs: `CLS_PG_BINDIR` (written by scripts/setup.sh) or
/// the newest Debian install.
pub fn postgres_bindir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CLS_PG_BINDIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir)).filter(|d| d.join("initdb").is_file());
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// nginx: `CLS_NGINX_BIN` or the Debian path.
pub fn nginx_binary() -> Option<PathBuf> {
    std::env::var_os("CLS_NGINX_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")))
        .filter(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL cluster in a temporary folder, stopped on drop.
pub struct Postgres {
    bindir: PathBuf,
    data: PathBuf,
    /// As root, the user that runs it.
    user: Option<String>,
    pub port: u16,
    _tmp: tempfile::TempDir,
}

impl Postgres {
    /// Creates and starts a cluster; `None` when PostgreSQL is not installed.
    pub fn start() -> Option<Postgres> {
        let bindir = postgres_bindir()?;
        let user = is_root().then(|| {
            std::env::var("CLS_PG_USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "cls-postgres".to_owned())
        });
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let data = tmp.path().join("data");
        if let Some(user) = &user {
            // The cluster's user must reach its folder.
            let status = Command::new("chown")
                .args([user.as_str(), &tmp.path().display().to_string()])
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "chown to {user} failed (run scripts/setup.sh as root)"
            );
        }
        let pg = Postgres {
            bindir,
            data,
            user,
            port: free_port(),
            _tmp: tmp,
        };
        let data = pg.data.display().to_string();
        pg.run_ok(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        pg.start_server();
        Some(pg)
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let binary = self.bindir.join(program);
        match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(binary).args(args);
                c
            }
            None => {
                let mut c = Command::new(binary);
                c.args(args);
                c
            }
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }

    fn run_ok(&self, program: &str, args: &[&str]) {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_server(&self) {
        let data = self.data.display().to_string();
        let log = self
            .data
            .with_file_name("postgres.log")
            .display()
            .to_string();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.data.parent().unwrap_or(Path::new("/tmp")).display()
        );
        self.run_ok(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        );
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop_server(&self) {
        let data = self.data.display().to_string();
        self.run_ok("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }

    /// Runs SQL as the superuser, returning its output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let out = self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                database,
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        );
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(name)
    }

    /// The URL of `database`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self
            .command("pg_ctl", &["-D", &data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// nginx in front of `upstreams`, round-robin; stopped on drop.
pub struct LoadBalancer {
    child: std::process::Child,
    pub url: String,
    _tmp: tempfile::TempDir,
}

impl LoadBalancer {
    /// Starts nginx on a free loopback port; `None` when nginx is absent.
    /// `upstreams` are `http://127.0.0.1:<port>` URLs.
    pub fn start(upstreams: &[String]) -> Option<LoadBalancer> {
        let nginx = nginx_binary()?;
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("    server {};\n", u.trim_start_matches("http://")))
            .collect();
        let dir = tmp.path().display();
        let user = if is_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
             \x20 fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
             \x20 client_max_body_size 64m;\n\
             \x20 upstream replicas {{\n{servers}  }}\n\
             \x20 server {{\n    listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://replicas; }}\n  }}\n}}\n"
        );
        let conf_path = tmp.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap_or_else(|e| panic!("write nginx.conf: {e}"));
        let child = Command::new(nginx)
            .arg("-p")
            .arg(tmp.path())
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nginx: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let up = crate::poll(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "nginx did not listen on {url}");
        Some(LoadBalancer {
            child,
            url,
            _tmp: tmp,
        })
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

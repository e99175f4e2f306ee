//! apicache started in-process in front of a test origin, configured by setting [`apicache::Config`]
//! fields rather than pasting TOML.
//!
//! ```ignore
//! let p = ProxyBuilder::new(&origin)
//!     .admin()
//!     .config(|c| c.cache.hit_for_pass = Duration::ZERO)
//!     .route(r#"path = "/a/{id}", ttl = "5s""#)
//!     .start()
//!     .await;
//! ```

use apicache::{Config, Running};

use super::Origin;

/// The admin token of [`ProxyBuilder::admin`].
pub const TOKEN: &str = "0123456789abcdef0123";
/// `Authorization` value carrying [`TOKEN`].
pub const BEARER: &str = "Bearer 0123456789abcdef0123";

type Edit = Box<dyn FnOnce(&mut Config)>;

/// Builds the config of one apicache: the harness base, `[admin]` and the routes through TOML
/// (they need validation), then field edits.
pub struct ProxyBuilder {
    origin_url: String,
    admin: bool,
    routes: Vec<String>,
    /// Extra `[origin]` lines, as written in the file.
    origin_lines: Vec<String>,
    /// Extra `[server]` lines.
    server_lines: Vec<String>,
    /// Extra `[admin]` lines.
    admin_lines: Vec<String>,
    /// `[cluster]` lines, when joining one.
    cluster_lines: Vec<String>,
    edits: Vec<Edit>,
}

impl ProxyBuilder {
    /// apicache in front of `origin`.
    pub fn new(origin: &Origin) -> Self {
        Self::for_url(&origin.url())
    }

    /// apicache in front of whatever is (or is not) at `origin_url`.
    pub fn for_url(origin_url: &str) -> Self {
        ProxyBuilder {
            origin_url: origin_url.to_string(),
            admin: false,
            routes: Vec::new(),
            origin_lines: Vec::new(),
            server_lines: Vec::new(),
            admin_lines: Vec::new(),
            cluster_lines: Vec::new(),
            edits: Vec::new(),
        }
    }

    /// An admin listener on its own ephemeral 127.0.0.1 port, guarded by [`TOKEN`].
    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }

    /// One route, as the inside of a TOML inline table: `path = "/a/{id}", ttl = "5s"`.
    pub fn route(mut self, fields: &str) -> Self {
        self.routes.push(format!("{{ {fields} }}"));
        self
    }

    /// One `[origin]` key, as written in the file: `preserve_host = true`.
    pub fn origin_key(mut self, line: &str) -> Self {
        self.origin_lines.push(line.to_string());
        self
    }

    /// One `[server]` key, as written in the file: `header_read_timeout = "1s"`.
    pub fn server_key(mut self, line: &str) -> Self {
        self.server_lines.push(line.to_string());
        self
    }

    /// One `[admin]` key (with [`Self::admin`]), as written in the file.
    pub fn admin_key(mut self, line: &str) -> Self {
        self.admin_lines.push(line.to_string());
        self
    }

    /// Join the cluster whose purge log is at `redis_url`, as node `node_id`.
    pub fn cluster(mut self, redis_url: &str, node_id: &str) -> Self {
        self.cluster_lines
            .push(format!("redis_url = \"{redis_url}\""));
        self.cluster_lines.push(format!("node_id = \"{node_id}\""));
        self
    }

    /// One more `[cluster]` key (with [`Self::cluster`]), as written in the file.
    pub fn cluster_key(mut self, line: &str) -> Self {
        self.cluster_lines.push(line.to_string());
        self
    }

    /// Change the parsed config (applied in order, after validation).
    pub fn config(mut self, edit: impl FnOnce(&mut Config) + 'static) -> Self {
        self.edits.push(Box::new(edit));
        self
    }

    /// The TOML the config is parsed from. The base: public listener on 127.0.0.1:0, 5s shutdown
    /// grace, 1s origin timeouts.
    pub fn toml(&self) -> String {
        // Top-level keys go before the first table.
        let mut text = format!("routes = [{}]\n", self.routes.join(", "));
        text += "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n";
        for line in &self.server_lines {
            text += &format!("{line}\n");
        }
        text += &format!(
            "[origin]\nurl = \"{}\"\ntimeout = \"1s\"\nconnect_timeout = \"1s\"\n",
            self.origin_url
        );
        for line in &self.origin_lines {
            text += &format!("{line}\n");
        }
        if self.admin {
            text += &format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n");
            for line in &self.admin_lines {
                text += &format!("{line}\n");
            }
        }
        if !self.cluster_lines.is_empty() {
            text += "[cluster]\n";
            for line in &self.cluster_lines {
                text += &format!("{line}\n");
            }
        }
        text
    }

    /// The finished config.
    pub fn build(self) -> Config {
        let text = self.toml();
        let mut cfg = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for edit in self.edits {
            edit(&mut cfg);
        }
        // Edits to hosts, trusted proxies or stripped fields take effect as if written in the file.
        cfg.forwarding = apicache::forwarding::Forwarding::compile(&cfg.server, &cfg.normalize)
            .unwrap_or_else(|(k, why)| panic!("{k}: {why}"));
        cfg
    }

    /// Start apicache; stop it with `shutdown().await`.
    pub async fn start(self) -> Running {
        let admin = self.admin;
        let p = apicache::start(self.build()).await.unwrap();
        assert_eq!(p.admin_addr.is_some(), admin);
        p
    }
}

/// apicache in front of `origin` with the harness defaults.
pub async fn proxy(origin: &Origin) -> Running {
    ProxyBuilder::new(origin).start().await
}

//! Routes, compiled once when the config is validated: one matchit router and each route's
//! policy, looked up once per request.

use std::time::Duration;

use serde::Serialize;

use crate::cache::tags;
use crate::config::{AuthMode, RouteConfig};
use crate::rfc::storable::RoutePolicy;
use crate::verify::VerifyPolicy;

/// One configured route, ready to use.
#[derive(Debug, Clone)]
pub struct Route {
    /// As configured.
    pub config: RouteConfig,
    /// The policy the cache applies on it.
    pub policy: RoutePolicy,
}

/// The configured routes; the first match wins.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    router: matchit::Router<usize>,
    routes: Vec<Route>,
}

/// What a request's path matched.
#[derive(Debug, Clone, Default)]
pub struct Matched {
    /// Index of the route, `None` when no route matched (metrics label `none`).
    pub id: Option<usize>,
    /// Whether the route caches at all.
    pub cache: bool,
    /// Lifetime, stale windows and credential mode.
    pub policy: RoutePolicy,
    /// The route's tag templates filled from the path.
    pub tags: Vec<String>,
}

impl Routes {
    /// Compile `routes`; an error names the offending key (`routes[i].path`) and why.
    pub fn compile(routes: Vec<RouteConfig>) -> Result<Routes, (String, String)> {
        let mut router = matchit::Router::new();
        let mut compiled = Vec::with_capacity(routes.len());
        for (i, config) in routes.into_iter().enumerate() {
            // matchit rejects bad syntax and patterns that shadow each other.
            if let Err(e) = router.insert(config.path.as_str(), i) {
                return Err((format!("routes[{i}].path"), e.to_string()));
            }
            for tag in &config.tags {
                if let Some(name) = tags::template_params(tag).into_iter().find(|p| {
                    !config.path.contains(&format!("{{{p}}}"))
                        && !config.path.contains(&format!("{{*{p}}}"))
                }) {
                    return Err((
                        format!("routes[{i}].tags"),
                        format!("`{{{name}}}` is not a parameter of path `{}`", config.path),
                    ));
                }
            }
            let verify =
                verify_policy(&config).map_err(|(k, why)| (format!("routes[{i}].{k}"), why))?;
            let policy = RoutePolicy {
                ttl: config.ttl,
                stale_while_revalidate: config.stale_while_revalidate,
                stale_if_error: config.stale_if_error,
                per_credential: config.auth == AuthMode::PerCredential,
                verify,
            };
            compiled.push(Route { config, policy });
        }
        Ok(Routes {
            router,
            routes: compiled,
        })
    }

    /// Match a normalized path.
    pub fn at(&self, path: &str) -> Matched {
        let Ok(m) = self.router.at(path) else {
            return Matched {
                cache: true,
                ..Default::default()
            };
        };
        let route = &self.routes[*m.value];
        let tags = if route.config.tags.is_empty() {
            Vec::new()
        } else {
            let params: Vec<(&str, &str)> = m.params.iter().collect();
            route
                .config
                .tags
                .iter()
                .map(|t| tags::render_template(t, params.iter().copied()))
                .collect()
        };
        Matched {
            id: Some(*m.value),
            cache: route.config.cache,
            policy: route.policy,
            tags,
        }
    }

    /// The routes in order.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether no route is configured.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// A route's verdict lifetimes: set only with `auth = "shared-verified"`, where both default.
fn verify_policy(config: &RouteConfig) -> Result<Option<VerifyPolicy>, (&'static str, String)> {
    if config.auth != AuthMode::SharedVerified {
        for (key, set) in [
            ("verify_ttl", config.verify_ttl.is_some()),
            ("reject_ttl", config.reject_ttl.is_some()),
        ] {
            if set {
                return Err((key, "only applies with auth = \"shared-verified\"".into()));
            }
        }
        return Ok(None);
    }
    let verify_ttl = config.verify_ttl.unwrap_or(DEFAULT_VERIFY_TTL);
    if verify_ttl.is_zero() {
        return Err((
            "verify_ttl",
            "must be more than 0 (use auth = \"per-credential\" to never share)".into(),
        ));
    }
    Ok(Some(VerifyPolicy {
        verify_ttl,
        reject_ttl: config.reject_ttl.unwrap_or(DEFAULT_REJECT_TTL),
    }))
}

/// How long an accepted credential is trusted when the route does not say.
const DEFAULT_VERIFY_TTL: Duration = Duration::from_secs(300);
/// How long a rejected credential is answered locally when the route does not say.
const DEFAULT_REJECT_TTL: Duration = Duration::from_secs(30);

impl std::ops::Index<usize> for Routes {
    type Output = RouteConfig;
    fn index(&self, i: usize) -> &RouteConfig {
        &self.routes[i].config
    }
}

impl Serialize for Routes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.routes.iter().map(|r| &r.config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(toml_text: &str) -> RouteConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn compiled_once_first_match_wins() {
        let routes = Routes::compile(vec![
            route("path = \"/accounts/{id}\"\ntags = [\"account-{id}\"]\nttl = \"5s\""),
            route("path = \"/me\"\nauth = \"per-credential\"\ncache = true"),
            route("path = \"/admin/{*rest}\"\ncache = false"),
        ])
        .unwrap();
        let m = routes.at("/accounts/A1");
        assert_eq!((m.id, m.cache), (Some(0), true));
        assert_eq!(m.tags, ["account-A1"]);
        assert_eq!(m.policy.ttl, Some(std::time::Duration::from_secs(5)));
        assert!(routes.at("/me").policy.per_credential);
        assert!(!routes.at("/admin/x/y").cache);
        let none = routes.at("/other");
        assert_eq!((none.id, none.cache), (None, true));
    }

    #[test]
    fn errors_name_the_key() {
        let e = Routes::compile(vec![
            route("path = \"/a/{id}\""),
            route("path = \"/a/{other}\""),
        ])
        .unwrap_err();
        assert_eq!(e.0, "routes[1].path");
        let e =
            Routes::compile(vec![route("path = \"/a/{id}\"\ntags = [\"t-{nope}\"]")]).unwrap_err();
        assert_eq!(e.0, "routes[0].tags");
        assert!(e.1.contains("{nope}"), "{}", e.1);
        let e = Routes::compile(vec![route("path = \"/a\"\nverify_ttl = \"1m\"")]).unwrap_err();
        assert_eq!(e.0, "routes[0].verify_ttl");
        let e = Routes::compile(vec![route(
            "path = \"/a\"\nauth = \"shared-verified\"\nverify_ttl = \"0s\"",
        )])
        .unwrap_err();
        assert_eq!(e.0, "routes[0].verify_ttl");
    }

    #[test]
    fn shared_verified_lifetimes_default() {
        let routes = Routes::compile(vec![
            route("path = \"/a\"\nauth = \"shared-verified\""),
            route("path = \"/b\"\nauth = \"shared-verified\"\nverify_ttl = \"1m\"\nreject_ttl = \"0s\""),
        ])
        .unwrap();
        let a = routes.at("/a").policy.verify.unwrap();
        assert_eq!(
            (a.verify_ttl, a.reject_ttl),
            (DEFAULT_VERIFY_TTL, DEFAULT_REJECT_TTL)
        );
        let b = routes.at("/b").policy.verify.unwrap();
        assert_eq!(
            (b.verify_ttl, b.reject_ttl),
            (Duration::from_secs(60), Duration::ZERO)
        );
        assert!(!routes.at("/b").policy.per_credential);
    }
}

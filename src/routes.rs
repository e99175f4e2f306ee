//! Routes, compiled once when the config is validated: one matchit router and each route's
//! policy, looked up once per request.
//!
//! The most specific pattern wins, whatever the order in the file (matchit's rule): a static
//! segment beats a `{param}`, which beats a `{*catch_all}`. So `/users/me` wins over
//! `/users/{id}` for `/users/me`, and `/files/{*rest}` only gets what nothing else matches.

use std::time::Duration;

use serde::Serialize;

use crate::cache::tags;
use crate::config::{AuthMode, NormalizeConfig, RouteConfig, TrailingSlash};
use crate::normalize::{self, Normalizer};
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

/// The configured routes; the most specific pattern matching a path wins (not the first).
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
    /// Compile `routes` for paths normalized by `norm`; an error names the offending key
    /// (`routes[i].path`) and why, including a pattern no normalized path can ever match.
    pub fn compile(
        routes: Vec<RouteConfig>,
        norm: &NormalizeConfig,
    ) -> Result<Routes, (String, String)> {
        let mut router = matchit::Router::new();
        let mut compiled = Vec::with_capacity(routes.len());
        for (i, config) in routes.into_iter().enumerate() {
            if let Some(why) = unmatchable(&config.path, norm) {
                return Err((
                    format!("routes[{i}].path"),
                    format!("`{}` never matches: {why}", config.path),
                ));
            }
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

    /// The pattern of route `id` (empty for an unknown id).
    pub fn pattern(&self, id: usize) -> &str {
        self.routes.get(id).map_or("", |r| r.config.path.as_str())
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

/// Why `pattern` can never match a request path as the normalizer leaves it, if it cannot: such
/// a route would pass validation and silently do nothing.
fn unmatchable(pattern: &str, cfg: &NormalizeConfig) -> Option<String> {
    if !pattern.starts_with('/') {
        return Some("a route path must start with `/`, as every request path does".into());
    }
    if pattern.contains('?') {
        return Some("routes match the path only; the query is never part of it".into());
    }
    if pattern.contains('#') {
        return Some("a fragment (`#…`) is never sent to a server".into());
    }
    if pattern.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Some("request paths never hold spaces or control characters".into());
    }
    let sample = sample_path(pattern);
    match normalize::normalize_percent(pattern) {
        Err(_) => return Some("malformed percent-encoding".into()),
        Ok(fixed) if fixed != pattern => {
            return Some(format!(
                "request paths are matched with percent-encodings in upper case, unreserved \
                 characters (A-Z a-z 0-9 - . _ ~) decoded and non-ASCII encoded; write `{fixed}`"
            ))
        }
        Ok(_) => {}
    }
    if sample.split('/').any(|seg| seg == "." || seg == "..") {
        return Some("normalization removes `.` and `..` segments from every request path".into());
    }
    if cfg.merge_slashes && sample.contains("//") {
        return Some("normalize.merge_slashes turns `//` into `/` in every request path".into());
    }
    if cfg.trailing_slash == TrailingSlash::Strip && sample.len() > 1 && sample.ends_with('/') {
        return Some(
            "normalize.trailing_slash = \"strip\" removes the trailing `/` from every request path"
                .into(),
        );
    }
    let plain = NormalizeConfig {
        page_param: String::new(),
        ..cfg.clone()
    };
    match Normalizer::new(&plain).normalize(&sample) {
        Ok(n) if n.path_and_query == sample => None,
        Ok(n) => Some(format!(
            "request paths are normalized before matching, and `{sample}` becomes `{}`",
            n.path_and_query
        )),
        Err(e) => Some(e.to_string()),
    }
}

/// A path the pattern matches: each parameter stands for `x`, escaped braces for themselves.
fn sample_path(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                out.push('x');
            }
            c => out.push(c),
        }
    }
    out
}

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

    fn compile(routes: Vec<RouteConfig>) -> Result<Routes, (String, String)> {
        Routes::compile(routes, &NormalizeConfig::default())
    }

    #[test]
    fn compiled_once_most_specific_wins() {
        let routes = compile(vec![
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

    /// The README's precedence examples: the order in the file never matters.
    #[test]
    fn precedence_is_specificity_not_order() {
        let patterns = [
            "/{*rest}",
            "/users/{id}",
            "/users/me",
            "/users/{id}/posts",
            "/files/{*rest}",
            "/files/readme",
        ];
        // (path, winning pattern; None: no route)
        let rows = [
            ("/users/me", Some("/users/me")),
            ("/users/42", Some("/users/{id}")),
            ("/users/me/posts", Some("/users/{id}/posts")),
            ("/users/42/posts", Some("/users/{id}/posts")),
            ("/files/readme", Some("/files/readme")),
            ("/files/a/b", Some("/files/{*rest}")),
            ("/files/", Some("/{*rest}")),
            ("/other", Some("/{*rest}")),
            ("/", None),
        ];
        for reversed in [false, true] {
            let mut list: Vec<&str> = patterns.to_vec();
            if reversed {
                list.reverse();
            }
            let routes = compile(
                list.iter()
                    .map(|p| route(&format!("path = {p:?}")))
                    .collect(),
            )
            .unwrap();
            for (path, want) in rows {
                let got = routes.at(path).id.map(|i| routes[i].path.as_str());
                assert_eq!(got, want, "{path} (reversed: {reversed})");
            }
        }
    }

    /// The README's example, in its order.
    #[test]
    fn readme_example() {
        let routes = compile(vec![
            route("path = \"/{*rest}\""),
            route("path = \"/users/{id}\""),
            route("path = \"/users/me\"\nauth = \"per-credential\""),
        ])
        .unwrap();
        let rows = [
            ("/users/me", Some(2)),
            ("/users/42", Some(1)),
            ("/users/42/posts", Some(0)),
            ("/users", Some(0)),
            ("/", None),
        ];
        for (path, want) in rows {
            assert_eq!(routes.at(path).id, want, "{path}");
        }
        // A parameter and a catch-all cannot start at the same place.
        let e = compile(vec![
            route("path = \"/users/{*rest}\""),
            route("path = \"/users/{id}\""),
        ])
        .unwrap_err();
        assert_eq!(e.0, "routes[1].path");
    }

    #[test]
    fn unmatchable_paths_are_refused() {
        let strip = NormalizeConfig {
            trailing_slash: TrailingSlash::Strip,
            ..Default::default()
        };
        let keep_slashes = NormalizeConfig {
            merge_slashes: false,
            ..Default::default()
        };
        let ci = NormalizeConfig {
            case_insensitive_paths: true,
            ..Default::default()
        };
        let default = NormalizeConfig::default();
        // (pattern, config, Some(words in the reason) or None: accepted)
        let rows: [(&str, &NormalizeConfig, Option<&str>); 24] = [
            ("/users/{id}", &default, None),
            ("/", &default, None),
            ("/files/{*rest}", &default, None),
            ("/a/{{literal}}", &default, None),
            ("/a%2Fb/{id}", &default, None),
            ("/caf%C3%A9", &default, None),
            ("/me;v=1", &default, None),
            ("users/{id}", &default, Some("start with `/`")),
            ("", &default, Some("start with `/`")),
            ("{*rest}", &default, Some("start with `/`")),
            ("/search?q={q}", &default, Some("query")),
            ("/a#top", &default, Some("fragment")),
            ("/a b", &default, Some("spaces")),
            ("/a%2fb", &default, Some("write `/a%2Fb`")),
            ("/%7Euser", &default, Some("write `/~user`")),
            ("/caf\u{e9}", &default, Some("write `/caf%C3%A9`")),
            ("/a%zz", &default, Some("malformed")),
            ("/a/./b", &default, Some("`..` segments")),
            ("/a/{id}/..", &default, Some("`..` segments")),
            ("/a//b", &default, Some("merge_slashes")),
            ("/a//b", &keep_slashes, None),
            ("/users/{id}/", &strip, Some("trailing `/`")),
            ("/", &strip, None),
            // It only matches that exact case, but it does match.
            ("/Users/{userId}", &ci, None),
        ];
        for (pattern, cfg, want) in rows {
            let got = Routes::compile(vec![route(&format!("path = {pattern:?}"))], cfg);
            match (want, got) {
                (None, Ok(_)) => {}
                (Some(words), Err((key, why))) => {
                    assert_eq!(key, "routes[0].path", "{pattern}");
                    assert!(why.contains(words), "{pattern}: {why}");
                    assert!(why.contains("never matches"), "{pattern}: {why}");
                }
                (want, got) => panic!("{pattern}: want {want:?}, got {:?}", got.err()),
            }
        }
        assert!(Routes::compile(vec![route("path = \"/users/{id}\"")], &ci).is_ok());
    }

    #[test]
    fn errors_name_the_key() {
        let e = compile(vec![
            route("path = \"/a/{id}\""),
            route("path = \"/a/{other}\""),
        ])
        .unwrap_err();
        assert_eq!(e.0, "routes[1].path");
        let e = compile(vec![route("path = \"/a/{id}\"\ntags = [\"t-{nope}\"]")]).unwrap_err();
        assert_eq!(e.0, "routes[0].tags");
        assert!(e.1.contains("{nope}"), "{}", e.1);
        let e = compile(vec![route("path = \"/a\"\nverify_ttl = \"1m\"")]).unwrap_err();
        assert_eq!(e.0, "routes[0].verify_ttl");
        let e = compile(vec![route(
            "path = \"/a\"\nauth = \"shared-verified\"\nverify_ttl = \"0s\"",
        )])
        .unwrap_err();
        assert_eq!(e.0, "routes[0].verify_ttl");
    }

    #[test]
    fn shared_verified_lifetimes_default() {
        let routes = compile(vec![
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

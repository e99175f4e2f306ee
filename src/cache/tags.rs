//! Surrogate keys: parsing the origin's `Surrogate-Key`, route tag templates, and the exact tag → key index.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use http::HeaderMap;

/// Longest accepted surrogate key, as CDNs set it.
pub const MAX_KEY_LEN: usize = 1024;
/// Longest accepted `Surrogate-Key` header.
pub const MAX_HEADER_LEN: usize = 16 * 1024;

/// The internal tag under which every object of a URL is indexed (a space can never occur in a surrogate key).
pub fn url_tag(url: &str) -> String {
    format!("url {url}")
}

/// Read `Surrogate-Key` values; over-long keys or headers are logged and trimmed, never fatal.
pub fn parse_surrogate_keys(headers: &HeaderMap) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut budget = MAX_HEADER_LEN;
    for v in headers.get_all("surrogate-key") {
        let Ok(s) = v.to_str() else {
            tracing::warn!("ignoring a Surrogate-Key header that is not visible ASCII");
            continue;
        };
        for key in s.split_ascii_whitespace() {
            if key.len() > MAX_KEY_LEN {
                tracing::warn!(len = key.len(), "surrogate key longer than 1KiB ignored");
                continue;
            }
            if key.len() + 1 > budget {
                tracing::warn!("Surrogate-Key header over 16KiB: keeping the keys that fit");
                return out;
            }
            budget -= key.len() + 1;
            if !out.iter().any(|k| k == key) {
                out.push(key.to_string());
            }
        }
    }
    out
}

/// Names of the `{param}` placeholders in a tag template.
pub fn template_params(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(
            rest[start + 1..start + len]
                .trim_start_matches('*')
                .to_string(),
        );
        rest = &rest[start + len + 1..];
    }
    out
}

/// Fill a tag template with route parameters.
pub fn render_template<'a>(
    template: &str,
    params: impl Iterator<Item = (&'a str, &'a str)> + Clone,
) -> String {
    let mut out = template.to_string();
    for (name, value) in params {
        out = out
            .replace(&format!("{{{name}}}"), value)
            .replace(&format!("{{*{name}}}"), value);
    }
    out
}

/// tag → (cache key → generation of the entry that carried the tag, and a handle `V` to that entry).
///
/// Entries are linked before they enter the cache and unlinked by the eviction listener only when the
/// generation still matches, so a late "replaced" notice never unlinks the newer entry.
pub struct TagIndex<V = ()> {
    /// Keys are shared `Arc<str>`s: an object with many tags holds its (possibly long) key once.
    map: DashMap<String, HashMap<Arc<str>, (u64, V)>>,
}

impl<V> Default for TagIndex<V> {
    fn default() -> Self {
        Self {
            map: DashMap::new(),
        }
    }
}

impl<V: Clone> TagIndex<V> {
    /// Record that `key` (generation `gen`, handle `handle`) carries `tags`.
    pub fn link(&self, key: &str, gen: u64, handle: &V, tags: &[String]) {
        let key: Arc<str> = Arc::from(key);
        for t in tags {
            self.map
                .entry(t.clone())
                .or_default()
                .insert(key.clone(), (gen, handle.clone()));
        }
    }

    /// Forget `key` under `tags` if the index still points at generation `gen`.
    pub fn unlink(&self, key: &str, gen: u64, tags: &[String]) {
        for t in tags {
            if let dashmap::Entry::Occupied(mut e) = self.map.entry(t.clone()) {
                if e.get().get(key).is_some_and(|(g, _)| *g == gen) {
                    e.get_mut().remove(key);
                    if e.get().is_empty() {
                        e.remove();
                    }
                }
            }
        }
    }

    /// The keys under a tag, with their generations and handles.
    pub fn handles(&self, tag: &str) -> Vec<(String, u64, V)> {
        self.map
            .get(tag)
            .map(|m| {
                m.iter()
                    .map(|(k, (g, v))| (k.to_string(), *g, v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The keys under a tag, with their generations.
    pub fn keys(&self, tag: &str) -> Vec<(String, u64)> {
        self.map
            .get(tag)
            .map(|m| m.iter().map(|(k, (g, _))| (k.to_string(), *g)).collect())
            .unwrap_or_default()
    }

    /// Number of distinct tags indexed (including URL tags).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Total (tag, key) links; equals the sum of tags over live entries when the index is exact.
    pub fn links(&self) -> usize {
        self.map.iter().map(|e| e.value().len()).sum()
    }

    /// Drop everything (purge-all).
    pub fn clear(&self) {
        self.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn parses_keys_with_limits() {
        let mut h = HeaderMap::new();
        h.append(
            "surrogate-key",
            HeaderValue::from_static("cat-17  prod-1 cat-17"),
        );
        h.append("surrogate-key", HeaderValue::from_static("prod-2"));
        assert_eq!(parse_surrogate_keys(&h), vec!["cat-17", "prod-1", "prod-2"]);
        let long = "k".repeat(MAX_KEY_LEN + 1);
        let mut h = HeaderMap::new();
        h.insert(
            "surrogate-key",
            HeaderValue::from_str(&format!("{long} ok")).unwrap(),
        );
        assert_eq!(parse_surrogate_keys(&h), vec!["ok"]);
        let many: Vec<String> = (0..3000).map(|i| format!("key-{i:04}")).collect();
        let mut h = HeaderMap::new();
        h.insert(
            "surrogate-key",
            HeaderValue::from_str(&many.join(" ")).unwrap(),
        );
        let got = parse_surrogate_keys(&h);
        assert!(got.len() < 3000 && got.len() > 1000);
        assert!(got.iter().map(|k| k.len() + 1).sum::<usize>() <= MAX_HEADER_LEN);
    }

    #[test]
    fn templates() {
        assert_eq!(template_params("account-{id}-{*rest}"), vec!["id", "rest"]);
        let params = [("id", "A1")];
        assert_eq!(
            render_template("account-{id}", params.iter().copied()),
            "account-A1"
        );
    }

    #[test]
    fn index_respects_generations() {
        let idx: TagIndex = TagIndex::default();
        let tags = vec!["a".to_string(), "b".to_string()];
        idx.link("k", 1, &(), &tags);
        idx.link("k", 2, &(), &tags[..1]);
        idx.unlink("k", 1, &tags); // late notice for the replaced entry
        assert_eq!(idx.keys("a"), vec![("k".to_string(), 2)]);
        assert!(idx.keys("b").is_empty());
        idx.unlink("k", 2, &tags[..1]);
        assert!(idx.is_empty());
    }
}

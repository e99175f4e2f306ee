//! Advice about a valid configuration that probably does not do what its author meant: logged at
//! start and printed by `--check-config`, never fatal.

use super::Config;

impl Config {
    /// One sentence per setting that is valid but likely a mistake.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .normalize
            .list_params
            .iter()
            .filter(|name| looks_order_sensitive(name))
            .map(|name| {
                // Escaped: the line is printed as a TOML comment, which a newline would end.
                let name = name.escape_debug();
                format!(
                    "normalize.list_params: `{name}` looks like a sort parameter, but the order of \
                     its values will be ignored (`{name}=price,name` is cached and forwarded as \
                     `{name}=name,price`); remove it from list_params if the order matters"
                )
            })
            .collect();
        out.extend(self.origin_tls_warnings());
        if let Some(a) = self.admin.as_ref().filter(|a| a.token.is_none()) {
            out.push(format!(
                "admin API has no token: anyone who can reach it ({}) can purge",
                a.listen
            ));
        }
        out
    }
}

impl Config {
    /// `insecure_skip_verify` on (said at every start), and TLS keys that have no effect.
    fn origin_tls_warnings(&self) -> Vec<String> {
        let o = &self.origin;
        let https = o.scheme == http::uri::Scheme::HTTPS;
        let mut out = Vec::new();
        if o.insecure_skip_verify && https {
            out.push(format!(
                "origin.insecure_skip_verify = true: the certificate of {} is NOT verified; \
                 anyone on the network path can pose as the origin, read and change its \
                 traffic, and poison the cache. For development only",
                o.authority
            ));
        }
        let plain = "has no effect: origin.url is http://";
        if o.insecure_skip_verify && !https {
            out.push(format!("origin.insecure_skip_verify {plain}"));
        }
        if let Some(ca) = &o.ca_file {
            // Debug-quoted: the line is printed as a TOML comment, which a newline would end.
            if !https {
                out.push(format!("origin.ca_file {ca:?} {plain}"));
            } else if o.insecure_skip_verify {
                out.push(format!(
                    "origin.ca_file {ca:?} has no effect: origin.insecure_skip_verify = true \
                     accepts any certificate"
                ));
            }
        }
        out
    }
}

/// Whether a query parameter's name says the order of its values matters (`_sort=price,name`,
/// `order_by=date,id`): sorting such a list changes what the request asks for.
pub fn looks_order_sensitive(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.contains("sort") || lower.contains("order")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_like_names() {
        // (name, looks order-sensitive)
        let rows = [
            ("sort", true),
            ("_sort", true),
            ("order", true),
            ("_order", true),
            ("order_by", true),
            ("orderBy", true),
            ("sort_by", true),
            ("sortBy", true),
            ("SORT", true),
            ("x-Sorting", true),
            ("reorder", true),
            ("fields", false),
            ("include", false),
            ("tags", false),
            ("", false),
        ];
        for (name, want) in rows {
            assert_eq!(looks_order_sensitive(name), want, "{name}");
        }
    }

    #[test]
    fn list_params_that_look_like_sorts_are_warned_about() {
        let c = Config::parse(
            "[origin]\nurl = \"http://a:1\"\n[normalize]\nlist_params = [\"fields\", \"_sort\", \"orderBy\"]\n",
        )
        .unwrap();
        let w = c.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("`_sort`") && w[0].contains("order of its values will be ignored"));
        assert!(w[1].contains("`orderBy`"));
        let quiet = Config::parse(
            "[origin]\nurl = \"http://a:1\"\n[normalize]\nlist_params = [\"fields\"]\n",
        )
        .unwrap();
        assert!(quiet.warnings().is_empty());
        let open_admin =
            Config::parse("[origin]\nurl = \"http://a:1\"\n[admin]\nlisten = \"127.0.0.1:0\"\n")
                .unwrap();
        assert!(open_admin.warnings()[0].contains("no token"));
    }

    #[test]
    fn insecure_origins_and_tls_keys_without_effect_are_warned_about() {
        let parse = |url: &str, keys: &str| {
            Config::parse(&format!("[origin]\nurl = \"{url}\"\n{keys}"))
                .unwrap()
                .warnings()
        };
        let w = parse("https://a.test", "insecure_skip_verify = true\n");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "origin.insecure_skip_verify = true: the certificate of a.test is NOT verified"
            ),
            "{w:?}"
        );
        let w = parse("http://a.test", "insecure_skip_verify = true\n");
        assert_eq!(
            w,
            ["origin.insecure_skip_verify has no effect: origin.url is http://"]
        );
        let dir = std::env::temp_dir().join(format!("apicache-warn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let line = format!("ca_file = {:?}\n", ca.display().to_string());
        let w = parse("http://a.test", &line);
        assert!(w[0].starts_with("origin.ca_file") && w[0].ends_with("origin.url is http://"));
        let w = parse(
            "https://a.test",
            &format!("{line}insecure_skip_verify = true\n"),
        );
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[1].contains("accepts any certificate"), "{w:?}");
        assert!(parse("https://a.test", &line).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The typed `Cache-Status` (RFC 9211) of one answer. Its `Display` is the header value, and the
//! `X-Cache` value and the metrics result are derived from it, so the three never disagree.

use std::fmt;

use super::storable::NoStore;

/// This cache's name in `Cache-Status`.
pub const CACHE_NAME: &str = "apicache";

/// Why the request went to the origin (RFC 9211 §2.2 `fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fwd {
    /// Nothing stored under the URL.
    UriMiss,
    /// The URL is stored, but not for this request's Vary values.
    VaryMiss,
    /// The stored object was stale (or not fresh enough for the request).
    Stale,
    /// The request asked for revalidation (`no-cache`).
    Request,
    /// The cache was bypassed (route, request no-store, hit-for-pass).
    Bypass,
    /// The method is not cacheable.
    Method,
}

impl Fwd {
    /// The RFC 9211 token.
    pub fn as_str(self) -> &'static str {
        match self {
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Stale => "stale",
            Fwd::Request => "request",
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
        }
    }
}

/// The `detail` parameter: why this answer is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Served stale under the request's `max-stale`.
    MaxStale,
    /// Served stale while a background refresh runs.
    StaleWhileRevalidate,
    /// Served stale because the origin failed.
    StaleIfError,
    /// Not stored, for this reason.
    NotStored(NoStore),
    /// The route has `cache = false`.
    Route,
    /// A credentialed request on no route, under `cache.credentialed = "pass"`.
    Credentialed,
    /// An unsafe method, forwarded.
    Unsafe,
    /// Vary values kept changing under concurrent fills: forwarded uncached.
    VaryChurn,
    /// `only-if-cached` and nothing suitable is stored.
    OnlyIfCached,
    /// `shared-verified`: the origin accepted this credential recently.
    CredentialVerified,
    /// `shared-verified`: no current verdict, so the request went to the origin.
    CredentialUnverified,
    /// `shared-verified`: the origin rejected this credential recently; answered locally.
    CredentialRejected,
    /// The path read strictly and as the origin may read it match different routes, one of
    /// them `shared-verified`: forwarded uncached.
    AmbiguousRoute,
    /// An error answer, with its cause (`refused`, `timeout`, `uri-too-long`, …).
    Error(&'static str),
}

impl Detail {
    /// The token written after `detail=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Detail::MaxStale => "max-stale",
            Detail::StaleWhileRevalidate => "stale-while-revalidate",
            Detail::StaleIfError => "stale-if-error",
            Detail::NotStored(reason) => reason.as_str(),
            Detail::Route => "route",
            Detail::Credentialed => "credentialed",
            Detail::Unsafe => "unsafe",
            Detail::VaryChurn => "vary-churn",
            Detail::OnlyIfCached => "only-if-cached",
            Detail::CredentialVerified => "credential-verified",
            Detail::CredentialUnverified => "credential-unverified",
            Detail::CredentialRejected => "credential-rejected",
            Detail::AmbiguousRoute => "ambiguous-route",
            Detail::Error(cause) => cause,
        }
    }

    /// Whether the answer is a stored object served past its freshness.
    fn is_stale(self) -> bool {
        matches!(
            self,
            Detail::MaxStale | Detail::StaleWhileRevalidate | Detail::StaleIfError
        )
    }
}

/// What the cache did for a request, as `X-Cache` and the metrics show it. Only `Hit` is
/// answered without the origin's help: a hit ratio is hits over all requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Served fresh from the cache, without asking the origin.
    Hit,
    /// Fetched from the origin (this request's own fetch).
    Miss,
    /// Served stale (stale-while-revalidate, stale-if-error, max-stale).
    Stale,
    /// Not cacheable: forwarded.
    Pass,
    /// Waited for another request's origin fetch and got its outcome: no origin request of its own.
    Collapsed,
    /// The origin confirmed the stored response (a 304, or a 200 to a HEAD), which was served.
    Revalidated,
}

impl CacheResult {
    /// The X-Cache header value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss => "MISS",
            CacheResult::Stale => "STALE",
            CacheResult::Pass => "PASS",
            CacheResult::Collapsed => "COLLAPSED",
            CacheResult::Revalidated => "REVALIDATED",
        }
    }

    /// The metrics label value.
    pub fn label(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Stale => "stale",
            CacheResult::Pass => "pass",
            CacheResult::Collapsed => "collapsed",
            CacheResult::Revalidated => "revalidated",
        }
    }

    /// Every result, in metrics order.
    pub const ALL: [CacheResult; 6] = [
        CacheResult::Hit,
        CacheResult::Miss,
        CacheResult::Stale,
        CacheResult::Pass,
        CacheResult::Collapsed,
        CacheResult::Revalidated,
    ];
}

/// One `Cache-Status` entry for this cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStatus {
    /// Answered from storage without going forward.
    pub hit: bool,
    /// Why it went forward, if it did.
    pub fwd: Option<Fwd>,
    /// The status the origin answered the forwarded request with.
    pub fwd_status: Option<u16>,
    /// Freshness left, in seconds (negative once stale).
    pub ttl: Option<i64>,
    /// The origin's response was stored.
    pub stored: bool,
    /// This request waited on another one's origin fetch.
    pub collapsed: bool,
    /// The stored response was refreshed by the origin without a body (a 304, or a 200 to a
    /// HEAD) and served. Not a parameter of its own: the header shows it as `fwd-status` and
    /// `stored`.
    pub revalidated: bool,
    /// Why the answer is what it is.
    pub detail: Option<Detail>,
}

impl CacheStatus {
    /// A hit with `ttl` seconds of freshness left.
    pub fn hit(ttl: i64) -> Self {
        CacheStatus {
            hit: true,
            ttl: Some(ttl),
            ..Default::default()
        }
    }

    /// Forwarded to the origin for `fwd`.
    pub fn forward(fwd: Fwd) -> Self {
        CacheStatus {
            fwd: Some(fwd),
            ..Default::default()
        }
    }

    /// With a `detail`.
    pub fn detail(self, detail: Detail) -> Self {
        CacheStatus {
            detail: Some(detail),
            ..self
        }
    }

    /// With the remaining freshness.
    pub fn ttl(self, ttl: i64) -> Self {
        CacheStatus {
            ttl: Some(ttl),
            ..self
        }
    }

    /// With the origin's status for the forwarded request.
    pub fn fwd_status(self, status: u16) -> Self {
        CacheStatus {
            fwd_status: Some(status),
            ..self
        }
    }

    /// Marked stored.
    pub fn stored(self) -> Self {
        CacheStatus {
            stored: true,
            ..self
        }
    }

    /// The origin answered `status` without a body, and the stored response it refreshed is
    /// served (stored again).
    pub fn revalidated(self, status: u16) -> Self {
        CacheStatus {
            revalidated: true,
            stored: true,
            fwd_status: Some(status),
            ..self
        }
    }

    /// Marked collapsed when `collapsed`.
    pub fn collapsed(self, collapsed: bool) -> Self {
        CacheStatus { collapsed, ..self }
    }

    /// The X-Cache / metrics view of this status. A stale answer is `Stale` whoever fetched; a
    /// waiter is `Collapsed` whatever the leader's fetch did (the leader's own result counts that
    /// fetch), so origin work is counted once.
    pub fn result(&self) -> CacheResult {
        if self.detail.is_some_and(Detail::is_stale) {
            CacheResult::Stale
        } else if self.hit {
            CacheResult::Hit
        } else if self.collapsed {
            CacheResult::Collapsed
        } else if self.revalidated {
            CacheResult::Revalidated
        } else if matches!(self.fwd, Some(Fwd::Bypass | Fwd::Method))
            || self.detail == Some(Detail::VaryChurn)
        {
            CacheResult::Pass
        } else {
            CacheResult::Miss
        }
    }
}

impl fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(CACHE_NAME)?;
        if self.hit {
            f.write_str("; hit")?;
        }
        if let Some(fwd) = self.fwd {
            write!(f, "; fwd={}", fwd.as_str())?;
        }
        if let Some(s) = self.fwd_status {
            write!(f, "; fwd-status={s}")?;
        }
        if let Some(ttl) = self.ttl {
            write!(f, "; ttl={ttl}")?;
        }
        if self.stored {
            f.write_str("; stored")?;
        }
        if self.collapsed {
            f.write_str("; collapsed")?;
        }
        if let Some(d) = self.detail {
            write!(f, "; detail={}", d.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CacheResult::*;

    #[test]
    fn header_and_result_table() {
        let fwd = CacheStatus::forward;
        // (status, header value, X-Cache)
        let rows: Vec<(CacheStatus, &str, CacheResult)> = vec![
            (CacheStatus::hit(42), "apicache; hit; ttl=42", Hit),
            (
                CacheStatus::hit(-3).detail(Detail::MaxStale),
                "apicache; hit; ttl=-3; detail=max-stale",
                Stale,
            ),
            (
                fwd(Fwd::Stale).ttl(-2).detail(Detail::StaleWhileRevalidate),
                "apicache; fwd=stale; ttl=-2; detail=stale-while-revalidate",
                Stale,
            ),
            (
                fwd(Fwd::Stale)
                    .fwd_status(503)
                    .ttl(-9)
                    .detail(Detail::StaleIfError),
                "apicache; fwd=stale; fwd-status=503; ttl=-9; detail=stale-if-error",
                Stale,
            ),
            (
                fwd(Fwd::Stale).revalidated(304).ttl(60).collapsed(true),
                "apicache; fwd=stale; fwd-status=304; ttl=60; stored; collapsed",
                Collapsed,
            ),
            (
                fwd(Fwd::Stale).revalidated(304).ttl(60),
                "apicache; fwd=stale; fwd-status=304; ttl=60; stored",
                Revalidated,
            ),
            (
                fwd(Fwd::Request).revalidated(304).ttl(60),
                "apicache; fwd=request; fwd-status=304; ttl=60; stored",
                Revalidated,
            ),
            // A HEAD whose 200 refreshed the stored GET response.
            (
                fwd(Fwd::Stale).revalidated(200).ttl(30),
                "apicache; fwd=stale; fwd-status=200; ttl=30; stored",
                Revalidated,
            ),
            // A 304 relayed without refreshing anything stored is no revalidation.
            (
                fwd(Fwd::Bypass).fwd_status(304),
                "apicache; fwd=bypass; fwd-status=304",
                Pass,
            ),
            (
                fwd(Fwd::UriMiss).stored(),
                "apicache; fwd=uri-miss; stored",
                Miss,
            ),
            (
                fwd(Fwd::VaryMiss).stored().collapsed(true),
                "apicache; fwd=vary-miss; stored; collapsed",
                Collapsed,
            ),
            (
                fwd(Fwd::UriMiss)
                    .fwd_status(502)
                    .collapsed(true)
                    .detail(Detail::Error("refused")),
                "apicache; fwd=uri-miss; fwd-status=502; collapsed; detail=refused",
                Collapsed,
            ),
            // A waiter handed the leader's stale-if-error answer was served stale.
            (
                fwd(Fwd::Stale)
                    .fwd_status(503)
                    .ttl(-4)
                    .collapsed(true)
                    .detail(Detail::StaleIfError),
                "apicache; fwd=stale; fwd-status=503; ttl=-4; collapsed; detail=stale-if-error",
                Stale,
            ),
            (
                fwd(Fwd::UriMiss)
                    .fwd_status(504)
                    .detail(Detail::Error("timeout")),
                "apicache; fwd=uri-miss; fwd-status=504; detail=timeout",
                Miss,
            ),
            (
                fwd(Fwd::Bypass)
                    .fwd_status(502)
                    .detail(Detail::Error("reset")),
                "apicache; fwd=bypass; fwd-status=502; detail=reset",
                Pass,
            ),
            (
                fwd(Fwd::UriMiss).detail(Detail::NotStored(NoStore::Private)),
                "apicache; fwd=uri-miss; detail=private",
                Miss,
            ),
            (
                fwd(Fwd::Bypass).detail(Detail::NotStored(NoStore::TooLarge)),
                "apicache; fwd=bypass; detail=too-large",
                Pass,
            ),
            (
                fwd(Fwd::Bypass).detail(Detail::NotStored(NoStore::RequestNoStore)),
                "apicache; fwd=bypass; detail=request-no-store",
                Pass,
            ),
            (
                fwd(Fwd::Bypass).detail(Detail::Route),
                "apicache; fwd=bypass; detail=route",
                Pass,
            ),
            (
                fwd(Fwd::Method).detail(Detail::Unsafe),
                "apicache; fwd=method; detail=unsafe",
                Pass,
            ),
            (
                fwd(Fwd::VaryMiss).detail(Detail::VaryChurn),
                "apicache; fwd=vary-miss; detail=vary-churn",
                Pass,
            ),
            (fwd(Fwd::UriMiss), "apicache; fwd=uri-miss", Miss),
            (
                CacheStatus::default().detail(Detail::OnlyIfCached),
                "apicache; detail=only-if-cached",
                Miss,
            ),
            (
                CacheStatus::default().detail(Detail::Error("uri-too-long")),
                "apicache; detail=uri-too-long",
                Miss,
            ),
        ];
        for (status, header, result) in rows {
            assert_eq!(status.to_string(), header);
            assert_eq!(status.result(), result, "{header}");
        }
    }

    #[test]
    fn result_strings() {
        let x: Vec<&str> = CacheResult::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            x,
            ["HIT", "MISS", "STALE", "PASS", "COLLAPSED", "REVALIDATED"]
        );
        let l: Vec<&str> = CacheResult::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(
            l,
            ["hit", "miss", "stale", "pass", "collapsed", "revalidated"]
        );
    }
}

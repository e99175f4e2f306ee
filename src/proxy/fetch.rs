//! The leader's origin fetch, as named steps: conditional request → send → classify (errors,
//! stale-if-error, 304) → storable? → read with a limit → decode for storing → build → store.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::response::Parts;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::Incoming;

use super::refresh::detach;
use super::{respond, Proxy};
use crate::body::{declared_length, IdleTimeout, ProxyBody};
use crate::cache::budget::Reservation;
use crate::cache::pass::worth_remembering;
use crate::cache::purges::Ticket;
use crate::cache::{tags, CachedObject, Lookup, NewObject};
use crate::compress::{self, DecodeError};
use crate::error::{OriginCause, ProxyError};
use crate::origin::{self, OriginBody};
use crate::request_id::REQUEST_ID;
use crate::rewrite::Public;
use crate::rfc::coding::{self, Coding};
use crate::rfc::directives::no_transform;
use crate::rfc::etag::{if_none_match_list, stored_etags};
use crate::rfc::storable::{self, Freshness, NoStore, RequestFacts, RoutePolicy};
use crate::rfc::update::{select_304, Validators};
use crate::rfc::vary::Vary;
use crate::settings::Settings;
use crate::verify::{Asker, Recorded};

/// A fill's request, detached from the client's so the fetch outlives it.
pub struct FillJob {
    /// Cache key.
    pub key: String,
    /// Normalized target.
    pub path_and_query: String,
    /// Headers to send (forwarding headers set, client preconditions removed).
    pub headers: HeaderMap,
    /// The request carried credentials.
    pub authorized: bool,
    /// No credentials, cookies or request directives: the origin's answer speaks for everyone.
    pub ordinary: bool,
    /// Route policy.
    pub policy: RoutePolicy,
    /// Route index, for metrics.
    pub route: Option<usize>,
    /// On a `shared-verified` route: whose credential the origin's answer judges.
    pub asker: Option<Asker>,
    /// That asker had no verdict when the fill started.
    pub unverified: bool,
    /// Route tags and the URL tag, added to every object this fill stores.
    pub tags: Vec<String>,
    /// The request headers as the origin saw them: the stored variant's Vary values.
    pub vary_source: HeaderMap,
    /// A background refresh (stale-while-revalidate): skipped if another one already replaced the object.
    pub background: bool,
    /// The scheme and host the origin's URLs are rewritten to (both in the key).
    pub public: Public,
    /// The settings of the request that started the fill.
    pub set: Arc<Settings>,
}

/// How a fetch ended, as every waiter sees it.
#[derive(Clone)]
pub enum Summary {
    /// A (new, or revalidated when `true`) object is stored.
    Stored(Arc<CachedObject>, bool),
    /// The origin failed with this error, and this stale object may stand in (stale-if-error).
    Stale(Arc<CachedObject>, ProxyError),
    /// Not storable: the leader got the response; waiters go to the origin themselves.
    Pass(NoStore),
    /// The origin failed.
    Failed(ProxyError),
}

/// What the leader gets: the summary, plus the response itself when it could not be stored.
pub struct Fetched {
    /// As waiters see it.
    pub summary: Summary,
    /// The unstorable response, for the leader alone.
    pub response: Option<Response<ProxyBody>>,
    /// Fields the origin sent that were not stored (`private="…"`, `no-cache="…"`): they were
    /// meant for the leader's own request, so only its answer carries them.
    pub withheld: HeaderMap,
}

impl Fetched {
    pub(super) fn done(summary: Summary) -> Self {
        Fetched {
            summary,
            response: None,
            withheld: HeaderMap::new(),
        }
    }

    /// The waiters' view.
    pub fn summary(&self) -> Summary {
        self.summary.clone()
    }
}

/// An origin body that failed while being read: its error, and the error chain for the log.
pub(super) type BodyFailed = (ProxyError, String);

/// What a fill may reuse instead of fetching a whole body.
#[derive(Default)]
pub enum Basis {
    /// Nothing stored for this request.
    #[default]
    Fresh,
    /// This request's stored response, stale or to be revalidated: its validators go upstream.
    Stale(Arc<CachedObject>),
    /// Other Vary variants of the URL with origin ETags (newest first): a 304 naming one makes
    /// it this request's variant too (RFC 9111 §4.3.1).
    Variants(Vec<Arc<CachedObject>>),
}

/// Bytes of ETags one If-None-Match sent upstream may list.
const MAX_INM_BYTES: usize = 4096;

/// A response body read up to the object limit.
pub(super) enum Read {
    Complete(Bytes),
    /// Over the limit: what was read, then the rest of the stream.
    TooLarge(ProxyBody),
    /// Over the fills' shared byte budget: what was read, then the rest of the stream.
    OverBudget(ProxyBody),
}

impl Proxy {
    /// The fill itself: one origin request, conditional when something stored may be reused.
    pub(super) async fn fetch(self: Arc<Self>, job: FillJob, basis: Basis) -> Fetched {
        let stale = match &basis {
            Basis::Stale(o) => Some(o.clone()),
            _ => None,
        };
        if let Some(current) = self.refreshed_meanwhile(&job, stale.as_ref()).await {
            return Fetched::done(Summary::Stored(current, true));
        }
        // Taken before the origin is asked: a purge after this point wins over what it answers,
        // and one before it has killed the stale object (whose body a 304 must not revive).
        let ticket = self.store.purge_ticket();
        let stale = stale.filter(|o| !o.is_dead());
        let candidates: Vec<Arc<CachedObject>> = match basis {
            Basis::Fresh => Vec::new(),
            Basis::Stale(o) => vec![o],
            Basis::Variants(v) => v,
        };
        let candidates: Vec<_> = candidates.into_iter().filter(|o| !o.is_dead()).collect();
        let mut request_time = SystemTime::now();
        let mut sent = self
            .send_conditional(&job, &candidates, stale.is_some())
            .await;
        if let Ok(r) = &sent {
            if r.status() == StatusCode::NOT_MODIFIED && !candidates.is_empty() {
                let response_time = SystemTime::now();
                let stored: Vec<Validators> = candidates.iter().map(|o| o.validators()).collect();
                if let Some(i) = select_304(&stored, Validators::of(r.headers())) {
                    self.metrics.revalidated();
                    let facts = self.facts(&job, request_time, response_time);
                    let update = r.headers().clone();
                    return self
                        .refresh(&job, &candidates[i], &update, facts, ticket)
                        .await;
                }
                // RFC 9111 §4.3.4: it selects nothing stored, so it updates nothing; the answer
                // comes from one unconditional request.
                request_time = SystemTime::now();
                sent = self.send_conditional(&job, &[], false).await;
            }
        }
        let response_time = SystemTime::now();
        let usable_stale = stale
            .as_ref()
            .filter(|o| o.stored(self.clock.now()).usable_on_error());
        let resp = match sent {
            Err(e) => return Fetched::done(stale_or_failed(usable_stale, e)),
            Ok(r) if r.status().is_server_error() && usable_stale.is_some() => {
                return Fetched::done(stale_or_failed(
                    usable_stale,
                    ProxyError::OriginStatus(r.status()),
                ));
            }
            Ok(r) => r,
        };
        let facts = self.facts(&job, request_time, response_time);
        let (mut parts, body) = resp.into_parts();
        origin::strip_response_fields(&mut parts.headers);
        let body = IdleTimeout::new(body, job.set.origin.body_timeout());
        let storable = storable::evaluate(
            parts.status,
            &parts.headers,
            facts,
            job.policy,
            job.set.cache_policy(),
        )
        .and_then(|f| coding::stored_encoding(&parts.headers).map(|c| (f, c)));
        let (freshness, encoding) = match storable {
            Ok(s) => s,
            Err(reason) => return self.pass(&job, parts, ProxyBody::stream(body), reason),
        };
        let limit = job.set.max_object_size();
        // Held until the object is stored: from then on its bytes count against max_size.
        let mut budget = self.fill_budget.reservation();
        let body = match read_limited(body, &parts.headers, limit, &mut budget).await {
            Ok(Read::Complete(b)) => b,
            Ok(Read::TooLarge(rest)) => return self.pass(&job, parts, rest, NoStore::TooLarge),
            Ok(Read::OverBudget(rest)) => return self.pass(&job, parts, rest, NoStore::FillMemory),
            Err(failed) => {
                let id = job.headers.get(REQUEST_ID);
                let e = self.body_failed(&job.set, id, &job.path_and_query, failed);
                return Fetched::done(Summary::Failed(e));
            }
        };
        let (body, encoded, etags) =
            match decode_for_storing(body, encoding, &mut parts.headers, limit) {
                Ok(decoded) => decoded,
                Err((DecodeError::TooLarge, raw)) => {
                    return self.pass(&job, parts, ProxyBody::full(raw), NoStore::TooLarge)
                }
                Err((DecodeError::Corrupt, _)) => {
                    let e = ProxyError::Origin(OriginCause::Protocol);
                    let id = job.headers.get(REQUEST_ID);
                    let why = match encoding {
                        Coding::Zstd => "corrupt zstd body",
                        _ => "corrupt gzip body",
                    };
                    job.set.origin.log_failure(id, &job.path_and_query, &e, why);
                    return Fetched::done(Summary::Failed(e));
                }
            };
        if encoded.is_some() && !budget.grow(body.len()) {
            // The decoded copy is over the budget: the origin's bytes go to the client as they are.
            let (coding, raw) = encoded.unwrap_or((Coding::Identity, Bytes::new()));
            parts.headers.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(coding.as_str()),
            );
            return self.pass(&job, parts, ProxyBody::full(raw), NoStore::FillMemory);
        }
        let withheld = take_withheld(&mut parts.headers);
        let obj = self.build_object(&job, parts, (body, encoded), etags, freshness);
        self.store_object(&job.key, &obj, ticket).await;
        Fetched {
            withheld,
            ..Fetched::done(Summary::Stored(obj, false))
        }
    }

    /// A background refresh that finds the object already replaced has nothing to do. This runs as
    /// the flight's leader, and a finished refresh stores before it leaves the in-flight map.
    async fn refreshed_meanwhile(
        &self,
        job: &FillJob,
        stale: Option<&Arc<CachedObject>>,
    ) -> Option<Arc<CachedObject>> {
        let old = stale.filter(|_| job.background)?;
        match self.store.lookup(&job.key, &job.vary_source).await {
            Lookup::Hit(cur) if !Arc::ptr_eq(&cur, old) => Some(cur),
            _ => None,
        }
    }

    /// Send the job's request, conditional on what is stored: the stale object's validators
    /// (`ims`: its Last-Modified too), or an If-None-Match listing other variants' ETags.
    async fn send_conditional(
        &self,
        job: &FillJob,
        candidates: &[Arc<CachedObject>],
        ims: bool,
    ) -> Result<Response<Incoming>, ProxyError> {
        let mut headers = job.headers.clone();
        let etags = candidates.iter().filter_map(|o| o.origin_etag.as_ref());
        if let Some(inm) = if_none_match_list(etags, job.set.cfg.cache.max_variants, MAX_INM_BYTES)
        {
            headers.insert(header::IF_NONE_MATCH, inm);
        }
        if let (true, [s]) = (ims, candidates) {
            if let Some(lm) = &s.last_modified {
                headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
            }
        }
        let mut req = Request::new(origin::empty_body());
        *req.uri_mut() = job.set.origin.uri(&job.path_and_query)?;
        *req.headers_mut() = headers;
        self.send_origin(&job.set, job.route, job.asker.as_ref(), &job.public, req)
            .await
    }

    /// What storability needs to know about the fill's request.
    fn facts(
        &self,
        job: &FillJob,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> RequestFacts {
        RequestFacts {
            authorized: job.authorized,
            no_store: false,
            unverified: job.unverified,
            request_time,
            response_time,
        }
    }

    /// One origin round trip, counted per route. The answer's URLs naming the origin are
    /// rewritten to `public` here, before any path reads, stores or merges its fields. On a
    /// `shared-verified` route its status is the verdict on the asker's credential, whichever
    /// path sent it.
    pub(super) async fn send_origin(
        &self,
        set: &Settings,
        route: Option<usize>,
        asker: Option<&Asker>,
        public: &Public,
        req: Request<OriginBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let t0 = Instant::now();
        let mut r = set.origin.send(req).await;
        let failed = r.as_ref().err().is_some_and(ProxyError::is_origin_failure);
        set.routes.origin(route, t0.elapsed(), failed);
        if let (Some(asker), Ok(resp)) = (asker, &r) {
            let recorded = self.verdicts.record(asker, resp.status(), resp.headers());
            if recorded == Recorded::Verification {
                self.metrics.verification_fetch();
            }
        }
        if let (Ok(resp), true) = (&mut r, set.cfg.origin.rewrite_urls) {
            set.origin_addr.rewrite(resp.headers_mut(), public);
        }
        r
    }

    /// An unstorable response: remembered as pass when it speaks for everyone, and handed to the
    /// leader (compressed on the fly if the client wants that).
    fn pass(&self, job: &FillJob, parts: Parts, body: ProxyBody, reason: NoStore) -> Fetched {
        if worth_remembering(job.ordinary, parts.status, reason) {
            self.pass
                .remember(&job.key, reason, job.set.cfg.cache.hit_for_pass);
        }
        let resp = respond::response(parts.status, parts.headers, body);
        Fetched {
            response: Some(respond::compress_passed(
                resp,
                &job.vary_source,
                &job.set.cfg.compression,
            )),
            ..Fetched::done(Summary::Pass(reason))
        }
    }

    /// The stored object for a fetched response. Encoded variants come later, from the encoder.
    pub(super) fn build_object(
        &self,
        job: &FillJob,
        parts: Parts,
        (body, origin_encoded): (Bytes, Option<(Coding, Bytes)>),
        (etag, origin_etag): Etags,
        freshness: Freshness,
    ) -> Arc<CachedObject> {
        let headers = detach(&parts.headers);
        let mut tags = tags::parse_surrogate_keys(&headers);
        for t in &job.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        let c = &job.set.cfg.compression;
        let compressible = c.enabled
            && body.len() as u64 >= c.min_size.as_u64()
            && coding::is_compressible(headers.get(header::CONTENT_TYPE), &c.types);
        let new = NewObject {
            status: parts.status,
            vary: Vary::of(&headers, &job.vary_source, &job.set.vary_lists),
            no_transform: no_transform(&headers),
            headers,
            body,
            origin_encoded,
            etag,
            origin_etag,
            freshness,
            tags,
            compressible,
        };
        Arc::new(CachedObject::new(new, self.clock.now()))
    }

    /// Store an object (unless a purge since `ticket` covers it), then let the encoder add its
    /// compressed variants.
    pub(super) async fn store_object(
        &self,
        key: &str,
        obj: &Arc<CachedObject>,
        ticket: Ticket,
    ) -> bool {
        let stored = self.store.insert_fill(key, obj, ticket).await;
        if stored {
            self.encoder.schedule(key, obj);
        }
        stored
    }

    /// Log an origin body that failed while being read, and return its error.
    pub(super) fn body_failed(
        &self,
        set: &Settings,
        request_id: Option<&HeaderValue>,
        path: &str,
        (e, why): BodyFailed,
    ) -> ProxyError {
        set.origin.log_failure(request_id, path, &e, &why);
        e
    }
}

/// Stale-if-error when a usable stale object exists, otherwise the error.
fn stale_or_failed(stale: Option<&Arc<CachedObject>>, e: ProxyError) -> Summary {
    match stale {
        Some(o) => Summary::Stale(o.clone(), e),
        None => Summary::Failed(e),
    }
}

/// Buffer the body up to `limit`; beyond it, hand back what was read plus the rest of the stream.
/// A declared length over the limit streams through at once instead of after `limit` bytes.
/// The bytes read are reserved in `budget` as they arrive (a declared length all at once); a
/// reservation that fails stops buffering the same way.
/// A body that fails is the origin's fault: its error, with the chain behind it for the log.
pub(super) async fn read_limited(
    body: IdleTimeout<Incoming>,
    headers: &HeaderMap,
    limit: usize,
    budget: &mut Reservation,
) -> Result<Read, BodyFailed> {
    let mut body = Box::pin(body);
    let declared = declared_length(headers).and_then(|n| usize::try_from(n).ok());
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut too_big = declared.is_some_and(|n| n > limit);
    let mut over_budget = !too_big && declared.is_some_and(|n| !budget.grow(n));
    let mut reserved = if over_budget {
        0
    } else {
        declared.unwrap_or(0)
    };
    let mut buf = BytesMut::with_capacity(reserved);
    while !too_big && !over_budget {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|e| {
            let e: &(dyn std::error::Error + 'static) = e.as_ref();
            (
                ProxyError::Origin(OriginCause::of(e)),
                origin::error_chain(e),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            let need = buf.len() + data.len();
            too_big = need > limit;
            // Beyond what was reserved (a lying Content-Length, or none): reserve the difference.
            over_budget = !too_big && need > reserved && !budget.grow(need - reserved);
            reserved = reserved.max(need);
            if too_big || over_budget {
                chunks.push(buf.split().freeze());
                chunks.push(data);
                break;
            }
            buf.extend_from_slice(&data);
        }
    }
    if too_big || over_budget {
        let head =
            futures_util::stream::iter(chunks.into_iter().map(|c| Ok(http_body::Frame::data(c))));
        // The prefix already read stays reserved until the client has taken the whole stream.
        let held = std::mem::replace(budget, budget.empty());
        let rest = futures_util::StreamExt::map(BodyStream::new(body), move |f| {
            let _held = &held;
            f
        });
        let stream = StreamBody::new(futures_util::StreamExt::chain(head, rest));
        let rest = ProxyBody::stream(stream);
        return Ok(if too_big {
            Read::TooLarge(rest)
        } else {
            Read::OverBudget(rest)
        });
    }
    // Exactly sized: a grown buffer's slack would stay resident for the object's lifetime,
    // unseen by the byte budget.
    Ok(Read::Complete(if buf.capacity() == buf.len() {
        buf.freeze()
    } else {
        Bytes::copy_from_slice(&buf)
    }))
}

/// The ETag clients see and the origin's own, kept for revalidating upstream.
pub(super) type Etags = (HeaderValue, Option<HeaderValue>);

/// What [`decode_for_storing`] gives: the identity body, the origin's encoded bytes (and their
/// coding) if it sent gzip or zstd, and the ETags.
pub(super) type Decoded = (Bytes, Option<(Coding, Bytes)>, Etags);

/// The identity body to store, the origin's gzip or zstd bytes if it sent them, and the ETags
/// ([`stored_etags`]): an encoded body is decoded (bounded by `limit`) and an origin ETag naming
/// the encoded bytes becomes weak for clients. On failure the raw body comes back for streaming.
pub(super) fn decode_for_storing(
    body: Bytes,
    encoding: Coding,
    headers: &mut HeaderMap,
    limit: usize,
) -> Result<Decoded, (DecodeError, Bytes)> {
    let origin_etag = headers.get(header::ETAG).cloned();
    if encoding == Coding::Identity {
        headers.remove(header::CONTENT_ENCODING);
        let etags = stored_etags(origin_etag.as_ref(), false, &body);
        return Ok((body, None, etags));
    }
    let plain = match compress::decode_limited(&body, encoding, limit) {
        Ok(plain) => Bytes::from(plain),
        Err(e) => return Err((e, body)),
    };
    headers.remove(header::CONTENT_ENCODING);
    let etags = stored_etags(origin_etag.as_ref(), true, &plain);
    Ok((plain, Some((encoding, body)), etags))
}

/// Remove the fields a shared cache may not store (qualified `private` / `no-cache`), returning them.
pub(super) fn take_withheld(headers: &mut HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in storable::withheld_fields(headers) {
        if let header::Entry::Occupied(e) = headers.entry(name) {
            let (name, values) = e.remove_entry_mult();
            for v in values {
                out.append(name.clone(), v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    #[test]
    fn decoding_for_storage_weakens_or_generates_etags() {
        let plain = Bytes::from_static(b"{\"a\":1}");
        let gz = Bytes::from(compress::gzip(&plain, 6));
        let zst = Bytes::from(compress::zstd(&plain, 3).unwrap());
        // (encoding, origin ETag, expected stored ETag)
        let rows: &[(Coding, Option<&'static str>, Option<&str>)] = &[
            (Coding::Identity, Some("\"o\""), Some("\"o\"")),
            (Coding::Gzip, Some("\"o\""), Some("W/\"o\"")),
            (Coding::Gzip, Some("W/\"o\""), Some("W/\"o\"")),
            (Coding::Gzip, None, None),
            (Coding::Zstd, Some("\"o\""), Some("W/\"o\"")),
            (Coding::Zstd, None, None),
            (Coding::Identity, None, None),
        ];
        for (enc, origin, want) in rows {
            let mut h = HeaderMap::new();
            if let Some(e) = origin {
                h.insert(header::ETAG, hv(e));
            }
            h.insert(header::CONTENT_ENCODING, hv("gzip"));
            let input = match enc {
                Coding::Gzip => gz.clone(),
                Coding::Zstd => zst.clone(),
                _ => plain.clone(),
            };
            let (body, encoded, (etag, upstream)) =
                decode_for_storing(input.clone(), *enc, &mut h, 1 << 20).unwrap();
            assert_eq!(upstream.as_ref().map(|u| u.to_str().unwrap()), *origin);
            assert_eq!(body, plain);
            assert_eq!(encoded, (*enc != Coding::Identity).then_some((*enc, input)));
            assert!(!h.contains_key(header::CONTENT_ENCODING));
            let want = want.map_or_else(|| crate::rfc::etag::generate_etag(&plain), str::to_string);
            assert_eq!(etag, want, "{enc:?} {origin:?}");
        }
        let mut h = HeaderMap::new();
        for (enc, input) in [(Coding::Gzip, &gz), (Coding::Zstd, &zst)] {
            let e = decode_for_storing(input.clone(), enc, &mut h, 3).unwrap_err();
            assert_eq!((e.0, &e.1), (DecodeError::TooLarge, input), "{enc}");
            let e = decode_for_storing(plain.clone(), enc, &mut h, 1 << 20).unwrap_err();
            assert_eq!(e.0, DecodeError::Corrupt, "{enc}");
        }
    }
}

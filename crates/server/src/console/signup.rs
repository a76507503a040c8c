//! Open sign-up (`kiln up --signup open`): a visitor names a tenant on the
//! console's page and gets it, with the server's default quotas, its first
//! token (shown once) and a session.
//!
//! Floods are held back by a rate limit, not a proof of work: a limit bounds
//! what one address can create whatever its hardware, costs a visitor on a
//! phone nothing, and is something an operator can reason about
//! (`--signups-per-hour` per client address, ten times that for the whole
//! node). IPv6 clients are counted by their /64, which one subscriber usually
//! holds whole. Behind a proxy every visitor has the proxy's address, so the
//! limit becomes one for the node; the counts are per node and forgotten on
//! restart. A created tenant costs nothing until it runs something, and its
//! quotas (the server's defaults) bound what it can run.

use super::{check_origin, start_session};
use crate::api;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_api::{ErrorCode, NewNamed};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(3600);

/// Sign-ups of the last hour, by client address and for the whole node.
pub(crate) struct SignupLimiter {
    per_address: u32,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    by_address: HashMap<IpAddr, VecDeque<Instant>>,
    all: VecDeque<Instant>,
}

/// Drops the times that left the window; answers how long until the oldest
/// one leaves when `limit` are still in it.
fn wait_in(times: &mut VecDeque<Instant>, limit: usize, now: Instant) -> Option<Duration> {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
    (times.len() >= limit).then(|| {
        let oldest = times.front().copied().unwrap_or(now);
        WINDOW.saturating_sub(now.saturating_duration_since(oldest))
    })
}

/// The address a client is counted by: an IPv4 address, or an IPv6 /64.
fn counted_as(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

impl SignupLimiter {
    pub(crate) fn new(per_address: u32) -> SignupLimiter {
        SignupLimiter {
            per_address,
            seen: Mutex::default(),
        }
    }

    /// `Err(wait)` when the client or the node has had its sign-ups for now.
    fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let per_address = self.per_address as usize;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let all = wait_in(&mut seen.all, per_address.saturating_mul(10), now);
        let mine = match seen.by_address.get_mut(&counted_as(client)) {
            Some(times) => wait_in(times, per_address, now),
            None => (per_address == 0).then_some(WINDOW),
        };
        match all.max(mine) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a sign-up that happened.
    fn record(&self, client: IpAddr, now: Instant) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.all.push_back(now);
        seen.by_address
            .entry(counted_as(client))
            .or_default()
            .push_back(now);
        // Addresses whose sign-ups have all left the window are forgotten.
        if seen.by_address.len() > 4096 {
            seen.by_address.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < WINDOW)
            });
        }
    }
}

/// `GET /console/config`: what the page needs to know before signing in.
#[derive(Serialize)]
pub(super) struct ConsoleSettings {
    /// Whether visitors may create a tenant.
    signup: bool,
}

pub(super) async fn settings(State(state): State<Arc<AppState>>) -> Json<ConsoleSettings> {
    Json(ConsoleSettings {
        signup: state.settings.console.open_signup,
    })
}

/// `POST /console/signup` `{"name"}`: a new tenant, its first token (in the
/// answer, once), and a session cookie for it.
pub(super) async fn sign_up(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    check_origin(&headers)?;
    if !state.settings.console.open_signup {
        return Err(ApiError::forbidden(
            "sign-up is closed on this server: ask its operator for a token",
        ));
    }
    let request: NewNamed = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"name\": \"...\"}}: {e}")))?;
    let now = Instant::now();
    if let Err(wait) = state.signups.check(peer.ip(), now) {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("too many sign-ups from here lately: try again in {minutes} min"),
        )
        .into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return Ok(response);
    }
    let created = api::new_tenant(&state, &request.name).await?;
    state.signups.record(peer.ip(), now);
    tracing::info!(tenant = %created.tenant.name, client = %peer.ip(), "tenant signed up");
    let cookie = start_session(&state, crate::auth::hash(&created.token)).await?;
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_sign_ups_per_hour_and_the_node_ten_times_that() {
        let limiter = SignupLimiter::new(2);
        let start = Instant::now();
        let me: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..2 {
            assert_eq!(limiter.check(me, start), Ok(()));
            limiter.record(me, start);
        }
        let wait = limiter.check(me, start).unwrap_err();
        assert_eq!(wait, WINDOW);
        // An hour on, the address may sign up again.
        assert_eq!(limiter.check(me, start + WINDOW), Ok(()));
        // Others still can now; the node stops at 20 in the hour.
        for i in 0..18u8 {
            let other = IpAddr::from([198, 51, 100, i]);
            assert_eq!(limiter.check(other, start), Ok(()));
            limiter.record(other, start);
        }
        let stranger = IpAddr::from([203, 0, 113, 1]);
        assert!(limiter.check(stranger, start).is_err());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let limiter = SignupLimiter::new(1);
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        limiter.record(a, now);
        assert!(limiter.check(b, now).is_err());
        assert!(
            limiter
                .check("2001:db8:1:3::1".parse().unwrap(), now)
                .is_ok()
        );
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        limiter.record(mapped, now);
        assert!(limiter.check("192.0.2.1".parse().unwrap(), now).is_err());
    }

    #[test]
    fn no_sign_ups_at_all_when_the_limit_is_zero() {
        let limiter = SignupLimiter::new(0);
        assert!(
            limiter
                .check("192.0.2.1".parse().unwrap(), Instant::now())
                .is_err()
        );
    }
}

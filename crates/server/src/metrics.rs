//! Prometheus metrics: request counts and latencies by route and status, and tasks by state
//! (read from the store when scraped).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// In-process request metrics.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Series>>,
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((method.to_string(), route.to_string(), status))
                .or_default() += 1;
        }
        if let Ok(mut m) = self.latency.lock() {
            let s = m
                .entry((method.to_string(), route.to_string()))
                .or_default();
            s.count += 1;
            s.sum += seconds;
            for (i, b) in BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    s.buckets[i] += 1;
                }
            }
        }
    }

    /// Renders the text exposition format.
    pub fn render(&self, tasks_by_state: &[(String, i64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP ferry_tasks Server tasks by state.");
        let _ = writeln!(out, "# TYPE ferry_tasks gauge");
        for state in ferry_domain::task::TaskState::ALL {
            let n = tasks_by_state
                .iter()
                .find(|(s, _)| s == state.as_str())
                .map(|(_, n)| *n)
                .unwrap_or(0);
            let _ = writeln!(out, "ferry_tasks{{state=\"{}\"}} {n}", state.as_str());
        }
        let _ = writeln!(
            out,
            "# HELP ferry_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE ferry_http_requests_total counter");
        if let Ok(m) = self.requests.lock() {
            for ((method, route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "ferry_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP ferry_http_request_duration_seconds HTTP request latency."
        );
        let _ = writeln!(out, "# TYPE ferry_http_request_duration_seconds histogram");
        if let Ok(m) = self.latency.lock() {
            for ((method, route), s) in m.iter() {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "ferry_http_request_duration_seconds_bucket{{method=\"{method}\",route=\"{route}\",le=\"{b}\"}} {}",
                        s.buckets[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "ferry_http_request_duration_seconds_bucket{{method=\"{method}\",route=\"{route}\",le=\"+Inf\"}} {}",
                    s.count
                );
                let _ = writeln!(
                    out,
                    "ferry_http_request_duration_seconds_sum{{method=\"{method}\",route=\"{route}\"}} {}",
                    s.sum
                );
                let _ = writeln!(
                    out,
                    "ferry_http_request_duration_seconds_count{{method=\"{method}\",route=\"{route}\"}} {}",
                    s.count
                );
            }
        }
        out
    }
}

/// The metrics layer (a route layer: routes are labelled by their pattern, not the raw path).
pub async fn layer(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    st.metrics.observe(
        &method,
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

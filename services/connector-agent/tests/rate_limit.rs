//! The per-token rate limit against a running agent (real PostgreSQL and nats-server): a
//! token over its limit gets 429 with an RFC 7644 error body and `Retry-After`, other tokens
//! and unauthenticated requests are unaffected, and the token works again once its bucket
//! refills. Waits poll with a deadline; nothing asserts on elapsed time.

mod common;

use std::time::Duration;

use common::{IMPORT_TOKEN, OTHER_TOKEN, Reply, TOKEN, raw, scim_as, start_with};

/// One request per second per token, at most two at once.
const LIMIT: &str = "rate_limit_per_second = 1\nrate_limit_burst = 2";

const OKTA_SPC: &str = "/scim/v2/okta/ServiceProviderConfig";
const ENTRA_SPC: &str = "/scim/v2/entra/ServiceProviderConfig";

/// Sends requests until one is refused, and returns that one. A token whose bucket refills
/// faster than requests complete would never be refused: the attempts are bounded.
async fn exhaust<F, Fut>(mut send: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    for _ in 0..50 {
        let reply = send().await;
        if reply.status != 200 {
            return reply;
        }
    }
    panic!("50 requests in a row were accepted under a limit of 1/s with a burst of 2");
}

fn assert_rate_limited(reply: &Reply) {
    assert_eq!(reply.status, 429, "{reply:?}");
    assert_eq!(
        reply.header("content-type"),
        Some("application/scim+json"),
        "{reply:?}"
    );
    let retry_after: u64 = reply
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {reply:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("Retry-After is not a number of seconds ({e}): {reply:?}"));
    assert!(retry_after >= 1, "{reply:?}");
    let body = reply.json();
    assert_eq!(
        body["schemas"],
        serde_json::json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{body}"
    );
    assert_eq!(body["status"], "429", "{body}");
    assert!(
        body.get("scimType").is_none(),
        "RFC 7644 defines no scimType for 429: {body}"
    );
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("rate limit")),
        "{body}"
    );
}

fn rate_limited_count(metrics: &mesh_runtime::metrics::MetricsRegistry, connector: &str) -> u64 {
    let text = metrics.encode().unwrap();
    let prefix = format!("mesh_connector_rate_limited_total{{connector=\"{connector}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scim_token_over_its_limit_gets_429_and_other_tokens_do_not() {
    let h = start_with(LIMIT, "").await;
    let addr = h.addr;

    let refused = exhaust(|| scim_as(addr, TOKEN, "GET", OKTA_SPC, None, &[])).await;
    assert_rate_limited(&refused);
    assert_eq!(rate_limited_count(&h.metrics, "okta"), 1);

    // Another token has its own bucket: its whole burst passes while okta's is empty (a shared
    // bucket would need two refills, two seconds, for that).
    for _ in 0..2 {
        let r = scim_as(addr, OTHER_TOKEN, "GET", ENTRA_SPC, None, &[]).await;
        assert_eq!(r.status, 200, "the entra token was limited too: {r:?}");
    }
    // Requests that do not authenticate never reach the limiter: still 401.
    let anonymous = raw(
        addr,
        format!("GET {OKTA_SPC} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let wrong = scim_as(addr, "not-the-token", "GET", OKTA_SPC, None, &[]).await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    // The okta token on entra's endpoint is a wrong token there, limited or not.
    let crossed = scim_as(addr, TOKEN, "GET", ENTRA_SPC, None, &[]).await;
    assert_eq!(crossed.status, 401, "{crossed:?}");

    // Once its bucket refills, the token works again.
    mesh_testkit::assert_eventually!(
        Duration::from_secs(15),
        {
            let r = scim_as(addr, TOKEN, "GET", OKTA_SPC, None, &[]).await;
            assert!(matches!(r.status, 200 | 429), "{r:?}");
            r.status == 200
        },
        "the okta token is still refused"
    );
    h.shutdown.cancel();
    h.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hr_uploads_have_the_same_per_token_limit() {
    let feed = r#"
[[connector_agent.hr]]
connector = "workday"
external_id = "employee_id"
"#;
    let h = start_with(LIMIT, feed).await;
    let addr = h.addr;
    let upload = |token: &'static str| async move {
        let text = "employee_id,first\n1,Ada\n";
        let request = format!(
            "POST /hr/v1/workday/imports HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Authorization: Bearer {token}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        raw(addr, request.as_bytes()).await
    };
    let refused = exhaust(|| upload(IMPORT_TOKEN)).await;
    assert_rate_limited(&refused);
    assert_eq!(rate_limited_count(&h.metrics, "workday"), 1);
    // SCIM tokens are other buckets.
    let r = scim_as(addr, TOKEN, "GET", OKTA_SPC, None, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    // A wrong upload token is still 401.
    assert_eq!(upload("not-the-token").await.status, 401);
    mesh_testkit::assert_eventually!(
        Duration::from_secs(15),
        upload(IMPORT_TOKEN).await.status == 200
    );
}

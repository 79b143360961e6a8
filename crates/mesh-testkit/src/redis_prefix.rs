//! A Redis key prefix per test.

use redis::AsyncCommands;

/// A unique key prefix (`mesh-test:<uuid>:`) on the local Redis; its keys are deleted when this
/// is dropped.
#[derive(Debug)]
pub struct RedisPrefix {
    url: String,
    prefix: String,
}

impl RedisPrefix {
    /// Picks a new prefix on the Redis at `MESHTEST_REDIS_URL` (default
    /// `redis://127.0.0.1:6379`).
    pub fn new() -> Self {
        Self {
            url: std::env::var("MESHTEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
            prefix: format!("mesh-test:{}:", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Returns the Redis URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Returns the prefix every key of the test must start with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Counts the keys under the prefix.
    pub async fn key_count(&self) -> anyhow::Result<usize> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = conn.keys(format!("{}*", self.prefix)).await?;
        Ok(keys.len())
    }
}

impl Default for RedisPrefix {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let url = self.url.clone();
        let pattern = format!("{}*", self.prefix);
        let _ = std::thread::spawn(move || {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                return;
            };
            let Ok(mut conn) = client.get_connection() else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        })
        .join();
    }
}

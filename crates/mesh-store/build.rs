//! `sqlx::migrate!` embeds the files of `migrations/` at compile time but does not watch the
//! directory on stable Rust: a new migration must rebuild this crate.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

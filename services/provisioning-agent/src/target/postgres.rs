//! A PostgreSQL table as a target: one row per object, found by a key column.
//!
//! The container is `schema.table`. Each part is an SQL identifier: unquoted (letters, digits,
//! `_`, `$`, not starting with a digit; folded to lower case as PostgreSQL folds it) or
//! double-quoted (kept as written, `""` for a quote). Anything else is refused. The target
//! attributes are column names (unquoted identifiers, folded to lower case). Names are always
//! sent quoted, and values always as bind parameters, so no name or value is ever spliced
//! into SQL text; the only catalog text used is the column's type from `format_type`.
//!
//! Values are sent as text and cast to the column's type (read from the catalog and cached
//! per table, refreshed when a column is missing): a string, number or boolean as its text, a
//! timestamp as RFC 3339, null as NULL, a list as an array for an array column and as a JSON
//! array otherwise. PostgreSQL refuses what does not fit the column (a permanent failure).
//!
//! - create: `INSERT … ON CONFLICT (key) DO UPDATE SET …` the other carried columns, only when
//!   a value differs (so an adopted row that already matches is not rewritten), and sets the
//!   active column true when the table has it and the create does not carry it. A new row is
//!   applied; an existing one is adopted (already applied).
//! - update: `UPDATE … SET … WHERE key = … AND (columns) IS DISTINCT FROM (values)`; a change of
//!   the key column itself renames the row (the new key becomes the target object id).
//! - disable and enable: the `activeColumn` (default `active`) set to false or true.
//! - delete: `DELETE`; no row means already deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use mesh_model::{AttributeName, ExportOperation, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Row as _};

use super::{Common, Outcome, Request, Target, not_known_yet, text_of};
use crate::settings::{Settings, SettingsError};

/// A PostgreSQL table.
#[derive(Debug)]
pub struct PostgresTarget {
    pool: PgPool,
    key_column: String,
    active_column: String,
    container: Option<String>,
    /// Column types per table, as `format_type` spells them.
    tables: Mutex<HashMap<Table, Arc<BTreeMap<String, String>>>>,
}

/// A table's schema and name, unquoted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Table {
    schema: String,
    name: String,
}

impl Table {
    fn quoted(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }
}

/// A bind parameter: text, or an array of text for an array column.
enum Param {
    Text(Option<String>),
    Array(Vec<Option<String>>),
}

impl PostgresTarget {
    /// Reads `dsn` or `dsnEnv`, `passwordEnv`, `keyColumn` and `activeColumn`.
    pub(crate) fn from_settings(
        settings: &mut Settings<'_>,
        common: &Common,
    ) -> Result<Self, SettingsError> {
        let dsn = match (settings.string("dsn")?, settings.secret_env("dsnEnv")?) {
            (Some(dsn), None) => {
                let options: PgConnectOptions = dsn
                    .parse()
                    .map_err(|e| settings.error(format!("`dsn` is not a PostgreSQL URL: {e}")))?;
                let inline_password = reqwest::Url::parse(&dsn)
                    .ok()
                    .is_some_and(|url| url.password().is_some());
                if inline_password {
                    return Err(settings.error(
                        "`dsn` carries a password; put it in an environment variable named by \
                         `passwordEnv` (or the whole URL in one named by `dsnEnv`)",
                    ));
                }
                options
            }
            (None, Some(dsn)) => dsn.parse().map_err(|_| {
                settings.error("the URL in the variable `dsnEnv` names is not a PostgreSQL URL")
            })?,
            (Some(_), Some(_)) => {
                return Err(settings.error("set `dsn` or `dsnEnv`, not both"));
            }
            (None, None) => return Err(settings.error("`dsn` (or `dsnEnv`) is required")),
        };
        let dsn = match settings.secret_env("passwordEnv")? {
            Some(password) => dsn.password(&password),
            None => dsn,
        };
        let key_column = settings.required_string("keyColumn")?;
        let key_column =
            column(&key_column).map_err(|e| settings.error(format!("`keyColumn`: {e}")))?;
        let active_column = match settings.string("activeColumn")? {
            Some(name) => {
                column(&name).map_err(|e| settings.error(format!("`activeColumn`: {e}")))?
            }
            None => "active".to_owned(),
        };
        if let Some(container) = &common.container {
            parse_table(container).map_err(|e| settings.error(format!("`container`: {e}")))?;
        }
        let timeout_ms = common.timeout.as_millis().to_string();
        let options = dsn
            .application_name("identity-mesh-provisioning")
            .options([("statement_timeout", timeout_ms.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(common.concurrency)
            .acquire_timeout(common.timeout)
            .connect_lazy_with(options);
        Ok(Self::new(
            pool,
            key_column,
            active_column,
            common.container.clone(),
        ))
    }

    /// A target writing through `pool`, keyed by `key_column`.
    pub fn new(
        pool: PgPool,
        key_column: String,
        active_column: String,
        container: Option<String>,
    ) -> Self {
        Self {
            pool,
            key_column,
            active_column,
            container,
            tables: Mutex::new(HashMap::new()),
        }
    }

    /// The table's column types, from the cache unless `refresh`.
    async fn columns(
        &self,
        table: &Table,
        refresh: bool,
    ) -> Result<Arc<BTreeMap<String, String>>, Outcome> {
        if !refresh {
            let cached = self
                .tables
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(table)
                .cloned();
            if let Some(columns) = cached {
                return Ok(columns);
            }
        }
        let rows = sqlx::query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
        )
        .bind(table.quoted())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify("reading the table's columns", &e))?;
        if rows.is_empty() {
            return Err(Outcome::Permanent(format!(
                "the table {} does not exist",
                table.quoted()
            )));
        }
        let mut columns = BTreeMap::new();
        for row in rows {
            let name: String = row.get(0);
            let kind: String = row.get(1);
            columns.insert(name, kind);
        }
        let columns = Arc::new(columns);
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(table.clone(), columns.clone());
        Ok(columns)
    }

    /// The types of `wanted` columns (and the key's), refreshing the cache once if one is
    /// missing (a column added since it was read).
    async fn column_types(
        &self,
        table: &Table,
        wanted: &[&str],
    ) -> Result<Arc<BTreeMap<String, String>>, Outcome> {
        let columns = self.columns(table, false).await?;
        let missing = |columns: &BTreeMap<String, String>| {
            std::iter::once(self.key_column.as_str())
                .chain(wanted.iter().copied())
                .find(|c| !columns.contains_key(*c))
                .map(str::to_owned)
        };
        if missing(&columns).is_none() {
            return Ok(columns);
        }
        let columns = self.columns(table, true).await?;
        match missing(&columns) {
            None => Ok(columns),
            Some(name) => Err(Outcome::Permanent(format!(
                "the table {} has no column {}",
                table.quoted(),
                quote(&name)
            ))),
        }
    }

    fn table(&self, request: Request<'_>) -> Result<Table, Outcome> {
        let container = request
            .container(self.container.as_deref())
            .ok_or_else(|| {
                Outcome::Permanent(
                    "the command names no table and the connector sets no `container`".to_owned(),
                )
            })?;
        parse_table(container).map_err(Outcome::Permanent)
    }

    /// The carried attributes as (column, value), the key first when carried.
    fn columns_of<'a>(
        &self,
        attributes: &'a mesh_model::Attributes,
    ) -> Result<Vec<(String, &'a Value)>, Outcome> {
        let mut out = Vec::with_capacity(attributes.len() + 1);
        for (name, value) in attributes {
            let column = attribute_column(name).map_err(Outcome::Permanent)?;
            out.push((column, value));
        }
        out.sort_by_key(|(c, _)| *c != self.key_column);
        Ok(out)
    }

    async fn create(&self, request: Request<'_>) -> Outcome {
        let table = match self.table(request) {
            Ok(table) => table,
            Err(outcome) => return outcome,
        };
        let mut values = match self.columns_of(&request.command.attributes) {
            Ok(values) => values,
            Err(outcome) => return outcome,
        };
        let key = match values.first() {
            Some((c, value)) if *c == self.key_column => match text_of(value) {
                Some(key) => key,
                None => {
                    return Outcome::Permanent(format!(
                        "the key column {} must have a single value",
                        quote(&self.key_column)
                    ));
                }
            },
            _ => {
                return Outcome::Permanent(format!(
                    "a create needs the key column {} among its attributes (an outbound flow \
                     rule targeting it)",
                    quote(&self.key_column)
                ));
            }
        };
        let wanted: Vec<&str> = values.iter().map(|(c, _)| c.as_str()).collect();
        let types = match self.column_types(&table, &wanted).await {
            Ok(types) => types,
            Err(outcome) => return outcome,
        };
        let enabled = Value::Bool(true);
        if types.contains_key(&self.active_column)
            && !values.iter().any(|(c, _)| *c == self.active_column)
        {
            values.push((self.active_column.clone(), &enabled));
        }
        let mut params = Vec::with_capacity(values.len());
        let mut names = Vec::with_capacity(values.len());
        let mut placeholders = Vec::with_capacity(values.len());
        for (i, (column, value)) in values.iter().enumerate() {
            let kind = types.get(column).map_or("text", String::as_str);
            let (param, placeholder) = bind(value, kind, i + 1);
            params.push(param);
            names.push(quote(column));
            placeholders.push(placeholder);
        }
        let others: Vec<usize> = (0..values.len())
            .filter(|i| values.get(*i).is_some_and(|(c, _)| *c != self.key_column))
            .collect();
        let on_conflict = if others.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            let set: Vec<String> = others
                .iter()
                .filter_map(|i| names.get(*i))
                .map(|n| format!("{n} = EXCLUDED.{n}"))
                .collect();
            let current: Vec<String> = others
                .iter()
                .filter_map(|i| names.get(*i))
                .map(|n| format!("t.{n}"))
                .collect();
            let excluded: Vec<String> = others
                .iter()
                .filter_map(|i| names.get(*i))
                .map(|n| format!("EXCLUDED.{n}"))
                .collect();
            format!(
                "DO UPDATE SET {} WHERE ROW({}) IS DISTINCT FROM ROW({})",
                set.join(", "),
                current.join(", "),
                excluded.join(", ")
            )
        };
        let sql = format!(
            "INSERT INTO {} AS t ({}) VALUES ({}) ON CONFLICT ({}) {on_conflict} \
             RETURNING (xmax = 0) AS inserted",
            table.quoted(),
            names.join(", "),
            placeholders.join(", "),
            quote(&self.key_column),
        );
        match self.run(&sql, params).await {
            Err(outcome) => outcome,
            Ok(rows) => match rows.first().map(|r| r.get::<bool, _>(0)) {
                Some(true) => Outcome::applied(key),
                // Updated to the create's values, or already holding them.
                Some(false) | None => Outcome::already(key),
            },
        }
    }

    async fn update(&self, request: Request<'_>) -> Outcome {
        let table = match self.table(request) {
            Ok(table) => table,
            Err(outcome) => return outcome,
        };
        let values = match self.columns_of(&request.command.attributes) {
            Ok(values) => values,
            Err(outcome) => return outcome,
        };
        let carried_key = values
            .first()
            .filter(|(c, _)| *c == self.key_column)
            .map(|(_, v)| text_of(v));
        let new_key = match carried_key {
            Some(Some(key)) => Some(key),
            Some(None) => {
                return Outcome::Permanent(format!(
                    "the key column {} cannot be set to null or a list",
                    quote(&self.key_column)
                ));
            }
            None => None,
        };
        let Some(old_key) = request
            .target_object_id
            .map(str::to_owned)
            .or_else(|| new_key.clone())
        else {
            return not_known_yet();
        };
        let new_key = new_key.unwrap_or_else(|| old_key.clone());
        if values.is_empty() {
            return Outcome::already(old_key);
        }
        let wanted: Vec<&str> = values.iter().map(|(c, _)| c.as_str()).collect();
        let types = match self.column_types(&table, &wanted).await {
            Ok(types) => types,
            Err(outcome) => return outcome,
        };
        let key_type = types.get(&self.key_column).map_or("text", String::as_str);
        let mut params = vec![Param::Text(Some(old_key.clone()))];
        let mut set = Vec::with_capacity(values.len());
        let mut names = Vec::with_capacity(values.len());
        let mut placeholders = Vec::with_capacity(values.len());
        for (i, (column, value)) in values.iter().enumerate() {
            let kind = types.get(column).map_or("text", String::as_str);
            let (param, placeholder) = bind(value, kind, i + 2);
            params.push(param);
            set.push(format!("{} = {placeholder}", quote(column)));
            names.push(quote(column));
            placeholders.push(placeholder);
        }
        let sql = format!(
            "UPDATE {} SET {} WHERE {} = CAST($1 AS {key_type}) \
             AND ROW({}) IS DISTINCT FROM ROW({}) RETURNING 1",
            table.quoted(),
            set.join(", "),
            quote(&self.key_column),
            names.join(", "),
            placeholders.join(", "),
        );
        match self.run(&sql, params).await {
            Err(outcome) => outcome,
            Ok(rows) if !rows.is_empty() => Outcome::applied(new_key),
            // Nothing changed: the row holds the values already (under its new key, if a
            // crash came after the rename), or it is gone.
            Ok(_) => {
                for key in [&old_key, &new_key] {
                    match self.exists(&table, key_type, key).await {
                        Err(outcome) => return outcome,
                        Ok(true) => return Outcome::already(new_key.clone()),
                        Ok(false) => {}
                    }
                }
                Outcome::Permanent(format!(
                    "the table {} has no row with {} = {old_key}",
                    table.quoted(),
                    quote(&self.key_column)
                ))
            }
        }
    }

    async fn set_active(&self, request: Request<'_>, active: bool) -> Outcome {
        let table = match self.table(request) {
            Ok(table) => table,
            Err(outcome) => return outcome,
        };
        let Some(key) = request.target_object_id else {
            return not_known_yet();
        };
        let types = match self
            .column_types(&table, &[self.active_column.as_str()])
            .await
        {
            Ok(types) => types,
            Err(Outcome::Permanent(message)) => {
                return Outcome::Permanent(format!(
                    "{message} (set `activeColumn` to the column that enables a row)"
                ));
            }
            Err(outcome) => return outcome,
        };
        let key_type = types.get(&self.key_column).map_or("text", String::as_str);
        let active_type = types
            .get(&self.active_column)
            .map_or("boolean", String::as_str);
        let sql = format!(
            "UPDATE {table} SET {active} = CAST($2 AS {active_type}) \
             WHERE {key} = CAST($1 AS {key_type}) \
             AND {active} IS DISTINCT FROM CAST($2 AS {active_type}) RETURNING 1",
            table = table.quoted(),
            active = quote(&self.active_column),
            key = quote(&self.key_column),
        );
        let params = vec![
            Param::Text(Some(key.to_owned())),
            Param::Text(Some(active.to_string())),
        ];
        match self.run(&sql, params).await {
            Err(outcome) => outcome,
            Ok(rows) if !rows.is_empty() => Outcome::applied(key),
            Ok(_) => match self.exists(&table, key_type, key).await {
                Err(outcome) => outcome,
                Ok(true) => Outcome::already(key),
                // A row that is gone gives no access.
                Ok(false) if !active => Outcome::already(key),
                Ok(false) => Outcome::Permanent(format!(
                    "the table {} has no row with {} = {key}",
                    table.quoted(),
                    quote(&self.key_column)
                )),
            },
        }
    }

    async fn delete(&self, request: Request<'_>) -> Outcome {
        let table = match self.table(request) {
            Ok(table) => table,
            Err(outcome) => return outcome,
        };
        let Some(key) = request.target_object_id else {
            return not_known_yet();
        };
        let types = match self.column_types(&table, &[]).await {
            Ok(types) => types,
            Err(outcome) => return outcome,
        };
        let key_type = types.get(&self.key_column).map_or("text", String::as_str);
        let sql = format!(
            "DELETE FROM {} WHERE {} = CAST($1 AS {key_type}) RETURNING 1",
            table.quoted(),
            quote(&self.key_column)
        );
        match self
            .run(&sql, vec![Param::Text(Some(key.to_owned()))])
            .await
        {
            Err(outcome) => outcome,
            Ok(rows) if !rows.is_empty() => Outcome::applied(key),
            Ok(_) => Outcome::already(key),
        }
    }

    async fn exists(&self, table: &Table, key_type: &str, key: &str) -> Result<bool, Outcome> {
        let sql = format!(
            "SELECT 1 FROM {} WHERE {} = CAST($1 AS {key_type})",
            table.quoted(),
            quote(&self.key_column)
        );
        self.run(&sql, vec![Param::Text(Some(key.to_owned()))])
            .await
            .map(|rows| !rows.is_empty())
    }

    async fn run(
        &self,
        sql: &str,
        params: Vec<Param>,
    ) -> Result<Vec<sqlx::postgres::PgRow>, Outcome> {
        // Identifiers are validated and quoted, types come from the catalog, values are bound.
        let mut query = sqlx::query(AssertSqlSafe(sql.to_owned()));
        for param in params {
            query = match param {
                Param::Text(text) => query.bind(text),
                Param::Array(items) => query.bind(items),
            };
        }
        query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify("the statement", &e))
    }
}

impl Target for PostgresTarget {
    fn apply<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Outcome> {
        async move {
            match request.command.operation {
                ExportOperation::Create => self.create(request).await,
                ExportOperation::Update => self.update(request).await,
                ExportOperation::Disable => self.set_active(request, false).await,
                ExportOperation::Enable => self.set_active(request, true).await,
                ExportOperation::Delete => self.delete(request).await,
            }
        }
        .boxed()
    }
}

/// A value as a bind parameter for a column of type `kind`, and its placeholder `$n` cast to
/// that type.
fn bind(value: &Value, kind: &str, n: usize) -> (Param, String) {
    match value {
        Value::List(items) if kind.ends_with("[]") => (
            Param::Array(items.iter().map(text_of).collect()),
            format!("CAST(CAST(${n} AS text[]) AS {kind})"),
        ),
        Value::List(_) => (
            Param::Text(Some(list_json(value).to_string())),
            format!("CAST(${n} AS {kind})"),
        ),
        Value::Decimal(d) if d.is_infinite() => (
            Param::Text(Some(
                if *d > 0.0 { "Infinity" } else { "-Infinity" }.to_owned(),
            )),
            format!("CAST(${n} AS {kind})"),
        ),
        other => (Param::Text(text_of(other)), format!("CAST(${n} AS {kind})")),
    }
}

/// A list as JSON: its items as JSON scalars, timestamps as RFC 3339 strings.
fn list_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Decimal(d) => serde_json::Number::from_f64(*d)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::String(s) => serde_json::Value::String(s.as_str().to_owned()),
        Value::Timestamp(_) => {
            text_of(value).map_or(serde_json::Value::Null, serde_json::Value::String)
        }
        Value::List(items) => serde_json::Value::Array(items.iter().map(list_json).collect()),
    }
}

/// Maps a driver error: the connection and the server's transient states are retryable, what
/// the server refused about the data or the statement is permanent.
fn classify(what: &str, error: &sqlx::Error) -> Outcome {
    let mut message = format!("{what} failed: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Outcome::Retryable(message),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08 connection, 40 rollback (serialization, deadlock), 53 resources, 57 operator
            // intervention (shutdown, statement timeout 57014), 58 system, 55P03 lock timeout.
            if ["08", "40", "53", "57", "58"]
                .iter()
                .any(|c| code.starts_with(c))
                || code == "55P03"
            {
                Outcome::Retryable(message)
            } else {
                Outcome::Permanent(message)
            }
        }
        _ => Outcome::Permanent(message),
    }
}

/// Quotes an identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The column an attribute names: an unquoted identifier, folded to lower case.
fn attribute_column(name: &AttributeName) -> Result<String, String> {
    column(name.as_str()).map_err(|e| format!("target attribute `{name}`: {e}"))
}

/// Parses an unquoted identifier and folds it as PostgreSQL does.
fn column(name: &str) -> Result<String, String> {
    let ok = name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{name}` is not a column name (letters, digits, _ and $, not starting with a digit, \
             at most 63 bytes)"
        ))
    }
}

/// Parses `schema.table`: two identifiers, each unquoted (folded to lower case) or quoted.
fn parse_table(container: &str) -> Result<Table, String> {
    let refuse = || {
        format!(
            "the container `{container}` is not schema.table (two SQL identifiers, such as \
             dbo.employees or hr.\"Employees\")"
        )
    };
    let mut parts = Vec::with_capacity(2);
    let mut rest = container.trim();
    loop {
        let (part, after) = if let Some(quoted) = rest.strip_prefix('"') {
            let mut name = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if quoted[i + 1..].starts_with('"') {
                        name.push('"');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else if c == '\0' {
                    return Err(refuse());
                } else {
                    name.push(c);
                }
            }
            let end = end.ok_or_else(refuse)?;
            if name.is_empty() || name.len() > 63 {
                return Err(refuse());
            }
            (name, &quoted[end..])
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            let (word, after) = rest.split_at(end);
            (column(word).map_err(|_| refuse())?, after)
        };
        parts.push(part);
        match after.strip_prefix('.') {
            Some(next) => rest = next,
            None if after.is_empty() => break,
            None => return Err(refuse()),
        }
    }
    match <[String; 2]>::try_from(parts) {
        Ok([schema, name]) => Ok(Table { schema, name }),
        Err(_) => Err(refuse()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_two_identifiers_folded_unless_quoted() {
        assert_eq!(
            parse_table("dbo.Employees").unwrap(),
            Table {
                schema: "dbo".into(),
                name: "employees".into()
            }
        );
        assert_eq!(
            parse_table("hr.\"Employees \"\"x\"\"\"").unwrap(),
            Table {
                schema: "hr".into(),
                name: "Employees \"x\"".into()
            }
        );
        assert_eq!(
            parse_table("hr.\"Employees\"").unwrap().quoted(),
            "\"hr\".\"Employees\""
        );
        for bad in [
            "employees",
            "a.b.c",
            "dbo.Employees; DROP TABLE x",
            "dbo.\"unterminated",
            "1dbo.t",
            "dbo.",
            "\"\".t",
        ] {
            assert!(parse_table(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn columns_are_plain_identifiers() {
        assert_eq!(column("Display_Name").unwrap(), "display_name");
        assert!(column("name\"; --").is_err());
        assert!(column("given name").is_err());
        assert!(column("").is_err());
    }

    #[test]
    fn lists_bind_as_arrays_or_json() {
        let list = Value::List(vec![Value::from("a"), Value::from(1_i64)]);
        let (param, placeholder) = bind(&list, "text[]", 3);
        assert!(matches!(param, Param::Array(ref v) if v.len() == 2));
        assert_eq!(placeholder, "CAST(CAST($3 AS text[]) AS text[])");
        let (param, _) = bind(&list, "jsonb", 1);
        assert!(matches!(param, Param::Text(Some(ref s)) if s == "[\"a\",1]"));
        let (param, _) = bind(&Value::Null, "integer", 1);
        assert!(matches!(param, Param::Text(None)));
    }
}

//! A real PostgreSQL target, `payroll`, for tests that look at what landed in it: the synthetic
//! estate (mesh_sim::synthetic) projected into `public.employees` with a trigger that logs every
//! write, and a SCIM connector's users projected into `public.accounts`.

#![allow(dead_code)]

use std::collections::BTreeMap;

use mesh_sim::synthetic;
use mesh_testkit::TestDatabase;
use sqlx::PgPool;

/// The target table's columns, in the order the digest reads them.
pub const TARGET_COLUMNS: &str = "employee_id, display_name, department, phone";

/// The synthetic estate's rules, projected into the `payroll` table with every write counted.
pub fn rules(payroll: &str) -> String {
    format!(
        r#"{synthetic}
---
kind: Connector
metadata: {{ name: payroll }}
spec: {{ type: postgres-target, objectTypes: [User], dsn: '{payroll}', keyColumn: employee_id,
        massDeletionGuard: {{ threshold: 1000000, window: 1m }} }}
---
kind: ProjectionRule
metadata: {{ name: users-to-payroll }}
spec: {{ targetConnector: payroll, objectType: User, container: public.employees,
        deprovision: delete }}
---
kind: FlowRule
metadata: {{ name: payroll-employee-id }}
spec: {{ connector: payroll, direction: outbound, sourceAttribute: EmployeeId,
        targetAttribute: employee_id }}
---
kind: FlowRule
metadata: {{ name: payroll-display-name }}
spec: {{ connector: payroll, direction: outbound, sourceAttribute: DisplayName,
        targetAttribute: display_name }}
---
kind: FlowRule
metadata: {{ name: payroll-department }}
spec: {{ connector: payroll, direction: outbound, sourceAttribute: Department,
        targetAttribute: department }}
---
kind: FlowRule
metadata: {{ name: payroll-phone }}
spec: {{ connector: payroll, direction: outbound, sourceAttribute: Phone,
        targetAttribute: phone }}
"#,
        synthetic = synthetic::RULES.trim_end()
    )
}

/// A target database with the `employees` table and a trigger that logs every write to it.
pub async fn target_database() -> (TestDatabase, PgPool) {
    TestDatabase::with_schema(
        "CREATE TABLE public.employees (employee_id text PRIMARY KEY, display_name text, \
         department text, phone text); \
         CREATE TABLE public.employee_writes (seq bigserial PRIMARY KEY, op text NOT NULL, \
         employee_id text NOT NULL); \
         CREATE FUNCTION public.log_employee_write() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN INSERT INTO public.employee_writes (op, employee_id) \
         VALUES (TG_OP, COALESCE(NEW.employee_id, OLD.employee_id)); RETURN NULL; END $$; \
         CREATE TRIGGER employee_writes AFTER INSERT OR UPDATE OR DELETE ON public.employees \
         FOR EACH ROW EXECUTE FUNCTION public.log_employee_write()",
    )
    .await
    .unwrap()
}

/// A row of the target table, in [`TARGET_COLUMNS`] order.
type Row = (String, Option<String>, Option<String>, Option<String>);

/// The SHA-256 of the target's rows (in employee id order) and how many there are.
pub async fn rows_digest(target: &PgPool) -> (String, usize) {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TARGET_COLUMNS} FROM public.employees ORDER BY employee_id"
    )))
    .fetch_all(target)
    .await
    .unwrap();
    (crate::mesh::digest(&serde_json::json!(rows)), rows.len())
}

/// Per employee id, the target's writes to its row: (inserts, all writes).
pub async fn writes(target: &PgPool) -> BTreeMap<String, (i64, i64)> {
    let writes: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT employee_id, count(*) FILTER (WHERE op = 'INSERT'), count(*) \
         FROM public.employee_writes GROUP BY employee_id",
    )
    .fetch_all(target)
    .await
    .unwrap();
    writes
        .into_iter()
        .map(|(id, inserts, all)| (id, (inserts, all)))
        .collect()
}

/// Rules of a SCIM connector `okta` whose users (`userName`, `displayName`) are projected into
/// `public.accounts (user_name, display_name)` of the PostgreSQL target `payroll` at
/// `payroll_dsn`; `payroll_settings` adds settings to that connector's spec
/// (`passwordEnv: PAYROLL_DB_PASSWORD`). Other documents can follow after a `---`.
pub fn okta_to_payroll_rules(payroll_dsn: &str, payroll_settings: &str) -> String {
    format!(
        r#"
kind: Connector
metadata: {{ name: okta }}
spec: {{ type: scim-inbound, objectTypes: [User], externalIdAttribute: id }}
---
kind: Connector
metadata: {{ name: payroll }}
spec: {{ type: postgres-target, objectTypes: [User], dsn: '{payroll_dsn}',
        keyColumn: user_name{payroll_settings} }}
---
kind: JoinRule
metadata: {{ name: okta-by-user-name }}
spec: {{ connector: okta, sourceAttribute: userName, targetAttribute: UserName,
        isAnchor: true, priority: 1 }}
---
kind: FlowRule
metadata: {{ name: okta-user-name }}
spec: {{ connector: okta, direction: inbound, sourceAttribute: userName,
        targetAttribute: UserName, confidence: 90 }}
---
kind: FlowRule
metadata: {{ name: okta-display-name }}
spec: {{ connector: okta, direction: inbound, sourceAttribute: displayName,
        targetAttribute: DisplayName, confidence: 90 }}
---
kind: ProjectionRule
metadata: {{ name: users-to-payroll }}
spec: {{ targetConnector: payroll, objectType: User, container: public.accounts,
        deprovision: delete }}
---
kind: FlowRule
metadata: {{ name: payroll-user-name }}
spec: {{ connector: payroll, direction: outbound, sourceAttribute: UserName,
        targetAttribute: user_name }}
---
kind: FlowRule
metadata: {{ name: payroll-display-name }}
spec: {{ connector: payroll, direction: outbound, sourceAttribute: DisplayName,
        targetAttribute: display_name }}
"#
    )
}

/// A database for the `payroll` target of [`okta_to_payroll_rules`], with its table.
pub async fn payroll_database() -> (TestDatabase, PgPool) {
    TestDatabase::with_schema(
        "CREATE TABLE public.accounts (user_name text PRIMARY KEY, display_name text, \
         active boolean NOT NULL DEFAULT true)",
    )
    .await
    .unwrap()
}

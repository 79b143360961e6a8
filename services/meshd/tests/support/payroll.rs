//! The synthetic estate (mesh_sim::synthetic) projected into a real PostgreSQL target table,
//! `payroll`'s `public.employees`, with a trigger that logs every write to it: for tests that
//! count what landed in a target.

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
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    for statement in [
        "CREATE TABLE public.employees (employee_id text PRIMARY KEY, display_name text, \
         department text, phone text)",
        "CREATE TABLE public.employee_writes (seq bigserial PRIMARY KEY, op text NOT NULL, \
         employee_id text NOT NULL)",
        "CREATE FUNCTION public.log_employee_write() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN INSERT INTO public.employee_writes (op, employee_id) \
         VALUES (TG_OP, COALESCE(NEW.employee_id, OLD.employee_id)); RETURN NULL; END $$",
        "CREATE TRIGGER employee_writes AFTER INSERT OR UPDATE OR DELETE ON public.employees \
         FOR EACH ROW EXECUTE FUNCTION public.log_employee_write()",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    (db, pool)
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

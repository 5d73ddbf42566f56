//! `postrust triggers install`: puts the project's trigger function in the database and
//! attaches it to tables, through our own PostgreSQL client, in one transaction so that a
//! failure leaves the database as it was.

use glommio::{LocalExecutorBuilder, Placement};

use super::{TableName, attach_sql, function_sql, quote_ident};
use crate::config::Config;
use crate::engine::schemas_param;
use crate::pg::{self, Client};

/// The base tables (plain and partitioned) of the exposed schemas, in name order.
const EXPOSED_TABLES_SQL: &str = "\
SELECT n.nspname::text, c.relname::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY ($1::text[])
 ORDER BY 1, 2";

/// Other triggers of table `$1` (a quoted, qualified name) whose function notifies on
/// channel `$2`: what the docs page's `notify_table_change()` is, attached as the docs page
/// shows. The function's source must name the channel as a literal.
const DUPLICATE_TRIGGERS_SQL: &str = "\
SELECT t.tgname::text, p.proname::text
  FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
 WHERE t.tgrelid = $1::regclass AND NOT t.tgisinternal
   AND t.tgname NOT IN ('postrust_notify_row', 'postrust_notify_truncate')
   AND p.prosrc ~* 'notify' AND strpos(p.prosrc, quote_literal($2)) > 0
 ORDER BY 1";

/// A table the function was attached to, and the triggers it replaced there (name, function).
pub struct Installed {
    pub table: TableName,
    pub replaced: Vec<(String, String)>,
}

/// Installs the function and attaches it to `tables` (every table of the exposed schemas
/// when empty), notifying on `POSTRUST_NOTIFY_CHANNEL`, and drops the triggers it replaces.
/// Calls `done` for each table once the whole installation has committed; returns a
/// message naming what failed.
pub fn install_now(
    config: &Config,
    tables: Vec<TableName>,
    done: impl Fn(&Installed),
) -> Result<(), String> {
    let settings = pg::Settings::from_config(config).map_err(|e| e.to_string())?;
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("triggers")
        .io_memory(config.io_memory)
        .make()
        .map_err(|e| format!("cannot start an executor: {e}"))?;
    let installed = executor.run(install(settings, config, tables))?;
    for table in &installed {
        done(table);
    }
    Ok(())
}

async fn install(
    settings: pg::Settings,
    config: &Config,
    mut tables: Vec<TableName>,
) -> Result<Vec<Installed>, String> {
    let client = Client::connect(&settings.connect_config, &settings.connect)
        .await
        .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
    if tables.is_empty() {
        tables = exposed_tables(&client, &config.db_schemas.0).await?;
        if tables.is_empty() {
            return Err(format!(
                "no tables in the exposed schemas {:?} (POSTRUST_DB_SCHEMAS)",
                config.db_schemas.0
            ));
        }
    }
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| format!("cannot start a transaction: {e}"))?;
    client
        .batch_execute(function_sql())
        .await
        .map_err(|e| format!("cannot create postrust.notify_change(): {e}"))?;
    let mut installed = Vec::with_capacity(tables.len());
    for table in tables {
        let target = table.qualified();
        let duplicates = client
            .query(
                DUPLICATE_TRIGGERS_SQL,
                &[Some(target.as_str()), Some(config.notify_channel.as_str())],
            )
            .await
            .map_err(|e| format!("cannot read the triggers of {table}: {e}"))?;
        let mut replaced = Vec::new();
        for row in duplicates.rows() {
            let (name, function) = (
                row.get(0).unwrap_or_default(),
                row.get(1).unwrap_or_default(),
            );
            client
                .batch_execute(&format!("DROP TRIGGER {} ON {target}", quote_ident(name)))
                .await
                .map_err(|e| format!("cannot drop trigger {name} of {table}: {e}"))?;
            replaced.push((name.to_owned(), function.to_owned()));
        }
        client
            .batch_execute(&attach_sql(&table, &config.notify_channel))
            .await
            .map_err(|e| format!("cannot attach the trigger to {table}: {e}"))?;
        installed.push(Installed { table, replaced });
    }
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| format!("cannot commit: {e}"))?;
    Ok(installed)
}

async fn exposed_tables(client: &Client, schemas: &[String]) -> Result<Vec<TableName>, String> {
    let list = schemas_param(schemas);
    let rows = client
        .query(EXPOSED_TABLES_SQL, &[Some(list.as_str())])
        .await
        .map_err(|e| format!("cannot list the tables of {schemas:?}: {e}"))?;
    Ok(rows
        .rows()
        .iter()
        .map(|row| TableName {
            schema: row.get(0).unwrap_or_default().to_owned(),
            table: row.get(1).unwrap_or_default().to_owned(),
        })
        .collect())
}

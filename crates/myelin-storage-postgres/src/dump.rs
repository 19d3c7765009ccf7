//! `Dump`: raw rows of every table, for `myelin db copy`. Flags (BOOLEAN here, 0/1 in SQLite)
//! travel as integers.

use async_trait::async_trait;
use myelin_storage::dump::{
    count_sql, insert_sql, is_single_row, select_sql, Dump, DumpValue, Table,
};
use myelin_storage::{StorageError, StorageResult};
use tokio_postgres::types::{ToSql, Type};

use crate::convert::{get, limit};
use crate::PgStore;

/// The columns whose values a sequence generates: `(table, column)`.
const GENERATED_IDS: &[(&str, &str)] = &[
    ("state_snapshots", "snapshot_id"),
    ("federation_outbox", "id"),
    ("one_time_keys", "seq"),
    ("to_device_messages", "seq"),
    ("reports", "id"),
    ("pushers", "id"),
];

#[async_trait]
impl Dump for PgStore {
    async fn count_rows(&self, table: &Table) -> StorageResult<u64> {
        let mut conn = self.db.read().await?;
        let row = conn.query_one(&count_sql(table), &[]).await?;
        Ok(u64::try_from(get::<i64>(&row, 0)?).unwrap_or(0))
    }

    async fn read_rows(
        &self,
        table: &Table,
        offset: u64,
        limit_: usize,
    ) -> StorageResult<Vec<Vec<DumpValue>>> {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let mut conn = self.db.read().await?;
        let rows = conn
            .query(
                &format!("{} LIMIT $1 OFFSET $2", select_sql(table)),
                &[&limit(limit_), &offset],
            )
            .await?;
        rows.iter()
            .map(|row| {
                (0..table.columns.len())
                    .map(|i| {
                        let ty = row.columns()[i].type_().clone();
                        Ok(if ty == Type::BOOL {
                            get::<Option<bool>>(row, i)?
                                .map_or(DumpValue::Null, |b| DumpValue::Int(i64::from(b)))
                        } else if ty == Type::INT8 {
                            get::<Option<i64>>(row, i)?.map_or(DumpValue::Null, DumpValue::Int)
                        } else if ty == Type::TEXT {
                            get::<Option<String>>(row, i)?.map_or(DumpValue::Null, DumpValue::Text)
                        } else {
                            return Err(StorageError::Corrupt(format!(
                                "{}.{}: unexpected column type {ty}",
                                table.name, table.columns[i]
                            )));
                        })
                    })
                    .collect()
            })
            .collect()
    }

    async fn write_rows(&self, table: &Table, rows: Vec<Vec<DumpValue>>) -> StorageResult<()> {
        let sql = insert_sql(table, |i| format!("${i}"));
        let mut conn = self.db.write().await?;
        let result = async {
            if is_single_row(table) {
                conn.execute(&format!("DELETE FROM {}", table.name), &[])
                    .await?;
            }
            let types = conn.param_types(&sql).await?;
            for row in rows {
                let params = row
                    .into_iter()
                    .zip(&types)
                    .map(|(value, ty)| to_param(value, ty, table.name))
                    .collect::<StorageResult<Vec<_>>>()?;
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                conn.execute(&sql, &refs).await?;
            }
            Ok(())
        }
        .await;
        conn.finish(result).await
    }

    async fn finish_restore(&self) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = async {
            // Copied rows carry their IDs; new ones must continue after them.
            for (table, column) in GENERATED_IDS {
                conn.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                                       COALESCE(MAX({column}), 1), MAX({column}) IS NOT NULL)
                         FROM {table}"
                    ),
                    &[],
                )
                .await?;
            }
            Ok(())
        }
        .await;
        conn.finish(result).await
    }
}

/// A dump value as a parameter of the column's type.
fn to_param(
    value: DumpValue,
    ty: &Type,
    table: &str,
) -> StorageResult<Box<dyn ToSql + Sync + Send>> {
    Ok(match (value, ty) {
        (DumpValue::Null, t) if *t == Type::BOOL => Box::new(None::<bool>),
        (DumpValue::Null, t) if *t == Type::INT8 => Box::new(None::<i64>),
        (DumpValue::Null, _) => Box::new(None::<String>),
        (DumpValue::Int(n), t) if *t == Type::BOOL => Box::new(n != 0),
        (DumpValue::Int(n), t) if *t == Type::INT8 => Box::new(n),
        (DumpValue::Text(s), t) if *t == Type::TEXT => Box::new(s),
        (value, t) => {
            return Err(StorageError::Corrupt(format!(
                "{table}: cannot store {value:?} in a {t} column"
            )))
        }
    })
}

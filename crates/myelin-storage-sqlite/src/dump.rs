//! `Dump`: raw rows of every table, for `myelin db copy`.

use async_trait::async_trait;
use myelin_storage::dump::{
    count_sql, insert_sql, is_single_row, select_sql, Dump, DumpValue, Table,
};
use myelin_storage::{StorageError, StorageResult};
use rusqlite::types::{Value, ValueRef};

use crate::convert::{limit, Db};
use crate::SqliteStore;

#[async_trait]
impl Dump for SqliteStore {
    async fn count_rows(&self, table: &Table) -> StorageResult<u64> {
        let sql = count_sql(table);
        self.db
            .read(move |conn| {
                let n: i64 = conn.query_row(&sql, [], |row| row.get(0)).db()?;
                Ok(u64::try_from(n).unwrap_or(0))
            })
            .await
    }

    async fn read_rows(
        &self,
        table: &Table,
        offset: u64,
        limit_: usize,
    ) -> StorageResult<Vec<Vec<DumpValue>>> {
        let sql = format!("{} LIMIT ?1 OFFSET ?2", select_sql(table));
        let width = table.columns.len();
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let name = table.name;
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare(&sql).db()?;
                let mut rows = stmt.query(rusqlite::params![limit(limit_), offset]).db()?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().db()? {
                    let mut values = Vec::with_capacity(width);
                    for i in 0..width {
                        values.push(match row.get_ref(i).db()? {
                            ValueRef::Null => DumpValue::Null,
                            ValueRef::Integer(n) => DumpValue::Int(n),
                            ValueRef::Text(t) => DumpValue::Text(
                                String::from_utf8(t.to_vec())
                                    .map_err(|e| StorageError::Corrupt(format!("{name}: {e}")))?,
                            ),
                            other => {
                                return Err(StorageError::Corrupt(format!(
                                    "{name}: unexpected {:?} value",
                                    other.data_type()
                                )))
                            }
                        });
                    }
                    out.push(values);
                }
                Ok(out)
            })
            .await
    }

    async fn write_rows(&self, table: &Table, rows: Vec<Vec<DumpValue>>) -> StorageResult<()> {
        let sql = insert_sql(table, |i| format!("?{i}"));
        let replace = is_single_row(table).then(|| format!("DELETE FROM {}", table.name));
        self.db
            .write(move |tx, _| {
                if let Some(delete) = &replace {
                    tx.execute(delete, []).db()?;
                }
                let mut stmt = tx.prepare(&sql).db()?;
                for row in rows {
                    let values: Vec<Value> = row
                        .into_iter()
                        .map(|v| match v {
                            DumpValue::Null => Value::Null,
                            DumpValue::Int(n) => Value::Integer(n),
                            DumpValue::Text(t) => Value::Text(t),
                        })
                        .collect();
                    stmt.execute(rusqlite::params_from_iter(values)).db()?;
                }
                Ok(())
            })
            .await
    }

    async fn finish_restore(&self) -> StorageResult<()> {
        // INTEGER PRIMARY KEYs continue after the largest copied ID by themselves.
        Ok(())
    }
}

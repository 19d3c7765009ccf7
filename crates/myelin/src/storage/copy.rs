//! Copying a stopped server's whole database into an empty one, across backends: table by
//! table (parents first), in batches, with a progress bar and a row-count check per table.

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use myelin_storage::dump::{is_single_row, DumpValue, TABLES};

use super::{open_backend, Backend};

/// Copies every table of `from` into the empty database `to`; returns the rows copied per table.
pub async fn copy(
    from: &Backend,
    to: &Backend,
    batch_size: usize,
    progress: bool,
) -> anyhow::Result<Vec<(&'static str, u64)>> {
    if let Backend::Sqlite(path) = from {
        if !path.is_file() {
            bail!("there is no SQLite database at {}", path.display());
        }
    }
    let source = open_backend(from).await?;
    let target = open_backend(to).await?;
    let (source, target) = (source.dump(), target.dump());

    for table in TABLES {
        let rows = target.count_rows(table).await?;
        let empty = if is_single_row(table) {
            let counter = target.read_rows(table, 0, 10).await?;
            counter
                .iter()
                .all(|row| row.iter().all(|v| matches!(v, DumpValue::Int(0))))
        } else {
            rows == 0
        };
        if !empty {
            bail!(
                "the target {} database {} is not empty (table {} has {rows} rows); copy only into a new, empty \
                 database",
                to.name(),
                to.location(),
                table.name
            );
        }
    }

    let style =
        ProgressStyle::with_template("{prefix:>24} [{bar:40}] {pos}/{len} rows ({elapsed})")
            .context("progress bar template")?
            .progress_chars("=> ");
    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let total = source.count_rows(table).await?;
        let bar = if progress {
            ProgressBar::new(total)
                .with_style(style.clone())
                .with_prefix(table.name)
        } else {
            ProgressBar::hidden()
        };
        let mut offset = 0u64;
        loop {
            let rows = source
                .read_rows(table, offset, batch_size)
                .await
                .with_context(|| format!("cannot read table {} of the source", table.name))?;
            if rows.is_empty() {
                break;
            }
            let n = rows.len() as u64;
            target.write_rows(table, rows).await.with_context(|| {
                format!(
                    "cannot write table {} of the target (it is now partly filled)",
                    table.name
                )
            })?;
            offset += n;
            bar.inc(n);
        }
        bar.finish();
        let copied = target.count_rows(table).await?;
        if copied != total || offset != total {
            bail!(
                "row count mismatch in table {}: the source has {total} rows, {offset} were read and the target has \
                 {copied}; was the source server still running?",
                table.name
            );
        }
        counts.push((table.name, total));
    }
    target.finish_restore().await?;
    Ok(counts)
}

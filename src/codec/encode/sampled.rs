//! The shared front of the tabular encoders: hold the first items until the sample is complete,
//! discover the columns from it, then stream everything through the format's table writer.

use std::io::Write;

use super::columns::{Column, Columns, Tabular, SAMPLE_ITEMS};
use super::{EncodeError, RecordEncoder};
use crate::model::Item;

/// A tabular format's writer, once the columns are known.
pub(crate) trait TableWriter: Send {
    /// Writes the header (CSV) or prepares the file (Parquet).
    fn begin(&mut self, columns: &Columns, out: &mut dyn Write) -> Result<(), EncodeError>;
    /// Writes rows.
    fn rows(
        &mut self,
        columns: &Columns,
        items: &[Item],
        out: &mut dyn Write,
    ) -> Result<(), EncodeError>;
    /// Writes the trailer (Parquet's footer).
    fn end(&mut self, out: &mut dyn Write) -> Result<(), EncodeError>;
}

/// Samples, discovers, then delegates to `W`.
pub(crate) struct Sampled<W> {
    keys: Vec<String>,
    tabular: Tabular,
    sample: Vec<Item>,
    columns: Option<Columns>,
    writer: W,
}

impl<W: TableWriter> Sampled<W> {
    pub(crate) fn new(keys: Vec<String>, tabular: Tabular, writer: W) -> Self {
        Sampled {
            keys,
            tabular,
            sample: Vec::new(),
            columns: None,
            writer,
        }
    }

    /// Discovers the columns from what was sampled and writes the sample out.
    fn start(&mut self, out: &mut dyn Write) -> Result<(), EncodeError> {
        let sample = std::mem::take(&mut self.sample);
        let columns = Columns::discover(&self.keys, &sample, self.tabular);
        self.writer.begin(&columns, out)?;
        self.writer.rows(&columns, &sample, out)?;
        self.columns = Some(columns);
        Ok(())
    }
}

impl<W: TableWriter> RecordEncoder for Sampled<W> {
    fn encode_batch(&mut self, items: &[Item], out: &mut dyn Write) -> Result<(), EncodeError> {
        if let Some(columns) = &self.columns {
            return self.writer.rows(columns, items, out);
        }
        let take = items.len().min(SAMPLE_ITEMS - self.sample.len());
        self.sample.extend(items[..take].iter().cloned());
        if self.sample.len() >= SAMPLE_ITEMS {
            self.start(out)?;
            if let Some(columns) = &self.columns {
                self.writer.rows(columns, &items[take..], out)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Write) -> Result<(), EncodeError> {
        if self.columns.is_none() {
            self.start(out)?;
        }
        self.writer.end(out)
    }

    fn columns(&self) -> Option<Vec<Column>> {
        self.columns.as_ref().map(|c| c.columns().to_vec())
    }
}

//! Output formats and stream compressions. Each enum owns its file extension and HTTP metadata so
//! the rest of the pipeline never builds those strings by hand.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How items are written. Every format streams, so a file can be rolled at any page boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `{"Item":{...}}` per line: the line format of DynamoDB's native Export to S3, lossless,
    /// loadable by `ImportTable` and by our restore.
    DynamodbJson,
    /// Plain JSON lines for analytics tools. Exact numbers, but types such as sets and binary are
    /// folded into JSON arrays and base64 strings, so it is not a lossless restore source.
    Json,
    /// RFC 4180 CSV with a header row, for spreadsheets; discovered columns plus `_extra`.
    Csv,
    /// Apache Parquet for Athena, DuckDB, Spark and pandas; discovered, typed columns plus `_extra`,
    /// compressed column by column ([`ParquetCompression`]).
    Parquet,
}

impl Format {
    /// Every format, in the order the CLI lists them.
    pub const ALL: [Format; 4] = [
        Format::DynamodbJson,
        Format::Json,
        Format::Csv,
        Format::Parquet,
    ];

    /// The name used in job JSON, CLI flags and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Format::DynamodbJson => "dynamodb-json",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }

    /// File extension before any compression suffix.
    pub fn extension(self) -> &'static str {
        match self {
            Format::DynamodbJson => "json",
            Format::Json => "jsonl",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }

    /// Media type of the records themselves: the `Content-Type` of an uncompressed file, and the
    /// `records-content-type` metadata of a compressed one.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::DynamodbJson | Format::Json => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8; header=present",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// Whether the encoder works from DynamoDB's wire items (`dynamodb-json` writes them as they
    /// are, `json` rewrites them), so the scan should keep them as bytes instead of decoding them
    /// into SDK items.
    pub fn takes_wire_items(self) -> bool {
        matches!(self, Format::DynamodbJson | Format::Json)
    }

    /// Whether a restore can rebuild every attribute of every item exactly from this format
    /// (CSV and Parquet with the column types they record; see [`crate::codec::encode::columns`]).
    pub fn is_lossless(self) -> bool {
        !matches!(self, Format::Json)
    }

    /// Whether the file is a table with a schema (CSV, Parquet) rather than one item per line.
    pub fn is_tabular(self) -> bool {
        matches!(self, Format::Csv | Format::Parquet)
    }
}

/// Compression inside a Parquet file, column chunk by column chunk. It replaces the stream
/// compression for Parquet: a Parquet file compressed as a whole is unreadable to Athena, DuckDB
/// and Spark, which seek to its footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParquetCompression {
    /// Zstandard (level 3): the best ratio at high speed; every current reader has it.
    #[default]
    Zstd,
    /// Snappy: the traditional Parquet default, fastest to read, larger files.
    Snappy,
    /// gzip: for old readers only.
    Gzip,
    /// Uncompressed column chunks.
    None,
}

impl ParquetCompression {
    /// Every codec, in the order the CLI lists them.
    pub const ALL: [ParquetCompression; 4] = [
        ParquetCompression::Zstd,
        ParquetCompression::Snappy,
        ParquetCompression::Gzip,
        ParquetCompression::None,
    ];

    /// The name used in job JSON, CLI flags and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            ParquetCompression::Zstd => "zstd",
            ParquetCompression::Snappy => "snappy",
            ParquetCompression::Gzip => "gzip",
            ParquetCompression::None => "none",
        }
    }
}

/// Compression applied to the whole encoded stream of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// gzip (DEFLATE), readable everywhere, also what DynamoDB's own export uses.
    Gzip,
    /// Zstandard: several times faster than gzip at a better ratio.
    Zstd,
    /// Raw bytes, for small tables or tools that cannot decompress.
    None,
}

impl Compression {
    /// Every compression, in the order the CLI lists them.
    pub const ALL: [Compression; 3] = [Compression::Gzip, Compression::Zstd, Compression::None];

    /// The name used in job JSON, CLI flags and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }

    /// Suffix appended to the format's extension (empty for `none`).
    pub fn extension_suffix(self) -> &'static str {
        match self {
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
            Compression::None => "",
        }
    }

    /// Media type of a file compressed this way, if compressed. A compressed file is stored as
    /// what it is, with no `Content-Encoding`: browsers and HTTP clients would otherwise
    /// decompress it on download and save bytes that match neither its name nor its SHA-256.
    pub fn media_type(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("application/gzip"),
            Compression::Zstd => Some("application/zstd"),
            Compression::None => None,
        }
    }
}

/// `Content-Type` of a stored data file: the compressed stream's, else the records'.
pub fn stored_content_type(format: Format, compression: Compression) -> &'static str {
    compression
        .media_type()
        .unwrap_or_else(|| format.content_type())
}

/// Full file extension of an output file, e.g. `json.gz`.
pub fn file_extension(format: Format, compression: Compression) -> String {
    format!("{}{}", format.extension(), compression.extension_suffix())
}

/// Error for a name that is not one of the enum's values; lists what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{given}`: expected one of {expected}")]
pub struct UnknownVariant {
    /// What was being parsed ("format", "compression").
    pub kind: &'static str,
    /// The rejected input.
    pub given: String,
    /// Accepted values, comma separated.
    pub expected: String,
}

macro_rules! name_enum {
    ($ty:ty, $kind:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$ty>::ALL
                    .into_iter()
                    .find(|v| v.name() == s)
                    .ok_or_else(|| UnknownVariant {
                        kind: $kind,
                        given: s.to_string(),
                        expected: <$ty>::ALL.map(|v| v.name()).join(", "),
                    })
            }
        }
    };
}

name_enum!(Format, "format");
name_enum!(Compression, "compression");
name_enum!(ParquetCompression, "parquet compression");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_and_content_metadata_follow_format_and_compression() {
        assert_eq!(
            file_extension(Format::DynamodbJson, Compression::Gzip),
            "json.gz"
        );
        assert_eq!(file_extension(Format::Json, Compression::Zstd), "jsonl.zst");
        assert_eq!(file_extension(Format::Json, Compression::None), "jsonl");
        assert_eq!(Compression::None.media_type(), None);
        assert_eq!(
            stored_content_type(Format::Csv, Compression::Zstd),
            "application/zstd"
        );
        assert_eq!(
            stored_content_type(Format::DynamodbJson, Compression::Gzip),
            "application/gzip"
        );
        assert_eq!(
            stored_content_type(Format::Json, Compression::None),
            "application/x-ndjson"
        );
        assert_eq!(Format::DynamodbJson.content_type(), "application/x-ndjson");
        assert_eq!(file_extension(Format::Csv, Compression::Gzip), "csv.gz");
        assert_eq!(
            file_extension(Format::Parquet, Compression::None),
            "parquet"
        );
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>(), Ok(f));
        }
        for c in Compression::ALL {
            assert_eq!(c.name().parse::<Compression>(), Ok(c));
        }
        let err = "xml".parse::<Format>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown format `xml`: expected one of dynamodb-json, json, csv, parquet"
        );
    }
}

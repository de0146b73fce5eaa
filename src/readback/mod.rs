//! The read-back path: [`records`] streams the items of any backup file; [`verify`] checks a backup
//! against its manifest; [`restore`] writes it back into a table through the [`table_writer`] port;
//! [`import`] has DynamoDB load a `dynamodb-json` backup into a new table itself.

pub mod import;
pub mod point_in_time;
pub mod records;
pub mod restore;
pub mod table_writer;
pub mod throttled_table;
pub mod verify;

//! Items to bytes and back, knowing nothing of S3, compression or DynamoDB's API: the [`encode`]rs
//! write any [`std::io::Write`], [`decode`] reads DynamoDB JSON back into items, [`number`] keeps
//! DynamoDB's 38-digit numbers exact, and [`wire`] cuts a Scan response's items out of its bytes
//! without decoding them.

pub mod decode;
pub mod encode;
pub mod number;
pub mod wire;

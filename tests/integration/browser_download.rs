//! A backup's compressed files downloaded the way a person downloads them: headless Chromium
//! (Debian's, driven by Playwright) following an S3 presigned URL that asks for
//! `Content-Disposition: attachment`, as the S3 console's download does. What lands on disk must
//! be the very bytes the manifest describes: a browser that decompressed a `.gz` it was served
//! with `Content-Encoding: gzip` would save plain JSON under that name.

use std::process::Command;
use std::time::Duration;

use crate::common::*;
use aws_sdk_s3::presigning::PresigningConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_downloads_the_compressed_files_byte_for_byte_as_the_manifest_lists_them() {
    let python = browser_python();
    let aws = aws().await;
    let table = unique("download");
    create_table(&aws, &table).await;
    put_items(&aws, &table, &every_type_items(200)).await;
    let bucket = unique("download");
    create_bucket(&aws, &bucket).await;

    let mut urls = Vec::new();
    let mut expected = Vec::new();
    for compression in ["gzip", "zstd"] {
        let manifest = run_backup(
            &aws,
            s3_store(&aws, &bucket),
            &format!(
                r#"{{"table": "{table}", "bucket": "{bucket}", "segments": 1, "compression": "{compression}"}}"#
            ),
        )
        .await;
        let file = manifest.files[0].clone();
        let name = file.key.rsplit('/').next().unwrap().to_string();
        let presigned = aws
            .s3()
            .get_object()
            .bucket(&bucket)
            .key(&file.key)
            .response_content_disposition(format!("attachment; filename=\"{name}\""))
            .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
            .await
            .unwrap();
        urls.push(presigned.uri().to_string());
        expected.push((name, file.bytes, file.sha256));
    }

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/download.py"
        ))
        .arg(dir.path())
        .args(&urls)
        .output()
        .expect("run the browser");
    assert!(
        out.status.success(),
        "the browser failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(saved.len(), 2, "{saved:?}");
    for (got, (name, bytes, sha256)) in saved.iter().zip(&expected) {
        assert_eq!(got["suggested_filename"], name.as_str(), "{got}");
        assert_eq!(got["size"], *bytes, "{name}: the size the manifest lists");
        assert_eq!(
            got["sha256"],
            sha256.as_str(),
            "{name}: the SHA-256 the manifest lists"
        );
    }
}

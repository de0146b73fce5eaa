//! The built Lambda binaries under a local Lambda runtime emulator: `cargo lambda watch
//! --only-lambda-apis` serves the runtime API, the binary cargo built for the tests runs as Lambda
//! runs `bootstrap`, and events are delivered with `cargo lambda invoke --data-file`.
//! cargo-lambda comes from PyPI into `.venv` (`scripts/emulator.sh start` installs it).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `cargo-lambda`, or a panic saying how to install it.
pub fn cargo_lambda() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/cargo-lambda");
    if venv.exists() {
        return venv;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("cargo-lambda"))
            .find(|p| p.exists())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "cargo-lambda is not installed: run `scripts/emulator.sh start` (it installs \
             cargo-lambda from PyPI into .venv) or `pip install cargo-lambda`"
        )
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The runtime API emulator plus one function process; both die with it.
pub struct LocalLambda {
    port: u16,
    children: Vec<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl LocalLambda {
    pub fn start(binary: &str, env: &[(&str, String)]) -> LocalLambda {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let runtime = Command::new(cargo_lambda())
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1"])
            .args(["-P", &port.to_string()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cargo lambda watch");
        let mut lambda = LocalLambda {
            port,
            children: vec![runtime],
            log: dir.path().join("function.log"),
            _dir: dir,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "cargo lambda watch did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::File::create(&lambda.log).expect("log file");
        let function = Command::new(binary)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start the function binary");
        lambda.children.push(function);
        lambda
    }

    /// Delivers `event` and returns the function's response.
    pub fn invoke(&self, event: &serde_json::Value) -> serde_json::Value {
        let file = self
            .log
            .with_file_name(format!("event-{}.json", uuid_like()));
        std::fs::write(&file, event.to_string()).expect("write the event");
        let out = Command::new(cargo_lambda())
            .args(["lambda", "invoke", "-A", "127.0.0.1"])
            .args(["-P", &self.port.to_string()])
            .arg("--data-file")
            .arg(&file)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run cargo lambda invoke");
        assert!(
            out.status.success(),
            "invoke failed: {}\nfunction log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.function_log()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "not a JSON response ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Kills the function process as Lambda kills a timed-out or crashed invocation: no
    /// cleanup, no response.
    pub fn kill_function(&self) {
        if let Some(function) = self.children.get(1) {
            kill(function);
        }
    }

    /// Kills the runtime emulator as well, which ends any `invoke` still waiting on it.
    pub fn kill_all(&self) {
        self.children.iter().for_each(kill);
    }

    pub fn function_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LocalLambda {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn kill(process: &Child) {
    let killed = Command::new("kill")
        .args(["-KILL", &process.id().to_string()])
        .status()
        .expect("run kill");
    assert!(
        killed.success(),
        "process {} could not be killed",
        process.id()
    );
}

fn uuid_like() -> String {
    format!("{:x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

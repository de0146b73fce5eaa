//! `ddb-backup`: the command line. It parses flags into the same validated job the Lambdas get,
//! runs the library's pipeline and reports; all logic lives in the library.

mod args;
mod commands;
mod recovery;

use std::process::ExitCode;

use clap::Parser;
use ddb_backup::aws::AwsOptions;
use ddb_backup::runtime::config::Settings;

use args::*;
use commands::*;

/// mimalloc, tuned by [`ddb_backup::runtime::allocator::tune`] (why: see that module).
#[global_allocator]
static ALLOCATOR: ddb_backup::runtime::allocator::Allocator =
    ddb_backup::runtime::allocator::Allocator;

/// Exit code for input the user must fix (as clap uses for bad flags).
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    ddb_backup::runtime::allocator::tune();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let verbose = cli.verbose;
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if verbose == 0 {
                eprintln!("error: {}", one_line(&err));
            } else {
                eprintln!("error: {err:?}");
            }
            let bad_input = err.downcast_ref::<ddb_backup::JobError>().is_some()
                || err
                    .downcast_ref::<ddb_backup::runtime::config::ConfigError>()
                    .is_some()
                || matches!(
                    err.downcast_ref::<ddb_backup::runtime::service::OpenError>(),
                    Some(ddb_backup::runtime::service::OpenError::Location { .. })
                );
            ExitCode::from(if bad_input { EXIT_BAD_INPUT } else { 1 })
        }
    }
}

/// The error as one line: the CLI's context, then the library's message, which already says what
/// went wrong and what to do. The causes below that (the AWS SDK's, several hundred characters of
/// them) are printed with `-v`.
fn one_line(err: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in err.chain() {
        parts.push(cause.to_string());
        if says_what_to_do(cause) {
            break;
        }
    }
    parts.join(": ")
}

/// Whether `err` is one of the library's errors, whose message is complete on its own.
fn says_what_to_do(err: &(dyn std::error::Error + 'static)) -> bool {
    use ddb_backup::backup::checkpoint::CheckpointError;
    use ddb_backup::readback::restore::RestoreError;
    use ddb_backup::readback::table_writer::WriteError;
    use ddb_backup::runtime::service::OpenError;
    use ddb_backup::source::ScanError;
    use ddb_backup::store::StoreError;
    use ddb_backup::triggers::queue::QueueError;
    err.is::<ddb_backup::BackupError>()
        || err.is::<ScanError>()
        || err.is::<StoreError>()
        || err.is::<CheckpointError>()
        || err.is::<QueueError>()
        || err.is::<WriteError>()
        || err.is::<RestoreError>()
        || err.is::<OpenError>()
        || err.is::<ddb_backup::readback::point_in_time::PointInTimeError>()
}

fn init_logging(verbose: u8) {
    // The AWS SDK's own warnings (a credential provider that found nothing, say) repeat what the
    // error says; they show from -v on.
    let default = match verbose {
        0 => "warn,aws_config=error,aws_smithy_runtime=error,aws_smithy_runtime_api=error",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let options = AwsOptions {
        region: cli.aws.region,
        endpoint_url: cli.aws.endpoint_url,
        profile: cli.aws.profile,
        ..settings.aws.clone()
    };
    match cli.command {
        Command::Backup(args) => backup(args, &settings, &options).await,
        Command::Verify(args) => verify(args, &settings, &options).await,
        Command::Restore(args) => recovery::restore(args, &settings, &options).await,
        Command::Changes(args) => recovery::changes(args, &settings, &options).await,
        Command::Seed(args) => seed(args, &options).await,
        Command::Enqueue(args) => enqueue(args, &settings, &options).await,
        Command::List(args) => list(args, &settings, &options).await,
        Command::Serve(args) => serve(args, &settings, &options).await,
    }
}

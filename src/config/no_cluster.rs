//! `--cluster` and the options that need it, in a build without the
//! cluster (cargo feature "cluster"): read, to be refused with a word on
//! why, as a build without TLS refuses `--tls-*`. The build with it reads
//! them in `cluster.rs`.

use super::model::{ClusterOptions, Command};
use super::options;
use super::parse::raw_value;

/// Why a cluster option is refused by a build without the cluster.
const NOT_BUILT: &str = "but this monoloop was built without it (cargo feature \"cluster\")";

/// Refuses any cluster option given to a relay; `None` otherwise. (For
/// another mode they are left over, and refused as misplaced.)
pub(super) fn cluster_options(
    args: &mut pico_args::Arguments,
    command: Command,
) -> Result<Option<ClusterOptions>, String> {
    if !options::takes(command, "--cluster") {
        return Ok(None);
    }
    for option in options::CLUSTER {
        if !matches!(raw_value(args, option), Ok(None)) {
            return Err(format!("{option} needs the cluster, {NOT_BUILT}"));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::super::parse::tests::run;

    #[test]
    fn every_cluster_option_is_refused_with_the_reason() {
        for args in [
            &["chat", "--cluster", "redis://:secret@h"][..],
            &["broadcast", "--cluster-prefix", "app"],
            &["chat", "--cluster-outbox"],
        ] {
            let option = args[1];
            assert_eq!(
                run(args).unwrap_err().problem,
                format!(
                    "{option} needs the cluster, but this monoloop was built without it \
                     (cargo feature \"cluster\")"
                )
            );
        }
        assert_eq!(
            run(&["echo", "--cluster", "redis://h"])
                .unwrap_err()
                .problem,
            "echo does not use --cluster (broadcast and chat do)"
        );
    }
}

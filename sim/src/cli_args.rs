//! The ranges of `memfabric`'s numeric command-line flags, one place for all
//! commands (`run`, `check`, `bench`, `profile`, `trace gen`): each flag is
//! parsed by a clap value parser defined here, so an out-of-range value is
//! refused before any work with the flag's name and the allowed range (exit
//! code 2), and the same quantity obeys the same bound everywhere (a VM
//! count in `bench --vms` is bounded like a scenario's `count`).

use clap::builder::{RangedU64ValueParser, TypedValueParser};
use memfabric_migration::units::{Bytes, Nanos};

/// `bench --vms`: 1 ..= [`crate::scenario::VMS_MAX`] VMs per size.
pub fn vm_count() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..=crate::scenario::VMS_MAX)
}

/// Most repeats of one measurement (`bench --repeat`).
pub const REPEAT_MAX: u64 = 1000;

/// `bench --repeat`: 1 ..= [`REPEAT_MAX`].
pub fn repeat() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..=REPEAT_MAX)
}

/// Longest minimum time per measurement repeat (`profile --min-ms`): 10 min.
pub const MIN_MS_MAX: u64 = 600_000;

/// `profile --min-ms`: 1 ..= [`MIN_MS_MAX`] ms.
pub fn min_ms() -> RangedU64ValueParser<u64> {
    RangedU64ValueParser::new().range(1..=MIN_MS_MAX)
}

/// `trace gen --memory`: a whole number of 4 KiB pages, 4 KiB ..= 64 GiB.
pub fn trace_memory() -> impl TypedValueParser<Value = Bytes> {
    clap::builder::StringValueParser::new().try_map(|s| {
        let b = Bytes::parse(&s).map_err(|e| e.to_string())?;
        let page = crate::trace::PAGE_SIZE;
        if b.0 == 0 || b.0 % page != 0 || b.0 > crate::trace::gen::MEMORY_BYTES_MAX {
            return Err(format!(
                "{s:?} is out of range: expected a whole number of 4 KiB pages between 4KiB and {}",
                Bytes(crate::trace::gen::MEMORY_BYTES_MAX)
            ));
        }
        Ok(b)
    })
}

/// `trace gen --duration` and `--epoch`: a positive duration.
pub fn positive_duration() -> impl TypedValueParser<Value = Nanos> {
    clap::builder::StringValueParser::new().try_map(|s| {
        let n = Nanos::parse(&s).map_err(|e| e.to_string())?;
        if n.0 == 0 {
            return Err(format!("{s:?} must be positive"));
        }
        Ok(n)
    })
}

/// `trace gen --archetype`: one of the archetype names.
pub fn archetype() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(crate::workload::archetype::NAMES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Probe {
        #[arg(long, value_parser = vm_count())]
        vms: Option<usize>,
        #[arg(long, value_parser = repeat())]
        repeat: Option<usize>,
        #[arg(long, value_parser = trace_memory())]
        memory: Option<Bytes>,
        #[arg(long, value_parser = positive_duration())]
        epoch: Option<Nanos>,
    }

    fn parse(args: &[&str]) -> Result<Probe, String> {
        Probe::try_parse_from(std::iter::once("probe").chain(args.iter().copied())).map_err(|e| e.to_string())
    }

    #[test]
    fn bounds_are_inclusive_and_named() {
        assert_eq!(parse(&["--vms", "1"]).unwrap().vms, Some(1));
        assert_eq!(parse(&["--vms", &crate::scenario::VMS_MAX.to_string()]).unwrap().vms, Some(crate::scenario::VMS_MAX as usize));
        for bad in [vec!["--vms", "0"], vec!["--vms", &format!("{}", crate::scenario::VMS_MAX + 1)], vec!["--repeat", "0"]] {
            let e = parse(&bad).unwrap_err();
            assert!(e.contains(bad[0]), "{e}");
        }
        assert_eq!(parse(&["--memory", "64GiB"]).unwrap().memory, Some(Bytes(64 << 30)));
        for bad in ["1TiB", "0B", "4097B", "lots"] {
            let e = parse(&["--memory", bad]).unwrap_err();
            assert!(e.contains("--memory"), "{e}");
        }
        assert!(parse(&["--epoch", "0s"]).unwrap_err().contains("must be positive"));
        assert_eq!(parse(&["--epoch", "1s"]).unwrap().epoch, Some(Nanos(1_000_000_000)));
    }
}

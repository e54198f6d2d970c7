//! Byte sizes as messages show them ([`human`]), and how much memory this
//! process may use ([`usable_memory`]), from which the memory budget and
//! ONNX Runtime's cap take their defaults.

/// `bytes` for messages, rounded up so a size over a limit never reads as
/// equal to it: `100 bytes`, `59.3 KiB`, `256 MiB`, `882.9 MiB`, `3 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    let Some(&(unit, size)) = UNITS.iter().find(|(_, size)| bytes >= *size) else {
        return format!("{bytes} bytes");
    };
    if bytes.is_multiple_of(size) {
        return format!("{} {unit}", bytes / size);
    }
    let tenths = (u128::from(bytes) * 10).div_ceil(u128::from(size));
    match tenths % 10 {
        0 => format!("{} {unit}", tenths / 10),
        tenth => format!("{}.{tenth} {unit}", tenths / 10),
    }
}

/// The memory this process may use: the machine's (`MemTotal`), or the
/// cgroup's limit when that is lower. `None` when neither can be read.
pub fn usable_memory() -> Option<u64> {
    [cgroup_limit(), machine_memory()]
        .into_iter()
        .flatten()
        .min()
}

fn cgroup_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|path| std::fs::read_to_string(path).ok())
    .filter_map(|text| text.trim().parse::<u64>().ok())
    // v1 reports "no limit" as a huge page-rounded number.
    .find(|&limit| limit < 1 << 60)
}

/// `MemTotal` from `/proc/meminfo`.
fn machine_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_the_largest_whole_unit_and_round_up() {
        assert_eq!(human(100), "100 bytes");
        assert_eq!(human(602_112), "588 KiB");
        assert_eq!(human(256 << 20), "256 MiB");
        assert_eq!(human((1 << 20) + 1), "1.1 MiB");
        assert_eq!(human(3 << 30), "3 GiB");
        assert_eq!(human((5 << 30) / 2), "2.5 GiB");
        assert_eq!(human(u64::MAX), "16777216 TiB");
    }

    #[test]
    fn this_machine_has_usable_memory() {
        assert!(usable_memory().is_some_and(|bytes| bytes > 64 << 20));
    }
}

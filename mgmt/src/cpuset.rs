//! Sets of host CPUs as libvirt writes them: the cpuset text of `<vcpupin cpuset='0-3,^2'/>`
//! and virsh, and the cpumap bitmaps of the wire protocol (bit `n % 8` of byte `n / 8` is
//! host CPU `n`).

use std::collections::BTreeSet;
use std::fmt;

/// Highest host CPU number accepted (the kernel's default CPU_SETSIZE is 1024).
pub const MAX_CPU: usize = 1023;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuSet(BTreeSet<usize>);

impl CpuSet {
    pub fn new() -> CpuSet {
        CpuSet::default()
    }

    pub fn single(cpu: usize) -> CpuSet {
        CpuSet(BTreeSet::from([cpu]))
    }

    /// Parses `0-3,^2,5`: numbers and ranges, and `^N` to leave a CPU out again.
    pub fn parse(text: &str) -> Result<CpuSet, String> {
        let bad = |why: &str| format!("'{text}' is not a CPU list like 0-3,^2 ({why})");
        let number = |s: &str| -> Result<usize, String> {
            let n: usize = s.trim().parse().map_err(|_| bad(&format!("'{s}'")))?;
            if n > MAX_CPU {
                return Err(bad(&format!("CPU {n} is above {MAX_CPU}")));
            }
            Ok(n)
        };
        let mut set = BTreeSet::new();
        let mut excluded = BTreeSet::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(bad("empty item"));
            }
            if let Some(cpu) = part.strip_prefix('^') {
                excluded.insert(number(cpu)?);
            } else if let Some((low, high)) = part.split_once('-') {
                let (low, high) = (number(low)?, number(high)?);
                if low > high {
                    return Err(bad(&format!("range {low}-{high} runs backwards")));
                }
                set.extend(low..=high);
            } else {
                set.insert(number(part)?);
            }
        }
        let set: BTreeSet<usize> = set.difference(&excluded).copied().collect();
        if set.is_empty() {
            return Err(bad("no CPU left"));
        }
        Ok(CpuSet(set))
    }

    /// The set a cpumap bitmap names.
    pub fn from_map(map: &[u8]) -> CpuSet {
        let mut set = BTreeSet::new();
        for (byte_index, byte) in map.iter().enumerate() {
            for bit in 0..8 {
                if byte & (1 << bit) != 0 {
                    set.insert(byte_index * 8 + bit);
                }
            }
        }
        CpuSet(set)
    }

    /// This set as a cpumap of `maplen` bytes; CPUs that do not fit are left out, as libvirt
    /// does when a client asks for a shorter map.
    pub fn to_map(&self, maplen: usize) -> Vec<u8> {
        let mut map = vec![0u8; maplen];
        for &cpu in self.0.range(..maplen.saturating_mul(8)) {
            map[cpu / 8] |= 1 << (cpu % 8);
        }
        map
    }

    pub fn insert(&mut self, cpu: usize) {
        self.0.insert(cpu);
    }

    pub fn contains(&self, cpu: usize) -> bool {
        self.0.contains(&cpu)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn first(&self) -> Option<usize> {
        self.0.first().copied()
    }

    pub fn last(&self) -> Option<usize> {
        self.0.last().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().copied()
    }

    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The CPUs of this set that `other` lacks.
    pub fn difference(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.difference(&other.0).copied().collect())
    }

    /// The `n`th CPU of the set, counting round and round.
    pub fn nth_cyclic(&self, n: usize) -> Option<usize> {
        if self.0.is_empty() {
            return None;
        }
        self.0.iter().nth(n % self.0.len()).copied()
    }
}

impl FromIterator<usize> for CpuSet {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> CpuSet {
        CpuSet(iter.into_iter().collect())
    }
}

/// Ranges, the way virsh prints them: `0-2,5`.
impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cpus = self.0.iter().copied().peekable();
        let mut first = true;
        while let Some(low) = cpus.next() {
            let mut high = low;
            while cpus.peek() == Some(&(high + 1)) {
                high += 1;
                cpus.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if high == low {
                write!(f, "{low}")?;
            } else {
                write!(f, "{low}-{high}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libvirt_cpusets() {
        let set = CpuSet::parse("0-3,^2,7").unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 1, 3, 7]);
        assert_eq!(set.to_string(), "0-1,3,7");
        assert_eq!(CpuSet::parse(" 5 ").unwrap(), CpuSet::single(5));
        for bad in ["", "a", "1,", "3-1", "^1", "0,^0", "1024", "-1", "1-x"] {
            assert!(CpuSet::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cpumaps_round_trip_and_truncate() {
        let set = CpuSet::parse("0,9,15").unwrap();
        assert_eq!(set.to_map(2), vec![0b0000_0001, 0b1000_0010]);
        assert_eq!(CpuSet::from_map(&set.to_map(2)), set);
        assert_eq!(set.to_map(1), vec![1]);
        assert_eq!(set.to_map(0), Vec::<u8>::new());
    }

    #[test]
    fn cycles_through_its_cpus() {
        let set = CpuSet::parse("2,4").unwrap();
        let picks: Vec<_> = (0..4).map(|i| set.nth_cyclic(i).unwrap()).collect();
        assert_eq!(picks, vec![2, 4, 2, 4]);
        assert_eq!(CpuSet::new().nth_cyclic(0), None);
    }
}

//! Wall-clock time as the protocol and the state files state it, and the
//! kernel's clock tick that `/proc` times are counted in.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the clock is before it.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `sysconf(_SC_CLK_TCK)` without libc: the kernel passes it to every
/// process in the aux vector as `AT_CLKTCK`. 100 on every mainstream Linux,
/// which is also the fallback.
pub fn ticks_per_sec() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| {
        const AT_CLKTCK: usize = 17;
        let word = std::mem::size_of::<usize>();
        let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
            return 100;
        };
        let read_word = |b: &[u8]| b.try_into().ok().map(usize::from_ne_bytes);
        auxv.chunks_exact(2 * word)
            .find(|pair| read_word(&pair[..word]) == Some(AT_CLKTCK))
            .and_then(|pair| read_word(&pair[word..]))
            .map(|hz| hz as u64)
            .filter(|hz| *hz > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_tick_is_read_from_the_aux_vector() {
        assert!(super::ticks_per_sec() >= 100);
    }
}

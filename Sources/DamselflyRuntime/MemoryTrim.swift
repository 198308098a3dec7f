import Glibc

/// Gives back to the kernel memory the process holds but does not use (issue 20).
///
/// A queue server's RSS is watched for leaks; memory that is free but still
/// resident looks like one. The hour soak found two such kinds: the pages of
/// each io_uring loop's receive pool (256 buffers of 16 KB, handed out round
/// robin by the kernel, so every page a burst ever wrote stays resident: up to
/// 4 MB per thread, creeping up over an hour) and free chunks inside glibc's
/// malloc arenas, which `free` returns only from the top of a heap.
/// ``EventLoop/releaseIdlePages()`` handles the first, ``trimHeap()`` the second;
/// the server calls them every `--mem_release_interval` seconds.
public enum MemoryTrim {
    private typealias TrimFunction = @convention(c) (Int) -> Int32
    private typealias OptionFunction = @convention(c) (Int32, Int32) -> Int32

    /// glibc's `malloc_trim`, looked up once: `<malloc.h>` is not part of
    /// Swift's Glibc module. Nil on a libc without it (then trimming is a no-op).
    private static let mallocTrim: TrimFunction? =
        dlsym(nil, "malloc_trim").map { unsafeBitCast($0, to: TrimFunction.self) }

    /// glibc's `mallopt`, looked up the same way.
    private static let mallocOption: OptionFunction? =
        dlsym(nil, "mallopt").map { unsafeBitCast($0, to: OptionFunction.self) }

    /// `<malloc.h>`'s `M_TRIM_THRESHOLD` and `M_MMAP_THRESHOLD`.
    private static let trimThresholdOption: Int32 = -1
    private static let mmapThresholdOption: Int32 = -3

    /// The mmap threshold ``pinThresholds()`` holds: the most glibc's own
    /// raise reaches on 64-bit (`DEFAULT_MMAP_THRESHOLD_MAX`), so values and
    /// buffers up to 32 MiB come from the arenas as they do once glibc has
    /// raised it, without a fresh mapping (and its page faults) each time.
    public static let pinnedMmapThreshold: Int32 = 32 * 1024 * 1024

    /// The trim threshold it holds: glibc's starting value.
    public static let pinnedTrimThreshold: Int32 = 128 * 1024

    /// Holds glibc's trim threshold at its starting 128 KiB.
    ///
    /// Left alone, glibc raises its trim threshold to twice any large mmapped
    /// chunk it frees (a connection's receive buffer after a big pipeline:
    /// several MB), and a thread's arena then keeps a free top of up to that
    /// size resident. `malloc_trim` does not reach the top of a thread's
    /// arena (it trims the main heap's top and the free chunks in the bins),
    /// so after a burst the periodic release now and then left 5-12 MB
    /// behind (the flaky `test_burst_memory_goes_back`). With the trim
    /// threshold held, an arena's top is cut back when a free leaves it above
    /// 128 KiB, and what `malloc_trim` cannot reach is at most that per arena.
    ///
    /// Setting either threshold ends glibc's raise of both, so the mmap
    /// threshold is set too, to the value the raise would reach: held at its
    /// starting 128 KiB, every large value would be a mapping of its own,
    /// made and unmapped per write (3 times the CPU per 200 KB `SET` here).
    /// Call it once, before the loops start. Returns whether glibc took both.
    @discardableResult
    public static func pinThresholds() -> Bool {
        guard let mallocOption else { return false }
        let mmap = mallocOption(mmapThresholdOption, pinnedMmapThreshold)
        let trim = mallocOption(trimThresholdOption, pinnedTrimThreshold)
        return mmap == 1 && trim == 1
    }

    /// Returns the free pages of every malloc arena to the kernel (`malloc_trim(0)`:
    /// the top of each heap and whole free pages inside it). It locks one arena
    /// at a time while it walks its free lists; its cost grows with the number
    /// of free chunks, not with the memory in use. Returns whether anything was released.
    @discardableResult
    public static func trimHeap() -> Bool {
        (mallocTrim?(0) ?? 0) != 0
    }
}

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

    /// glibc's `malloc_trim`, looked up once: `<malloc.h>` is not part of
    /// Swift's Glibc module. Nil on a libc without it (then trimming is a no-op).
    private static let mallocTrim: TrimFunction? =
        dlsym(nil, "malloc_trim").map { unsafeBitCast($0, to: TrimFunction.self) }

    /// Returns the free pages of every malloc arena to the kernel (`malloc_trim(0)`:
    /// the top of each heap and whole free pages inside it). It locks one arena
    /// at a time while it walks its free lists; its cost grows with the number
    /// of free chunks, not with the memory in use. Returns whether anything was released.
    @discardableResult
    public static func trimHeap() -> Bool {
        (mallocTrim?(0) ?? 0) != 0
    }
}

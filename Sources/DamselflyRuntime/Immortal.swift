import CDamselfly

/// Objects that live as long as the process and are shared by every loop
/// thread (the server, its loops, shards and command table).
///
/// Every retain and release of an object is an atomic write to its
/// reference count, so two threads that both pass a shared object around
/// take turns owning the cache line that holds the count: a cache miss per
/// retain where one thread alone would hit. An immortal object's count is
/// only read: the Swift runtime skips the write for it. The price is that
/// such an object is never freed, so only the server that `damselfly`'s
/// main runs for the whole process uses this (tests' servers come and go).
public enum Immortal {
    /// Marks `object` immortal; call before other threads can see it.
    @inline(__always)
    public static func make<Object: AnyObject>(_ object: Object) {
        _swift_stdlib_immortalize(Unmanaged.passUnretained(object).toOpaque())
    }
}

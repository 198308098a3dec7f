import Synchronization

/// The encoding thresholds Redis lets CONFIG SET change at runtime
/// (`hash-max-listpack-*`, `zset-max-listpack-*`, `set-max-intset-entries`,
/// `hll-sparse-max-bytes`, `stream-node-max-*` and the `ziplist` aliases). Process-wide, like Redis's `server.*` fields: the
/// value types read them on every insertion that may convert an encoding, so
/// they are relaxed atomics (one load, no lock). A change applies to the next
/// conversion check; values already converted stay converted, as in Redis.
public enum EncodingLimits {
    public static let hashMaxListpackEntries = Atomic<Int>(512)
    public static let hashMaxListpackValue = Atomic<Int>(64)
    public static let zsetMaxListpackEntries = Atomic<Int>(128)
    public static let zsetMaxListpackValue = Atomic<Int>(64)
    public static let setMaxIntsetEntries = Atomic<Int>(512)
    /// `hll-sparse-max-bytes`: a sparse HyperLogLog that would grow past this turns dense.
    public static let hllSparseMaxBytes = Atomic<Int>(3000)
    /// `stream-node-max-entries` (0: no limit) and `stream-node-max-bytes`
    /// (0: Redis's 1 GiB cap): where a stream starts a new node.
    public static let streamNodeMaxEntries = Atomic<Int>(100)
    public static let streamNodeMaxBytes = Atomic<Int>(4096)
}

import CDamselfly

/// The hash that places keys on shards and in tables: XXH64 (seed 0) of the key bytes.
///
/// One hash serves both purposes so a command computes it once on the connection thread, uses its
/// high bits to pick the shard and hands the full value to the owning shard, whose table uses the
/// low bits for the bucket. Keeping the two bit ranges apart keeps each shard's buckets evenly
/// filled even though all its keys share the same shard residue.
public enum KeyHash {
    /// XXH64 with seed 0 of the key bytes; an empty key is hashed as zero bytes.
    @inlinable
    public static func hash(_ key: UnsafeRawBufferPointer) -> UInt64 {
        dfly_xxh64(key.baseAddress, key.count, 0)
    }

    /// The part of the key that decides placement under Redis Cluster's hashtag rule: the bytes between
    /// the first `{` and the first `}` after it, when that range is non-empty; nil means "the whole key".
    @inlinable
    public static func hashtag(of key: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        let n = key.count
        var open = 0
        while open < n && key[open] != UInt8(ascii: "{") { open += 1 }
        if open >= n { return nil }
        var close = open + 1
        while close < n && key[close] != UInt8(ascii: "}") { close += 1 }
        if close >= n || close == open + 1 { return nil }
        return UnsafeRawBufferPointer(rebasing: key[(open + 1)..<close])
    }

    /// The hash that decides the shard: the tag's hash when hashtags lock placement and the key has a
    /// tag, so `{user}.a` and `{user}.b` live together and multi-key commands on them stay on one shard.
    @inlinable
    public static func placementHash(of key: UnsafeRawBufferPointer, hash: UInt64, lockOnHashtags: Bool) -> UInt64 {
        if lockOnHashtags, let tag = hashtag(of: key) {
            return Self.hash(tag)
        }
        return hash
    }

    /// The shard that owns `key`: `(placementHash >> 32) % shardCount`.
    ///
    /// The high half is used so that the table's bucket index (the low bits of `hash`) stays
    /// independent of the shard choice.
    @inlinable
    public static func shard(of key: UnsafeRawBufferPointer, hash: UInt64, shardCount: Int, lockOnHashtags: Bool) -> Int {
        if shardCount <= 1 { return 0 }
        let h = placementHash(of: key, hash: hash, lockOnHashtags: lockOnHashtags)
        return Int(truncatingIfNeeded: (h >> 32) % UInt64(truncatingIfNeeded: shardCount))
    }
}

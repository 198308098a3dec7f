/// The index of an entry in a `Database`'s slab. It stays valid while the table grows or shrinks
/// and until that key is removed, so a command can find a key once and then read and write it.
public typealias EntryIndex = Int32

/// One key of a `Database`, stored in the slab.
///
/// Entries never move: chains link them by slab index, so rehashing only rewrites `next` links.
/// A free slot has an empty key, `.int(0)` value and `ttlSlot == Entry.freeSlot`, and its `next`
/// links the free list.
@usableFromInline
struct Entry {
    /// The key bytes (owned; the only per-key allocation besides the value).
    @usableFromInline var key: [UInt8]
    @usableFromInline var value: StoredValue
    /// The full key hash: compared before the key bytes, and rehashing needs no key access.
    @usableFromInline var hash: UInt64
    /// Absolute expiry in unix ms; `Int64.max` when persistent so the liveness test is one compare.
    @usableFromInline var expireAt: Int64
    /// Next entry in the bucket chain (or in the free list); -1 ends it.
    @usableFromInline var next: Int32
    /// Position in the database's TTL index, `noTTL` when persistent, `freeSlot` when unused.
    @usableFromInline var ttlSlot: Int32
    /// Last access in unix seconds (OBJECT IDLETIME); seconds fit 32 bits until 2106.
    @usableFromInline var accessSeconds: UInt32

    @usableFromInline static var noTTL: Int32 { -1 }
    @usableFromInline static var freeSlot: Int32 { -2 }
    @usableFromInline static var persistent: Int64 { .max }

    @inlinable
    init(key: [UInt8], value: StoredValue, hash: UInt64, next: Int32, accessSeconds: UInt32) {
        self.key = key
        self.value = value
        self.hash = hash
        self.expireAt = Entry.persistent
        self.next = next
        self.ttlSlot = Entry.noTTL
        self.accessSeconds = accessSeconds
    }

    @inlinable
    var isFree: Bool { ttlSlot == Entry.freeSlot }
}

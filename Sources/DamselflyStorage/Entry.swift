#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The index of an entry in a `Database`'s slab. It stays valid while the table grows or shrinks
/// and until that key is removed, so a command can find a key once and then read and write it.
public typealias EntryIndex = Int32

/// The bytes of a key short enough to live in its entry (see `Entry.keyBytes`): a tuple because
/// Swift has no fixed-size array that lays out inline with alignment 1.
@usableFromInline
typealias InlineKeyBytes = (
    UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
    UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8
)

/// One key of a `Database`, stored in the slab: one 64-byte cache line (the slab is 64-byte
/// aligned), so a lookup that reaches the entry finds the hash, a short key's bytes, the expiry
/// and the chain link without a further cache miss.
///
/// Layout (`MemoryLayout<Entry>`: size 64, stride 64, alignment 8; checked by a unit test):
/// `hash` 0, `expireAt` 8, `value` 16 (9 bytes: a pointer or an Int64 and the enum tag),
/// `keyLength` 25, `keyBytes` 26 (26 bytes), `next` 52, `ttlSlot` 56, `accessSeconds` 60.
/// Keys of up to `inlineKeyCapacity` (26) bytes are stored in `keyBytes`: no allocation and no
/// pointer to follow. A longer key is one `malloc`ed block holding exactly its bytes, whose
/// address and length are stored in `keyBytes` (`keyLength == heapKey`); the slab owns it and
/// the `Database` frees it when the key is removed (an `Entry` is never copied out of its slot
/// to outlive it).
///
/// Entries never move while live: chains link them by slab index, so rehashing only rewrites
/// `next` links. A free slot has an empty key, `.int(0)` value and `ttlSlot == Entry.freeSlot`,
/// and its `next` links the free list.
@usableFromInline
struct Entry {
    /// The full key hash: compared before the key bytes, and rehashing needs no key access.
    @usableFromInline var hash: UInt64
    /// Absolute expiry in unix ms; `Int64.max` when persistent so the liveness test is one compare.
    @usableFromInline var expireAt: Int64
    @usableFromInline var value: StoredValue
    /// The inline key's length (0...`inlineKeyCapacity`), or `heapKey`.
    @usableFromInline var keyLength: UInt8
    /// An inline key's bytes; for a heap key, its block's address (bytes 0-7) and length (8-15),
    /// unaligned.
    @usableFromInline var keyBytes: InlineKeyBytes
    /// Next entry in the bucket chain (or in the free list); -1 ends it.
    @usableFromInline var next: Int32
    /// Position in the database's TTL index, `noTTL` when persistent, `freeSlot` when unused.
    @usableFromInline var ttlSlot: Int32
    /// Last access in unix seconds (OBJECT IDLETIME); seconds fit 32 bits until 2106.
    @usableFromInline var accessSeconds: UInt32

    /// Where `value` lies in an entry: its payload's first word is its heap object's address.
    static let valueOffset = MemoryLayout<Entry>.offset(of: \Entry.value)!

    @usableFromInline static var noTTL: Int32 { -1 }
    @usableFromInline static var freeSlot: Int32 { -2 }
    @usableFromInline static var persistent: Int64 { .max }
    /// Longest key stored inline.
    @usableFromInline static var inlineKeyCapacity: Int { MemoryLayout<InlineKeyBytes>.size }
    /// `keyLength` of a key kept in its own heap block.
    @usableFromInline static var heapKey: UInt8 { .max }

    /// An entry without its key (`keyLength` 0): the slab stores it, then `EntrySlab.setKey` fills the key in place.
    @inlinable
    init(value: StoredValue, hash: UInt64, next: Int32, accessSeconds: UInt32) {
        self.hash = hash
        self.expireAt = Entry.persistent
        self.value = value
        self.keyLength = 0
        self.keyBytes = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        self.next = next
        self.ttlSlot = Entry.noTTL
        self.accessSeconds = accessSeconds
    }

    @inlinable
    var isFree: Bool { ttlSlot == Entry.freeSlot }

    /// Heap bytes of a key of `length` bytes: 0 inline, else glibc's chunk for a `malloc(length)`
    /// (8 bytes of header, rounded up to 16, at least 32), which is what the process really pays.
    @inlinable
    static func keyHeapBytes(length: Int) -> Int {
        length <= inlineKeyCapacity ? 0 : max(32, (length + 8 + 15) & ~15)
    }
}

/// The `Database`'s slab of entries: a 64-byte-aligned block it owns and indexes by `EntryIndex`.
///
/// A plain pointer rather than a `ContiguousArray`: element access needs no bounds, uniqueness
/// or exclusivity check and no retain of the array's storage, and the alignment puts every entry
/// in one cache line. Growth doubles the capacity (moving the entries, which is safe: the key
/// bytes of an inline key move with their entry, and nothing outside the `Database` keeps an
/// address into the slab beyond a `withKey` call). The owner must call `deallocate` once.
@usableFromInline
struct EntrySlab {
    @usableFromInline var base: UnsafeMutablePointer<Entry>?
    @usableFromInline var count: Int = 0
    @usableFromInline var capacity: Int = 0

    @usableFromInline static var alignment: Int { 64 }

    @inlinable
    init() {}

    @inlinable
    var isEmpty: Bool { count == 0 }

    @inlinable
    subscript(index: Int) -> Entry {
        unsafeAddress {
            assert(index >= 0 && index < count, "slab index out of range")
            return UnsafePointer(base.unsafelyUnwrapped + index)
        }
        nonmutating unsafeMutableAddress {
            assert(index >= 0 && index < count, "slab index out of range")
            return base.unsafelyUnwrapped + index
        }
    }

    /// Appends an entry, doubling the block when full.
    @inlinable
    mutating func append(_ entry: Entry) {
        if count == capacity { grow() }
        (base.unsafelyUnwrapped + count).initialize(to: entry)
        count += 1
    }

    @usableFromInline
    mutating func grow() {
        let newCapacity = Swift.max(16, capacity * 2)
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: newCapacity * MemoryLayout<Entry>.stride, alignment: EntrySlab.alignment)
        let block = raw.bindMemory(to: Entry.self, capacity: newCapacity)
        if let base {
            block.moveInitialize(from: base, count: count)
            UnsafeMutableRawPointer(base).deallocate()
        }
        base = block
        capacity = newCapacity
    }

    /// Drops every entry (freeing heap keys), keeping the block when `keepingCapacity`.
    @usableFromInline
    mutating func removeAll(keepingCapacity: Bool) {
        guard let base else { return }
        for i in 0..<count { EntrySlab.freeKey(base + i) }
        base.deinitialize(count: count)
        count = 0
        if !keepingCapacity {
            UnsafeMutableRawPointer(base).deallocate()
            self.base = nil
            capacity = 0
        }
    }

    /// Frees everything; the slab is empty afterwards.
    @usableFromInline
    mutating func deallocate() { removeAll(keepingCapacity: false) }

    // MARK: Keys

    /// Stores `key` in the entry at `slot`, whose key is empty: inline when it fits, else in a
    /// new heap block of exactly its length.
    @inlinable
    func setKey(_ key: UnsafeRawBufferPointer, at slot: Int) {
        let entry = base.unsafelyUnwrapped + slot
        let n = key.count
        withUnsafeMutableBytes(of: &entry.pointee.keyBytes) { inline in
            if n <= Entry.inlineKeyCapacity {
                if n > 0 { inline.baseAddress!.copyMemory(from: key.baseAddress!, byteCount: n) }
            } else {
                let block = malloc(n)!
                block.copyMemory(from: key.baseAddress!, byteCount: n)
                inline.storeBytes(of: UInt(bitPattern: block), toByteOffset: 0, as: UInt.self)
                inline.storeBytes(of: UInt64(n), toByteOffset: 8, as: UInt64.self)
            }
        }
        entry.pointee.keyLength = n <= Entry.inlineKeyCapacity ? UInt8(truncatingIfNeeded: n) : Entry.heapKey
    }

    /// Calls `body` with the key bytes of the entry at `slot`, in place (valid only during the call).
    @inlinable
    func withKey<R>(at slot: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try EntrySlab.withKey(of: base.unsafelyUnwrapped + slot, body)
    }

    @inlinable
    static func withKey<R>(of entry: UnsafeMutablePointer<Entry>, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let length = entry.pointee.keyLength
        return try withUnsafeBytes(of: &entry.pointee.keyBytes) { inline in
            if length != Entry.heapKey {
                return try body(UnsafeRawBufferPointer(rebasing: inline[0..<Int(length)]))
            }
            let block = UnsafeRawPointer(bitPattern: inline.loadUnaligned(fromByteOffset: 0, as: UInt.self))
            let n = Int(inline.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            return try body(UnsafeRawBufferPointer(start: block, count: n))
        }
    }

    /// Whether the entry at `slot` holds exactly the bytes of `key` (length first, then `memcmp`).
    @inlinable
    func keyEquals(at slot: Int, _ key: UnsafeRawBufferPointer) -> Bool {
        EntrySlab.withKey(of: base.unsafelyUnwrapped + slot) { stored in
            stored.count == key.count && (key.count == 0 || memcmp(stored.baseAddress!, key.baseAddress!, key.count) == 0)
        }
    }

    /// The key's length in bytes.
    @inlinable
    func keyCount(at slot: Int) -> Int {
        withKey(at: slot) { $0.count }
    }

    /// Frees the entry's heap key, if it has one, and leaves its key empty.
    @inlinable
    static func freeKey(_ entry: UnsafeMutablePointer<Entry>) {
        if entry.pointee.keyLength == Entry.heapKey {
            let address = withUnsafeBytes(of: &entry.pointee.keyBytes) { $0.loadUnaligned(fromByteOffset: 0, as: UInt.self) }
            free(UnsafeMutableRawPointer(bitPattern: address))
        }
        entry.pointee.keyLength = 0
    }
}

@testable import DamselflyStorage

/// Calls `body` with the UTF-8 bytes of `s`.
func withBytes<R>(_ s: String, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    let bytes = Array(s.utf8)
    return try bytes.withUnsafeBytes(body)
}

extension Database {
    func find(_ key: String, nowMs: Int64 = 0) -> EntryIndex? {
        withBytes(key) { find($0, hash: KeyHash.hash($0), nowMs: nowMs) }
    }

    @discardableResult
    func insert(_ key: String, _ value: String, expireAtMs: Int64? = nil) -> EntryIndex {
        withBytes(key) { k in
            withBytes(value) { v in
                insert(k, hash: KeyHash.hash(k), value: .string(v), expireAtMs: expireAtMs)
            }
        }
    }

    @discardableResult
    func remove(_ key: String, nowMs: Int64 = 0) -> Bool {
        withBytes(key) { remove($0, hash: KeyHash.hash($0), nowMs: nowMs) }
    }

    func keyString(at index: EntryIndex) -> String {
        String(decoding: key(at: index), as: UTF8.self)
    }

    func valueString(at index: EntryIndex) -> String {
        value(at: index).withStringBytes { String(decoding: $0, as: UTF8.self) }
    }
}

/// A deterministic generator so failures reproduce.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

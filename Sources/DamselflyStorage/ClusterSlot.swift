/// Redis Cluster's hash slot of a key: CRC16 (XMODEM: polynomial 0x1021, initial value 0, no
/// reflection) of the key's hashtag, or of the whole key when it has none, modulo 16,384.
///
/// Damselfly places keys on shards with ``KeyHash`` (XXH64), not by slot; the slot only answers
/// what cluster clients ask (`CLUSTER KEYSLOT`, `COUNTKEYSINSLOT`, `GETKEYSINSLOT`) under
/// `--cluster_mode=emulated`, so it must be exactly Redis's for clients to route as they would.
public enum ClusterSlot {
    /// Slots in a Redis cluster.
    public static let count = 16_384

    /// The slot of `key` under Redis's hashtag rule (``KeyHash/hashtag(of:)``).
    public static func slot(of key: UnsafeRawBufferPointer) -> Int {
        Int(crc16(KeyHash.hashtag(of: key) ?? key) & UInt16(count - 1))
    }

    /// The slot of `key`.
    public static func slot(of key: [UInt8]) -> Int {
        key.withUnsafeBytes { slot(of: $0) }
    }

    /// CRC16-XMODEM of `bytes`, one table look-up per byte.
    public static func crc16(_ bytes: UnsafeRawBufferPointer) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int((crc >> 8) ^ UInt16(byte))]
        }
        return crc
    }

    /// The CRC of each byte value shifted through the polynomial eight times.
    private static let table: [UInt16] = (0..<256).map { value in
        var crc = UInt16(value) << 8
        for _ in 0..<8 {
            crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
        }
        return crc
    }
}

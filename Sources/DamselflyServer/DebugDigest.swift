import DamselflyACL
import DamselflyPersistence
import DamselflyStorage
import DamselflyTransactions

/// DEBUG DIGEST and DIGEST-VALUE: a 160-bit summary of the dataset (or of single values)
/// built the way Redis builds its own, so that the suite's before/after comparisons mean the
/// same here: equal datasets give equal digests whatever their encodings and iteration
/// orders, and any change to a key, a value, a database or the presence of a TTL changes it.
///
/// The shape follows Redis's debug.c: `mix` chains (order matters: list elements, the
/// database id before its keys), `xor` folds in what has no order (a set's members, the keys
/// of a database, so shards can compute their parts alone and the parts combine). The hash
/// is SHA-256 cut to 20 bytes instead of SHA-1, so the hex is never bit-equal to Redis's;
/// only comparisons between digests of the same server are meaningful (docs/compatibility.md).
enum DebugDigest {
    typealias Digest = [UInt8]

    static let zero = Digest(repeating: 0, count: 20)

    /// `digest = H(digest ‖ data)`.
    static func mix(_ digest: inout Digest, _ data: [UInt8]) {
        digest = Array(SHA256.digest(digest + data).prefix(20))
    }

    /// `digest ^= H(data)`.
    static func xor(_ digest: inout Digest, _ data: [UInt8]) {
        let h = SHA256.digest(data)
        for i in 0..<20 { digest[i] ^= h[i] }
    }

    static func xor(_ digest: inout Digest, digest other: Digest) {
        for i in 0..<20 { digest[i] ^= other[i] }
    }

    static func hex(_ digest: Digest) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(40)
        for b in digest {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// One value with its type (Redis's type numbers) and whether it has a TTL (only its
    /// presence: the digest must not change while time passes). Unordered members are
    /// hashed one by one and XORed, so a rehash or a conversion leaves the digest alone.
    static func valueDigest(_ value: StoredValue, hasExpiry: Bool) -> Digest {
        var digest = zero
        func element(_ parts: [UInt8]...) -> Digest {
            var d = zero
            for part in parts { mix(&d, part) }
            return d
        }
        switch value {
        case .int, .bytes, .raw:
            mix(&digest, [0])
            if case .string(let bytes) = RDBConversion.rdbValue(value) { mix(&digest, bytes) }
        case .list(let list):
            mix(&digest, [1])
            for item in list.elements { mix(&digest, item) }
        case .set(let set):
            mix(&digest, [2])
            for member in set.members { xor(&digest, digest: element(member)) }
        case .zset(let zset):
            mix(&digest, [3])
            for entry in zset.allEntries { xor(&digest, digest: element(entry.member, Array("\(entry.score)".utf8))) }
        case .hash(let hash):
            mix(&digest, [4])
            for (field, v) in hash.pairs { xor(&digest, digest: element(field, v)) }
        case .stream:
            // Entries, groups, consumers and pending lists as the dump writes them: the
            // stream's encoding is its only one, so equal streams dump equal bytes.
            mix(&digest, [6])
            mix(&digest, DumpPayload.encode(RDBConversion.rdbValue(value)))
        }
        if hasExpiry { xor(&digest, Array("!!expire!!".utf8)) }
        return digest
    }

    /// The digest of one key and its value, as it enters the database's XOR.
    static func entryDigest(key: [UInt8], value: StoredValue, hasExpiry: Bool) -> Digest {
        var digest = zero
        mix(&digest, key)
        xor(&digest, digest: valueDigest(value, hasExpiry: hasExpiry))
        return digest
    }

    /// One shard's part: per database, the XOR of its live keys' digests and their count.
    static func shardPart(_ shard: Shard, nowMs: Int64) -> [(Digest, Int)] {
        shard.keyspace.databases.map { db in
            var digest = zero
            var count = 0
            db.forEach(nowMs: nowMs) { index in
                xor(&digest, digest: entryDigest(
                    key: db.key(at: index), value: db.value(at: index), hasExpiry: db.expireTime(at: index) != nil))
                count += 1
            }
            return (digest, count)
        }
    }

    /// The dataset's digest from every shard's part: each non-empty database mixes in its
    /// number, then XORs in its keys. All zeros for an empty dataset, as Redis's.
    static func combine(_ parts: [[(Digest, Int)]]) -> Digest {
        var final = zero
        guard let databases = parts.first?.count else { return final }
        for db in 0..<databases {
            var keys = zero
            var count = 0
            for part in parts {
                xor(&keys, digest: part[db].0)
                count += part[db].1
            }
            guard count > 0 else { continue }
            mix(&final, Array(String(db).utf8))
            xor(&final, digest: keys)
        }
        return final
    }
}

/// An ordered map from stream IDs to values: a sorted pair of arrays. Group
/// and consumer PELs are this shape; appends (new deliveries carry growing
/// IDs) are O(1), lookups O(log n), a removal moves the tail.
public struct SortedIDMap<Value> {
    public private(set) var ids: ContiguousArray<StreamID> = []
    public private(set) var values: ContiguousArray<Value> = []

    public init() {}

    @inlinable public var count: Int { ids.count }
    @inlinable public var isEmpty: Bool { ids.isEmpty }

    /// Position of the first ID ≥ `id`.
    public func lowerBound(_ id: StreamID) -> Int {
        if let last = ids.last, last < id { return ids.count }
        var lo = 0, hi = ids.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ids[mid] < id { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    public func index(of id: StreamID) -> Int? {
        let i = lowerBound(id)
        return i < ids.count && ids[i] == id ? i : nil
    }

    public subscript(id: StreamID) -> Value? {
        index(of: id).map { values[$0] }
    }

    /// Inserts or replaces.
    public mutating func set(_ id: StreamID, _ value: Value) {
        let i = lowerBound(id)
        if i < ids.count && ids[i] == id {
            values[i] = value
        } else {
            ids.insert(id, at: i)
            values.insert(value, at: i)
        }
    }

    @discardableResult
    public mutating func remove(_ id: StreamID) -> Value? {
        guard let i = index(of: id) else { return nil }
        ids.remove(at: i)
        return values.remove(at: i)
    }

    public mutating func removeAll() {
        ids = []
        values = []
    }

    var heapBytes: Int {
        (ids.capacity == 0 ? 0 : 32 + ids.capacity * MemoryLayout<StreamID>.stride)
            + (values.capacity == 0 ? 0 : 32 + values.capacity * MemoryLayout<Value>.stride)
    }
}

/// A delivered, not yet acknowledged entry (Redis's `streamNACK`): shared
/// by the group's PEL and (by ID) its owner's PEL.
public final class StreamNACK {
    /// Nil only for a NACK XCLAIM FORCE has just made.
    public var consumer: StreamConsumer?
    public var deliveryTime: Int64
    public var deliveryCount: Int64

    public init(consumer: StreamConsumer?, deliveryTime: Int64, deliveryCount: Int64) {
        self.consumer = consumer
        self.deliveryTime = deliveryTime
        self.deliveryCount = deliveryCount
    }
}

/// A consumer of a group: its name, when it was last seen, and the IDs it
/// has pending (their NACKs live in the group's PEL).
public final class StreamConsumer {
    public let name: [UInt8]
    public var seenTime: Int64
    public var pel = SortedIDMap<Void>()

    public init(name: [UInt8], seenTime: Int64) {
        self.name = name
        self.seenTime = seenTime
    }
}

/// A consumer group: last delivered ID, read counter, PEL and consumers.
public final class StreamGroup {
    /// Redis's `SCG_INVALID_ENTRIES_READ`.
    public static let invalidEntriesRead: Int64 = -1

    public let name: [UInt8]
    public var lastID: StreamID
    public var entriesRead: Int64
    public var pel = SortedIDMap<StreamNACK>()
    /// Ordered by name.
    public private(set) var consumers: [StreamConsumer] = []

    public init(name: [UInt8], lastID: StreamID, entriesRead: Int64) {
        self.name = name
        self.lastID = lastID
        self.entriesRead = entriesRead
    }

    var memoryUsage: Int {
        var n = 96 + ByteArray.heapBytes(name) + pel.heapBytes + pel.count * 48 + consumers.capacity * 8
        for c in consumers { n += 64 + ByteArray.heapBytes(c.name) + c.pel.heapBytes }
        return n
    }

    func consumerIndex(_ name: [UInt8]) -> (Int, Bool) {
        var lo = 0, hi = consumers.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if consumers[mid].name.lexicographicallyPrecedes(name) { lo = mid + 1 } else { hi = mid }
        }
        return (lo, lo < consumers.count && consumers[lo].name == name)
    }

    public func consumer(_ name: [UInt8]) -> StreamConsumer? {
        let (i, found) = consumerIndex(name)
        return found ? consumers[i] : nil
    }

    /// The consumer named `name`, made when missing; whether it was made.
    @discardableResult
    public func findOrCreateConsumer(_ name: [UInt8], nowMs: Int64) -> (StreamConsumer, created: Bool) {
        let (i, found) = consumerIndex(name)
        if found { return (consumers[i], false) }
        let c = StreamConsumer(name: name, seenTime: nowMs)
        consumers.insert(c, at: i)
        return (c, true)
    }

    /// Deletes a consumer and its pending entries; how many it had pending,
    /// or nil when there was no such consumer.
    public func deleteConsumer(_ name: [UInt8]) -> Int? {
        let (i, found) = consumerIndex(name)
        guard found else { return nil }
        let c = consumers.remove(at: i)
        for id in c.pel.ids { pel.remove(id) }
        return c.pel.count
    }

    /// Moves the NACK of `id` to `consumer` (it may be unowned).
    func assign(_ nack: StreamNACK, _ id: StreamID, to consumer: StreamConsumer) {
        if nack.consumer === consumer { return }
        nack.consumer?.pel.remove(id)
        consumer.pel.set(id, ())
        nack.consumer = consumer
    }

    /// Drops the NACK of `id` from both PELs; whether there was one.
    @discardableResult
    func dropNACK(_ id: StreamID) -> Bool {
        guard let nack = pel.remove(id) else { return false }
        nack.consumer?.pel.remove(id)
        return true
    }

    func copy() -> StreamGroup {
        let g = StreamGroup(name: name, lastID: lastID, entriesRead: entriesRead)
        var byName: [[UInt8]: StreamConsumer] = [:]
        for c in consumers {
            let d = StreamConsumer(name: c.name, seenTime: c.seenTime)
            d.pel = c.pel
            g.consumers.append(d)
            byName[c.name] = d
        }
        for (i, id) in pel.ids.enumerated() {
            let n = pel.values[i]
            g.pel.set(id, StreamNACK(consumer: n.consumer.flatMap { byName[$0.name] }, deliveryTime: n.deliveryTime, deliveryCount: n.deliveryCount))
        }
        return g
    }
}

extension StreamValue {
    // MARK: - Groups

    func groupIndex(_ name: [UInt8]) -> (Int, Bool) {
        var lo = 0, hi = groups.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if groups[mid].name.lexicographicallyPrecedes(name) { lo = mid + 1 } else { hi = mid }
        }
        return (lo, lo < groups.count && groups[lo].name == name)
    }

    public func group(_ name: [UInt8]) -> StreamGroup? {
        let (i, found) = groupIndex(name)
        return found ? groups[i] : nil
    }

    /// XGROUP CREATE: false when the name is taken.
    @discardableResult
    public func createGroup(_ name: [UInt8], lastID: StreamID, entriesRead: Int64) -> StreamGroup? {
        let (i, found) = groupIndex(name)
        if found { return nil }
        let g = StreamGroup(name: name, lastID: lastID, entriesRead: entriesRead)
        groups.insert(g, at: i)
        return g
    }

    /// Adds a fully built group (RDB load).
    public func addGroup(_ group: StreamGroup) {
        let (i, found) = groupIndex(group.name)
        if found { groups[i] = group } else { groups.insert(group, at: i) }
    }

    public func destroyGroup(_ name: [UInt8]) -> Bool {
        let (i, found) = groupIndex(name)
        if found { groups.remove(at: i) }
        return found
    }

    // MARK: - Read counters and lag

    /// Whether the last XDEL tombstone lies within `start...end` (nil end:
    /// no upper bound), Redis's `streamRangeHasTombstones`.
    public func rangeHasTombstones(_ start: StreamID, _ end: StreamID? = nil) -> Bool {
        if count == 0 || maxDeletedID.isZero { return false }
        if firstID > maxDeletedID { return false }
        return start <= maxDeletedID && maxDeletedID <= (end ?? .max)
    }

    /// How many entries were added up to and including `id`, when that can
    /// be known (Redis's `streamEstimateDistanceFromFirstEverEntry`); nil
    /// when it cannot.
    public func entriesRead(upTo id: StreamID) -> Int64? {
        if entriesAdded == 0 { return 0 }
        if count == 0 && id <= lastID { return Int64(entriesAdded) }
        if id == lastID { return Int64(entriesAdded) }
        if id > lastID { return nil }
        if maxDeletedID.isZero || maxDeletedID < firstID {
            if id < firstID { return Int64(entriesAdded) - Int64(count) }
            if id == firstID { return Int64(entriesAdded) - Int64(count) + 1 }
        }
        return nil
    }

    /// A group's lag (XINFO), nil when it cannot be known.
    public func lag(_ group: StreamGroup) -> Int64? {
        if entriesAdded == 0 { return 0 }
        if group.entriesRead != StreamGroup.invalidEntriesRead && !rangeHasTombstones(group.lastID) {
            return Int64(entriesAdded) - group.entriesRead
        }
        return entriesRead(upTo: group.lastID).map { Int64(entriesAdded) - $0 }
    }

    /// The last live entry's ID, for XREAD's "anything new?" (0-0 when empty).
    public var lastValidID: StreamID { edgeID(last: true) ?? .zero }

    // MARK: - Delivering

    /// XREADGROUP with `>`: entries after the group's last delivered ID, at
    /// most `limit` (0: all), each added to the PELs unless `noAck`.
    public func deliverNew(_ group: StreamGroup, to consumer: StreamConsumer, limit: Int, noAck: Bool, nowMs: Int64) -> [Entry] {
        var out: [Entry] = []
        deliverNew(group, to: consumer, limit: limit, noAck: noAck, nowMs: nowMs, entry: { id, strings in
            out.append(Entry(id: id, fields: []))
            out[out.count - 1].fields.reserveCapacity(strings)
        }, string: { out[out.count - 1].fields.append(ByteArray.copy($0)) })
        return out
    }

    /// ``deliverNew(_:to:limit:noAck:nowMs:)`` with the entries read in place (see
    /// ``visitRange(_:_:limit:entry:string:)``); returns the delivered IDs.
    @discardableResult
    public func deliverNew(
        _ group: StreamGroup, to consumer: StreamConsumer, limit: Int, noAck: Bool, nowMs: Int64,
        entry: (StreamID, Int) -> Void, string: (UnsafeRawBufferPointer) -> Void
    ) -> [StreamID] {
        guard let start = group.lastID.successor else { return [] }
        var ids: [StreamID] = []
        visitRange(start, .max, limit: limit, entry: { id, strings in
            ids.append(id)
            entry(id, strings)
        }, string: string)
        for id in ids {
            if group.lastID < id {
                if group.entriesRead != StreamGroup.invalidEntriesRead && !rangeHasTombstones(id) {
                    group.entriesRead += 1
                } else if entriesAdded > 0 {
                    group.entriesRead = entriesRead(upTo: id) ?? StreamGroup.invalidEntriesRead
                }
                group.lastID = id
            }
            if noAck { continue }
            if let nack = group.pel[id] {
                // Already pending (XGROUP SETID moved the group back).
                group.assign(nack, id, to: consumer)
                nack.deliveryTime = nowMs
                nack.deliveryCount = 1
            } else {
                let nack = StreamNACK(consumer: consumer, deliveryTime: nowMs, deliveryCount: 1)
                group.pel.set(id, nack)
                consumer.pel.set(id, ())
            }
        }
        return ids
    }

    /// XREADGROUP with an explicit ID: the consumer's pending entries from
    /// `start` on, at most `limit` (0: all); a deleted entry comes back with
    /// nil fields. Each one served counts as delivered again.
    public func pendingHistory(_ group: StreamGroup, of consumer: StreamConsumer, from start: StreamID, limit: Int, nowMs: Int64)
        -> [(StreamID, [[UInt8]]?)]
    {
        var out: [(StreamID, [[UInt8]]?)] = []
        var i = consumer.pel.lowerBound(start)
        while i < consumer.pel.count && (limit == 0 || out.count < limit) {
            let id = consumer.pel.ids[i]
            if let e = entry(id) {
                if let nack = group.pel[id] {
                    nack.deliveryTime = nowMs
                    nack.deliveryCount += 1
                }
                out.append((id, e.fields))
            } else {
                out.append((id, nil))
            }
            i += 1
        }
        return out
    }

    /// XACK: how many of `ids` were pending and are now acknowledged.
    public func acknowledge(_ group: StreamGroup, _ ids: [StreamID]) -> Int {
        var n = 0
        for id in ids where group.dropNACK(id) { n += 1 }
        return n
    }

    // MARK: - Claiming

    /// XCLAIM's options.
    public struct ClaimOptions {
        public var minIdle: Int64 = 0
        /// Delivery time to set (already resolved from IDLE / TIME), or nil for now.
        public var deliveryTime: Int64? = nil
        public var retryCount: Int64? = nil
        public var force = false
        public var justID = false
        public init() {}
    }

    /// XCLAIM: gives the pending entries `ids` idle for at least `minIdle`
    /// to `consumerName`; returns the IDs claimed with their fields. NACKs
    /// of deleted entries are dropped.
    public func claim(_ group: StreamGroup, consumerName: [UInt8], ids: [StreamID], options: ClaimOptions, nowMs: Int64)
        -> [(StreamID, [[UInt8]]?)]
    {
        var out: [(StreamID, [[UInt8]]?)] = []
        var consumer: StreamConsumer? = nil
        let deliveryTime = options.deliveryTime ?? nowMs
        for id in ids {
            var nack = group.pel[id]
            guard let e = entry(id) else {
                if nack != nil { group.dropNACK(id) }
                continue
            }
            if options.force && nack == nil {
                let made = StreamNACK(consumer: nil, deliveryTime: nowMs, deliveryCount: 0)
                group.pel.set(id, made)
                nack = made
            }
            guard let nack else { continue }
            if nack.consumer != nil && options.minIdle > 0 && nowMs - nack.deliveryTime < options.minIdle { continue }
            let owner = consumer ?? group.findOrCreateConsumer(consumerName, nowMs: nowMs).0
            owner.seenTime = nowMs
            consumer = owner
            nack.deliveryTime = deliveryTime
            if let retry = options.retryCount {
                nack.deliveryCount = retry
            } else if !options.justID {
                nack.deliveryCount += 1
            }
            group.assign(nack, id, to: owner)
            out.append((id, options.justID ? nil : e.fields))
        }
        return out
    }

    /// XAUTOCLAIM's result: the cursor for the next call, what was claimed,
    /// and the IDs whose entries were gone (their NACKs dropped).
    public struct AutoClaim {
        public var cursor: StreamID
        public var claimed: [(StreamID, [[UInt8]]?)]
        public var deleted: [StreamID]
    }

    /// XAUTOCLAIM: walks the group's PEL from `start`, claiming at most
    /// `limit` entries idle for at least `minIdle`, looking at no more than
    /// ten times that many.
    public func autoClaim(_ group: StreamGroup, consumerName: [UInt8], minIdle: Int64, start: StreamID, limit: Int, justID: Bool, nowMs: Int64)
        -> AutoClaim
    {
        var result = AutoClaim(cursor: .zero, claimed: [], deleted: [])
        var attempts = limit * 10
        var remaining = limit
        var consumer: StreamConsumer? = nil
        var i = group.pel.lowerBound(start)
        while attempts > 0 && remaining > 0 && i < group.pel.count {
            attempts -= 1
            let id = group.pel.ids[i]
            let nack = group.pel.values[i]
            guard let e = entry(id) else {
                group.dropNACK(id)
                result.deleted.append(id)
                remaining -= 1
                continue  // `i` now points at the next one
            }
            i += 1
            if minIdle > 0 && nowMs - nack.deliveryTime < minIdle { continue }
            let owner = consumer ?? group.findOrCreateConsumer(consumerName, nowMs: nowMs).0
            owner.seenTime = nowMs
            consumer = owner
            nack.deliveryTime = nowMs
            if !justID { nack.deliveryCount += 1 }
            group.assign(nack, id, to: owner)
            result.claimed.append((id, justID ? nil : e.fields))
            remaining -= 1
        }
        if i < group.pel.count { result.cursor = group.pel.ids[i] }
        return result
    }
}

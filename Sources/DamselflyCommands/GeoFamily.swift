#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DamselflyRESP
import DamselflyStorage
import DamselflyTransactions

/// GEO commands: positions kept as sorted-set scores (``GeoHash``'s 52-bit
/// cells), searched by radius or box.
///
/// Where Redis's argument checks depend on the data (GEORADIUSBYMEMBER
/// parses its radius only when the key exists; FROMMEMBER fails with "could
/// not decode" at its place among the options), the connection's thread
/// parses twice, once as if the key existed and once as if it did not, and
/// the shard picks the outcome that matches what it holds, after looking up
/// the members the chosen outcome names. A STORE / STOREDIST destination
/// is written under the same transaction as the read (``CommandCall/runOnKeysTwoPhase``).
public enum GeoFamily {
    public static func register(_ r: CommandRegistry) {
        let g = "geo"
        r.register("geoadd", arity: -5, flags: [.write, .denyOOM], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: geoadd)
        r.register("geodist", arity: -4, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: geodist)
        r.register("geohash", arity: -2, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            positions(call) { score, _ in .bulk(GeoHash.hashString(ofScore: score)) } missing: { .null }
        }
        r.register("geopos", arity: -2, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let resp3 = call.client.protocolVersion >= 3
            positions(call) { score, _ in
                let (lon, lat) = GeoHash.position(ofScore: score)
                return .array([coordinate(lon, resp3: resp3), coordinate(lat, resp3: resp3)])
            } missing: { .nullArray }
        }
        let searches: [(String, Int, CommandFlags, Variant)] = [
            ("georadius", -6, [.write, .denyOOM], .radius),
            ("georadius_ro", -6, [.readonly], .radiusReadOnly),
            ("georadiusbymember", -5, [.write, .denyOOM], .member),
            ("georadiusbymember_ro", -5, [.readonly], .memberReadOnly),
            ("geosearch", -7, [.readonly], .search),
        ]
        for (name, arity, flags, variant) in searches {
            r.register(name, arity: arity, flags: flags, firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
                search(call, variant)
            }
        }
        r.register("geosearchstore", arity: -8, flags: [.write, .denyOOM], firstKey: 1, lastKey: 2, keyStep: 1, group: g) { call in
            search(call, .searchStore)
        }
    }

    // MARK: - Replies

    /// A coordinate as Redis's `addReplyHumanLongDouble` sends it: `%.17f`
    /// without trailing zeros, a bulk string in RESP2 and a double in RESP3.
    static func coordinate(_ value: Double, resp3: Bool) -> Reply {
        let text = humanDigits(value)
        return resp3 ? .raw([UInt8(ascii: ",")] + text + [13, 10]) : .bulk(text)
    }

    static func humanDigits(_ value: Double) -> [UInt8] {
        if value.isInfinite { return Array((value > 0 ? "inf" : "-inf").utf8) }
        var buffer = [CChar](repeating: 0, count: 400)
        let written = withVaList([value]) { vsnprintf(&buffer, buffer.count, "%.17f", $0) }
        var out = buffer[0..<Int(max(0, min(written, Int32(buffer.count - 1))))].map { UInt8(bitPattern: $0) }
        if out.contains(UInt8(ascii: ".")) {
            while out.last == UInt8(ascii: "0") { out.removeLast() }
            if out.last == UInt8(ascii: ".") { out.removeLast() }
        }
        if out == Array("-0".utf8) { out = [UInt8(ascii: "0")] }
        return out
    }

    /// A distance with four decimals (Redis's `fixedpoint_d2string`:
    /// `llrint` of the value times 10^4), always a bulk string.
    static func distanceReply(_ value: Double) -> Reply { .bulk(fixedPoint4(value)) }

    static func fixedPoint4(_ value: Double) -> [UInt8] {
        if value == 0 { return Array("0.0000".utf8) }
        let scaled = (value * 10000).rounded(.toNearestOrEven)
        guard scaled.magnitude < 9.2e18 else { return Array((scaled < 0 ? "-inf" : "inf").utf8) }
        let v = Int64(scaled)
        // Digits least significant first; at least one before the point.
        var digits: [UInt8] = []
        digits.reserveCapacity(24)
        var rest = v.magnitude
        repeat {
            digits.append(UInt8(ascii: "0") + UInt8(rest % 10))
            rest /= 10
        } while rest > 0
        while digits.count < 5 { digits.append(UInt8(ascii: "0")) }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count + 2)
        if v < 0 { out.append(UInt8(ascii: "-")) }
        for (i, d) in digits.enumerated().reversed() {
            out.append(d)
            if i == 4 { out.append(UInt8(ascii: ".")) }
        }
        return out
    }

    /// C's `(long long)` of a score for WITHHASH (scores set by ZADD may be
    /// anything).
    static func hashInteger(_ score: Double) -> Int {
        guard score.isFinite, score > -9.2e18, score < 9.2e18 else { return Int.min }
        return Int(score)
    }

    static let couldNotDecode = Reply.error("ERR could not decode requested zset member")

    // MARK: - Argument helpers

    /// Metres per unit (m, km, ft, mi, any case), or nil after replying.
    static func unit(_ call: CommandCall, _ i: Int) -> Double? {
        if call.isArg(i, "m") { return 1 }
        if call.isArg(i, "km") { return 1000 }
        if call.isArg(i, "ft") { return 0.3048 }
        if call.isArg(i, "mi") { return 1609.34 }
        return nil
    }

    static let badUnit = Reply.error("ERR unsupported unit provided. please use M, KM, FT, MI")

    /// Redis's `extractLongLatOrReply` on arguments `i`, `i + 1`.
    static func longitudeLatitude(_ call: CommandCall, _ i: Int) -> Result<(Double, Double), GeoError> {
        guard let lon = call.double(i), let lat = call.double(i + 1) else { return .failure(GeoError(.notFloat)) }
        if lon < GeoHash.longitudeMin || lon > GeoHash.longitudeMax || lat < GeoHash.latitudeMin || lat > GeoHash.latitudeMax {
            return .failure(GeoError(.error("ERR invalid longitude,latitude pair \(cFormat(lon)),\(cFormat(lat))")))
        }
        return .success((lon, lat))
    }

    /// C's `%f`.
    static func cFormat(_ value: Double) -> String {
        var buffer = [CChar](repeating: 0, count: 400)
        let written = withVaList([value]) { vsnprintf(&buffer, buffer.count, "%f", $0) }
        let length = Int(max(0, min(written, Int32(buffer.count - 1))))
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// An error reply carried through a `Result`.
    struct GeoError: Error {
        let reply: Reply
        init(_ reply: Reply) { self.reply = reply }
    }

    // MARK: - GEOADD

    static func geoadd(_ call: CommandCall) {
        var flags = SortedSetFamily.AddFlags()
        var first = 2
        while first < call.args.count {
            if call.isArg(first, "nx") { flags.nx = true }
            else if call.isArg(first, "xx") { flags.xx = true }
            else if call.isArg(first, "ch") { flags.ch = true }
            else { break }
            first += 1
        }
        let elements = (call.args.count - first) / 3
        guard (call.args.count - first) % 3 == 0, !(flags.xx && flags.nx), elements > 0 else {
            return call.reply(.syntaxError)
        }
        var pairs: [ZEntry] = []
        pairs.reserveCapacity(elements)
        for e in 0..<elements {
            let i = first + e * 3
            switch longitudeLatitude(call, i) {
            case .failure(let error): return call.reply(error.reply)
            case .success(let (lon, lat)):
                pairs.append(ZEntry(score: GeoHash.score(longitude: lon, latitude: lat)!, member: call.args.bytes(i + 2)))
            }
        }
        let key = call.key(1)
        let options = flags
        call.runOnKey(key, mode: .exclusive) { ctx in SortedSetFamily.opAdd(ctx, key, options, pairs) }
    }

    // MARK: - GEOPOS / GEOHASH / GEODIST

    /// One reply per member argument: `found` for a member with a score,
    /// `missing` otherwise (and for every member when the key is missing).
    static func positions(
        _ call: CommandCall, found: @escaping (Double, [UInt8]) -> Reply, missing: @escaping () -> Reply
    ) {
        let key = call.key(1)
        let members = (2..<call.args.count).map { call.args.bytes($0) }
        call.runOnKey(key, mode: .shared) { ctx in
            switch SortedSetFamily.read(ctx, key) {
            case .wrongType: return .wrongType
            case .missing: return .array(members.map { _ in missing() })
            case .found(let z): return .array(members.map { m in z.score(of: m).map { found($0, m) } ?? missing() })
            }
        }
    }

    static func geodist(_ call: CommandCall) {
        var toMeters = 1.0
        if call.args.count == 5 {
            guard let u = unit(call, 4) else { return call.reply(badUnit) }
            toMeters = u
        } else if call.args.count > 5 {
            return call.reply(.syntaxError)
        }
        let key = call.key(1), a = call.args.bytes(2), b = call.args.bytes(3)
        let conversion = toMeters
        call.runOnKey(key, mode: .shared) { ctx in
            switch SortedSetFamily.read(ctx, key) {
            case .missing: return .null
            case .wrongType: return .wrongType
            case .found(let z):
                guard let s1 = z.score(of: a), let s2 = z.score(of: b) else { return .null }
                let p1 = GeoHash.position(ofScore: s1), p2 = GeoHash.position(ofScore: s2)
                return distanceReply(GeoHash.distance(p1.longitude, p1.latitude, p2.longitude, p2.latitude) / conversion)
            }
        }
    }

    // MARK: - GEORADIUS / GEOSEARCH

    enum Variant {
        case radius, radiusReadOnly, member, memberReadOnly, search, searchStore

        var byCoordinates: Bool { self == .radius || self == .radiusReadOnly }
        var byMember: Bool { self == .member || self == .memberReadOnly }
        var isSearch: Bool { self == .search || self == .searchStore }
        var acceptsStoreOption: Bool { self == .radius || self == .member }
    }

    enum Order {
        case none, ascending, descending
    }

    /// A parsed search. The centre is filled from a member's position on the
    /// shard when the request names one.
    struct Query {
        var shape = GeoShape(longitude: 0, latitude: 0, conversion: 1, kind: .radius(0))
        var withDist = false, withHash = false, withCoord = false
        var order = Order.none
        var any = false
        var count = 0
        var store: KeyRef? = nil
        var storeDist = false
    }

    /// One way parsing went: the members whose positions the shard must look
    /// up, in order (a missing one answers "could not decode"), then the
    /// query or the error the rest of the arguments gave.
    struct Parsed {
        var members: [[UInt8]] = []
        var result: Result<Query, GeoError>
    }

    /// Redis's `georadiusGeneric` argument handling, for a key that exists
    /// (`keyExists`) or not.
    static func parse(_ call: CommandCall, _ variant: Variant, keyExists: Bool) -> Parsed {
        var parsed = Parsed(result: .failure(GeoError(.syntaxError)))
        var q = Query()
        func fail(_ reply: Reply) -> Parsed {
            parsed.result = .failure(GeoError(reply))
            return parsed
        }
        /// `extractDistanceOrReply` at `i`: radius then unit.
        func radius(_ i: Int) -> Reply? {
            guard let r = call.double(i) else { return .error("ERR need numeric radius") }
            if r < 0 { return .error("ERR radius cannot be negative") }
            guard let u = unit(call, i + 1) else { return badUnit }
            q.shape.kind = .radius(r)
            q.shape.conversion = u
            return nil
        }
        let base: Int
        switch variant {
        case .radius, .radiusReadOnly:
            base = 6
            switch longitudeLatitude(call, 2) {
            case .failure(let e): return fail(e.reply)
            case .success(let (lon, lat)):
                q.shape.longitude = lon
                q.shape.latitude = lat
            }
            if let e = radius(4) { return fail(e) }
        case .member, .memberReadOnly:
            base = 5
            if keyExists {
                parsed.members.append(call.args.bytes(2))
                if let e = radius(3) { return fail(e) }
            }
        case .search:
            base = 2
        case .searchStore:
            base = 3
            q.store = call.key(1)
        }
        var fromMember = false, fromLonLat = false, byRadius = false, byBox = false
        let n = call.args.count
        var i = base
        while i < n {
            let left = n - i - 1
            if call.isArg(i, "withdist") {
                q.withDist = true
            } else if call.isArg(i, "withhash") {
                q.withHash = true
            } else if call.isArg(i, "withcoord") {
                q.withCoord = true
            } else if call.isArg(i, "any") {
                q.any = true
            } else if call.isArg(i, "asc") {
                q.order = .ascending
            } else if call.isArg(i, "desc") {
                q.order = .descending
            } else if call.isArg(i, "count") && left >= 1 {
                guard let c = call.integer(i + 1) else { return fail(.notInteger) }
                if c <= 0 { return fail(.error("ERR COUNT must be > 0")) }
                q.count = Int(c)
                i += 1
            } else if (call.isArg(i, "store") || call.isArg(i, "storedist")) && left >= 1 && variant.acceptsStoreOption {
                q.store = call.key(i + 1)
                q.storeDist = call.isArg(i, "storedist")
                i += 1
            } else if call.isArg(i, "storedist") && variant == .searchStore {
                q.storeDist = true
            } else if call.isArg(i, "frommember") && left >= 1 && variant.isSearch && !fromLonLat {
                if keyExists { parsed.members.append(call.args.bytes(i + 1)) }
                fromMember = true
                i += 1
            } else if call.isArg(i, "fromlonlat") && left >= 2 && variant.isSearch && !fromMember {
                switch longitudeLatitude(call, i + 1) {
                case .failure(let e): return fail(e.reply)
                case .success(let (lon, lat)):
                    q.shape.longitude = lon
                    q.shape.latitude = lat
                }
                fromLonLat = true
                i += 2
            } else if call.isArg(i, "byradius") && left >= 2 && variant.isSearch && !byBox {
                if let e = radius(i + 1) { return fail(e) }
                byRadius = true
                i += 2
            } else if call.isArg(i, "bybox") && left >= 3 && variant.isSearch && !byRadius {
                guard let w = call.double(i + 1) else { return fail(.error("ERR need numeric width")) }
                guard let h = call.double(i + 2) else { return fail(.error("ERR need numeric height")) }
                if h < 0 || w < 0 { return fail(.error("ERR height or width cannot be negative")) }
                guard let u = unit(call, i + 3) else { return fail(badUnit) }
                q.shape.kind = .box(width: w, height: h)
                q.shape.conversion = u
                byBox = true
                i += 3
            } else {
                return fail(.syntaxError)
            }
            i += 1
        }
        if q.store != nil && (q.withDist || q.withHash || q.withCoord) {
            let what = variant == .searchStore ? "GEOSEARCHSTORE" : "STORE option in GEORADIUS"
            return fail(.error("ERR \(what) is not compatible with WITHDIST, WITHHASH and WITHCOORD options"))
        }
        if variant.isSearch && !(fromMember || fromLonLat) {
            return fail(.error("ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for \(call.args.string(0))"))
        }
        if variant.isSearch && !(byRadius || byBox) {
            return fail(.error("ERR exactly one of BYRADIUS and BYBOX can be specified for \(call.args.string(0))"))
        }
        if q.any && q.count == 0 { return fail(.error("ERR the ANY argument requires COUNT argument")) }
        // COUNT picks the nearest: it implies ASC unless ANY says any will do.
        if q.count != 0 && q.order == .none && !q.any { q.order = .ascending }
        parsed.result = .success(q)
        return parsed
    }

    /// One member found by a search.
    struct Point {
        var longitude: Double, latitude: Double
        /// Metres from the centre.
        var distance: Double
        var score: Double
        var member: [UInt8]
    }

    /// What the source key gave: an error, or the points (sorted and cut
    /// to COUNT) with the query that found them.
    enum Found {
        case error(Reply)
        case points([Point], Query)
    }

    static func search(_ call: CommandCall, _ variant: Variant) {
        let existing = parse(call, variant, keyExists: true)
        let absent = parse(call, variant, keyExists: false)
        let source = call.key(variant == .searchStore ? 2 : 1)
        var destination: KeyRef? = nil
        if case .success(let q) = absent.result { destination = q.store }
        if destination == nil, case .success(let q) = existing.result { destination = q.store }
        let resp3 = call.client.protocolVersion >= 3
        guard let destination else {
            let writeVariant = variant.acceptsStoreOption
            call.runOnKey(source, mode: .shared) { ctx in
                // GEORADIUS without STORE is a write command that wrote nothing: WATCH stays clean.
                if writeVariant { ctx.markUnchanged() }
                switch locate(ctx, source, existing: existing, absent: absent) {
                case .error(let reply): return reply
                case .points(let points, let q): return reply(points, q, resp3: resp3)
                }
            }
            return
        }
        call.runOnKeysTwoPhase([source, destination], mode: .exclusive, check: { ctx, positions -> Found? in
            guard positions.contains(0) else { return nil }
            return locate(ctx, source, existing: existing, absent: absent)
        }, decide: { checks -> Found in
            checks.compactMap { $0 }.first ?? .error(.syntaxError)
        }, apply: { ctx, positions, found in
            guard positions.contains(1), case .points(let points, let q) = found, q.store != nil else { return }
            SortedSetFamily.storeResult(
                ctx, destination, storedEntries(points, q), event: variant == .searchStore ? "geosearchstore" : "georadiusstore")
        }, reply: { found in
            switch found {
            case .error(let reply): return reply
            case .points(let points, let q):
                return q.store == nil ? reply(points, q, resp3: resp3) : .integer(points.count)
            }
        }, writtenPositions: [1])
    }

    /// The shard's part of a search: type check, member positions, the scan.
    static func locate(_ ctx: ShardContext, _ key: KeyRef, existing: Parsed, absent: Parsed) -> Found {
        switch SortedSetFamily.read(ctx, key) {
        case .wrongType: return .error(.wrongType)
        case .missing:
            switch absent.result {
            case .failure(let e): return .error(e.reply)
            case .success(let q): return .points([], q)
            }
        case .found(let z):
            var centre: (longitude: Double, latitude: Double)? = nil
            for member in existing.members {
                guard let score = z.score(of: member) else { return .error(couldNotDecode) }
                centre = GeoHash.position(ofScore: score)
            }
            switch existing.result {
            case .failure(let e): return .error(e.reply)
            case .success(var q):
                if let centre {
                    q.shape.longitude = centre.longitude
                    q.shape.latitude = centre.latitude
                }
                return .points(select(scan(z, q), q), q)
            }
        }
    }

    /// Redis's `membersOfAllNeighbors`: every member of the nine cells that
    /// lies inside the shape, cell by cell in score order, stopping early
    /// once ANY has its COUNT.
    static func scan(_ z: SortedSetValue, _ q: Query) -> [Point] {
        let cells = q.shape.searchCells()
        let limit = q.any ? q.count : 0
        var points: [Point] = []
        var lastProcessed = 0
        for (i, cell) in cells.enumerated() {
            if cell.isZero { continue }
            // Huge radii make neighbouring cells coincide: skip a repeat of the previous one.
            if lastProcessed != 0 && cell == cells[lastProcessed] { continue }
            if limit > 0 && points.count >= limit { break }
            let (min, max) = GeoHash.scoreRange(of: cell)
            let lo = z.countBefore { $0.score < min }
            let hi = z.countBefore { $0.score < max }
            if lo < hi {
                z.forEach(ranks: lo..<hi) { e in
                    if limit > 0 && points.count >= limit { return }
                    let (lon, lat) = GeoHash.position(ofScore: e.score)
                    if let d = q.shape.distanceIfInside(longitude: lon, latitude: lat) {
                        points.append(Point(longitude: lon, latitude: lat, distance: d, score: e.score, member: e.member))
                    }
                }
            }
            lastProcessed = i
        }
        return points
    }

    /// Sorts by distance as asked (ties keep scan order) and keeps COUNT.
    static func select(_ points: [Point], _ q: Query) -> [Point] {
        var out = points
        switch q.order {
        case .none: break
        case .ascending: out.sort { $0.distance < $1.distance }
        case .descending: out.sort { $0.distance > $1.distance }
        }
        if q.count > 0 && out.count > q.count { out.removeLast(out.count - q.count) }
        return out
    }

    static func reply(_ points: [Point], _ q: Query, resp3: Bool) -> Reply {
        let options = q.withDist || q.withHash || q.withCoord
        return .array(points.map { p in
            if !options { return .bulk(p.member) }
            var item: [Reply] = [.bulk(p.member)]
            if q.withDist { item.append(distanceReply(p.distance / q.shape.conversion)) }
            if q.withHash { item.append(.integer(hashInteger(p.score))) }
            if q.withCoord {
                item.append(.array([coordinate(p.longitude, resp3: resp3), coordinate(p.latitude, resp3: resp3)]))
            }
            return .array(item)
        })
    }

    /// The sorted set STORE (scores) or STOREDIST (distances in the unit) writes.
    static func storedEntries(_ points: [Point], _ q: Query) -> [ZEntry] {
        var entries = points.map { p in
            ZEntry(score: q.storeDist ? p.distance / q.shape.conversion : p.score, member: p.member)
        }
        entries.sort { $0.isBefore($1.score, $1.member) }
        // Cells never overlap, so members are distinct; keep the set valid regardless.
        var seen = Set<[UInt8]>()
        entries = entries.filter { seen.insert($0.member).inserted }
        return entries
    }
}

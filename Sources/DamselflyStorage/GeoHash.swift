#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A geohash cell: `step` bits of longitude and `step` bits of latitude,
/// interleaved (latitude in the even bits, longitude in the odd ones), as
/// Redis's `GeoHashBits`. A zero cell (bits 0, step 0) marks a neighbour
/// the search leaves out.
public struct GeoHashBits: Equatable, Sendable {
    public var bits: UInt64
    public var step: UInt8

    @inlinable public init(bits: UInt64, step: UInt8) {
        self.bits = bits
        self.step = step
    }

    public static let zero = GeoHashBits(bits: 0, step: 0)
    @inlinable public var isZero: Bool { bits == 0 && step == 0 }
}

/// A closed interval of degrees.
public struct GeoRange: Sendable {
    public var min: Double, max: Double
    @inlinable public init(min: Double, max: Double) {
        self.min = min
        self.max = max
    }
}

/// The rectangle a cell covers.
public struct GeoArea: Sendable {
    public var longitude: GeoRange
    public var latitude: GeoRange
}

/// Redis's geohash: 26 steps (52 bits, exactly representable as a sorted-set
/// score) over longitude -180..180 and latitude -85.05112878..85.05112878
/// (the Web Mercator limits), its neighbour cells, its haversine distance on
/// a sphere of radius 6372797.560856 m, and the choice of cells a radius or
/// box search scans. Every function reproduces Redis 7.0's arithmetic step for
/// step (including C's double → integer truncations), because scores,
/// coordinates, distances and which members a search finds must equal
/// redis-server's bit for bit.
public enum GeoHash {
    public static let longitudeMin = -180.0
    public static let longitudeMax = 180.0
    public static let latitudeMin = -85.05112878
    public static let latitudeMax = 85.05112878
    /// 26 steps: 52 bits, the precision of a stored score.
    public static let stepMax: UInt8 = 26
    /// The WGS-84 quadratic mean radius Redis uses.
    public static let earthRadius = 6372797.560856
    static let mercatorMax = 20037726.37
    /// Redis's `D_R` (M_PI / 180), not its more precise DEG_TO_RAD constant.
    static let degreesToRadians = Double.pi / 180.0

    public static let wgs84Longitude = GeoRange(min: longitudeMin, max: longitudeMax)
    public static let wgs84Latitude = GeoRange(min: latitudeMin, max: latitudeMax)

    // MARK: - Bits

    /// Spreads the low 32 bits of `lat` over the even bits and of `lon` over
    /// the odd bits.
    @inlinable
    public static func interleave(_ lat: UInt32, _ lon: UInt32) -> UInt64 {
        func spread(_ v: UInt32) -> UInt64 {
            var x = UInt64(v)
            x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF
            x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF
            x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F
            x = (x | (x << 2)) & 0x3333_3333_3333_3333
            x = (x | (x << 1)) & 0x5555_5555_5555_5555
            return x
        }
        return spread(lat) | (spread(lon) << 1)
    }

    /// The inverse of ``interleave(_:_:)``: latitude bits in the low half,
    /// longitude bits in the high half.
    @inlinable
    public static func deinterleave(_ interleaved: UInt64) -> UInt64 {
        func squeeze(_ v: UInt64) -> UInt64 {
            var x = v & 0x5555_5555_5555_5555
            x = (x | (x >> 1)) & 0x3333_3333_3333_3333
            x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F
            x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF
            x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF
            x = (x | (x >> 16)) & 0x0000_0000_FFFF_FFFF
            return x
        }
        return squeeze(interleaved) | (squeeze(interleaved >> 1) << 32)
    }

    /// C's `(uint32_t)` of a double that is known to be in range or slightly
    /// above it (an offset of exactly 2^step): truncation, then the low 32 bits.
    @inlinable
    static func truncatingUInt32(_ d: Double) -> UInt32 {
        guard d.isFinite, d >= 0, d < 18_446_744_073_709_551_616.0 else { return 0 }
        return UInt32(truncatingIfNeeded: UInt64(d))
    }

    /// C's `(uint64_t)` of a score as x86-64 compilers emit it, so a
    /// member whose score was set by ZADD (negative, fractional, huge, inf)
    /// decodes to the same position Redis reports.
    @inlinable
    public static func scoreBits(_ score: Double) -> UInt64 {
        let twoTo63 = 9_223_372_036_854_775_808.0
        if score.isNaN { return 1 << 63 }
        if score < twoTo63 {
            guard score >= -twoTo63 else { return 1 << 63 }
            return UInt64(bitPattern: Int64(score))
        }
        let shifted = score - twoTo63
        guard shifted < twoTo63 else { return 0 }
        return UInt64(bitPattern: Int64(shifted)) ^ (1 << 63)
    }

    // MARK: - Encode / decode

    /// Redis's `geohashEncode`: nil outside the ranges (or a bad step).
    public static func encode(
        longitude: Double, latitude: Double, step: UInt8,
        longitudeRange: GeoRange = wgs84Longitude, latitudeRange: GeoRange = wgs84Latitude
    ) -> GeoHashBits? {
        guard step > 0, step <= 32 else { return nil }
        if longitude > longitudeMax || longitude < longitudeMin || latitude > latitudeMax || latitude < latitudeMin {
            return nil
        }
        if latitude < latitudeRange.min || latitude > latitudeRange.max
            || longitude < longitudeRange.min || longitude > longitudeRange.max
        {
            return nil
        }
        var latOffset = (latitude - latitudeRange.min) / (latitudeRange.max - latitudeRange.min)
        var lonOffset = (longitude - longitudeRange.min) / (longitudeRange.max - longitudeRange.min)
        let cells = Double(UInt64(1) << UInt64(step))
        latOffset *= cells
        lonOffset *= cells
        return GeoHashBits(bits: interleave(truncatingUInt32(latOffset), truncatingUInt32(lonOffset)), step: step)
    }

    /// Redis's `geohashDecode`: the rectangle of a cell (nil for the zero cell).
    public static func decode(
        _ hash: GeoHashBits, longitudeRange: GeoRange = wgs84Longitude, latitudeRange: GeoRange = wgs84Latitude
    ) -> GeoArea? {
        if hash.isZero { return nil }
        let separated = deinterleave(hash.bits)
        let latScale = latitudeRange.max - latitudeRange.min
        let lonScale = longitudeRange.max - longitudeRange.min
        let lat = UInt32(truncatingIfNeeded: separated)
        let lon = UInt32(truncatingIfNeeded: separated >> 32)
        let cells = Double(UInt64(1) << UInt64(hash.step & 63))
        // `(ilato + 1) * 1.0` adds in 32-bit unsigned arithmetic first.
        return GeoArea(
            longitude: GeoRange(
                min: longitudeRange.min + (Double(lon) / cells) * lonScale,
                max: longitudeRange.min + (Double(lon &+ 1) / cells) * lonScale),
            latitude: GeoRange(
                min: latitudeRange.min + (Double(lat) / cells) * latScale,
                max: latitudeRange.min + (Double(lat &+ 1) / cells) * latScale))
    }

    /// The centre of a cell, clamped to the valid ranges.
    public static func decodeToLongitudeLatitude(_ hash: GeoHashBits) -> (longitude: Double, latitude: Double)? {
        guard let area = decode(hash) else { return nil }
        var lon = (area.longitude.min + area.longitude.max) / 2
        lon = Swift.min(Swift.max(lon, longitudeMin), longitudeMax)
        var lat = (area.latitude.min + area.latitude.max) / 2
        lat = Swift.min(Swift.max(lat, latitudeMin), latitudeMax)
        return (lon, lat)
    }

    /// The score GEOADD stores for a position (nil outside the valid ranges).
    public static func score(longitude: Double, latitude: Double) -> Double? {
        guard let hash = encode(longitude: longitude, latitude: latitude, step: stepMax) else { return nil }
        return Double(align52(hash))
    }

    /// The position a stored score stands for.
    public static func position(ofScore score: Double) -> (longitude: Double, latitude: Double) {
        // A 26-step cell is never the zero cell, so decoding cannot fail.
        decodeToLongitudeLatitude(GeoHashBits(bits: scoreBits(score), step: stepMax))!
    }

    /// A cell's bits moved to the top of 52 bits (the score prefix).
    @inlinable
    public static func align52(_ hash: GeoHashBits) -> UInt64 {
        let shift = 52 - Int(hash.step) * 2
        return shift >= 0 ? hash.bits << UInt64(shift) : hash.bits >> UInt64(-shift)
    }

    /// The scores `min ..< max` of every member inside a cell.
    @inlinable
    public static func scoreRange(of hash: GeoHashBits) -> (min: Double, max: Double) {
        let next = GeoHashBits(bits: hash.bits &+ 1, step: hash.step)
        return (Double(align52(hash)), Double(align52(next)))
    }

    static let base32: [UInt8] = Array("0123456789bcdefghjkmnpqrstuvwxyz".utf8)

    /// GEOHASH's 11-character string: the position re-encoded over the
    /// standard latitude range -90..90; the 11th character stands for bits
    /// a 52-bit score does not have, so it is always "0".
    public static func hashString(ofScore score: Double) -> [UInt8] {
        let (lon, lat) = position(ofScore: score)
        let bits = encode(
            longitude: lon, latitude: lat, step: 26,
            longitudeRange: GeoRange(min: -180, max: 180), latitudeRange: GeoRange(min: -90, max: 90))?.bits ?? 0
        var out = [UInt8](repeating: 0, count: 11)
        for i in 0..<11 {
            let index = i == 10 ? 0 : Int((bits >> UInt64(52 - (i + 1) * 5)) & 0x1f)
            out[i] = base32[index]
        }
        return out
    }

    // MARK: - Neighbours

    /// The eight cells around a cell, in Redis's `GeoHashNeighbors` order
    /// as the search visits them: north, south, east, west, north-east,
    /// north-west, south-east, south-west. Moving wraps around the edges.
    public static func neighbours(_ hash: GeoHashBits) -> [GeoHashBits] {
        func moved(_ dx: Int, _ dy: Int) -> GeoHashBits {
            var h = hash
            moveX(&h, dx)
            moveY(&h, dy)
            return h
        }
        return [moved(0, 1), moved(0, -1), moved(1, 0), moved(-1, 0),
                moved(1, 1), moved(-1, 1), moved(1, -1), moved(-1, -1)]
    }

    static func moveX(_ hash: inout GeoHashBits, _ d: Int) { move(&hash, d, along: 0xaaaa_aaaa_aaaa_aaaa) }
    static func moveY(_ hash: inout GeoHashBits, _ d: Int) { move(&hash, d, along: 0x5555_5555_5555_5555) }

    /// One cell along the axis whose bits `mask` selects (odd bits: longitude,
    /// even bits: latitude): add or subtract one in those bits only, letting
    /// the carry skip the other axis's bits and wrap at the edge.
    static func move(_ hash: inout GeoHashBits, _ d: Int, along mask: UInt64) {
        if d == 0 { return }
        var moving = hash.bits & mask
        let fixed = hash.bits & ~mask
        let shift = UInt64(64 - Int(hash.step) * 2)
        let others: UInt64 = ~mask >> shift
        if d > 0 {
            moving = moving &+ (others &+ 1)
        } else {
            moving = moving | others
            moving = moving &- (others &+ 1)
        }
        moving &= (mask >> shift)
        hash.bits = moving | fixed
    }

    // MARK: - Distance

    static func radians(_ degrees: Double) -> Double { degrees * degreesToRadians }

    /// Distance along a meridian.
    public static func latitudeDistance(_ lat1: Double, _ lat2: Double) -> Double {
        earthRadius * fabs(radians(lat2) - radians(lat1))
    }

    /// Redis's haversine great-circle distance in metres (with its shortcut
    /// when both longitudes are the same).
    public static func distance(_ lon1: Double, _ lat1: Double, _ lon2: Double, _ lat2: Double) -> Double {
        let lon1r = radians(lon1), lon2r = radians(lon2)
        let v = sin((lon2r - lon1r) / 2)
        if v == 0 { return latitudeDistance(lat1, lat2) }
        let lat1r = radians(lat1), lat2r = radians(lat2)
        let u = sin((lat2r - lat1r) / 2)
        let a = u * u + cos(lat1r) * cos(lat2r) * v * v
        return 2.0 * earthRadius * asin(sqrt(a))
    }

    /// How many steps the nine search cells get for a radius at a latitude.
    public static func estimateSteps(radiusMeters: Double, latitude: Double) -> UInt8 {
        if radiusMeters == 0 { return 26 }
        var range = radiusMeters
        var step = 1
        while range < mercatorMax {
            range *= 2
            step += 1
        }
        step -= 2
        if latitude > 66 || latitude < -66 {
            step -= 1
            if latitude > 80 || latitude < -80 { step -= 1 }
        }
        return UInt8(Swift.min(Swift.max(step, 1), 26))
    }
}

/// The area a GEORADIUS / GEOSEARCH covers: a circle or an axis-aligned box
/// around a centre, with sizes in the request's unit (`conversion` is metres
/// per unit).
public struct GeoShape: Sendable {
    public enum Kind: Sendable {
        case radius(Double)
        case box(width: Double, height: Double)
    }

    public var longitude: Double
    public var latitude: Double
    public var conversion: Double
    public var kind: Kind

    public init(longitude: Double, latitude: Double, conversion: Double, kind: Kind) {
        self.longitude = longitude
        self.latitude = latitude
        self.conversion = conversion
        self.kind = kind
    }

    /// Redis's `geohashBoundingBox`: min longitude, min latitude, max
    /// longitude, max latitude.
    public func boundingBox() -> (minLon: Double, minLat: Double, maxLon: Double, maxLat: Double) {
        let height: Double, width: Double
        switch kind {
        case .radius(let r):
            height = conversion * r
            width = conversion * r
        case .box(let w, let h):
            height = conversion * (h / 2)
            width = conversion * (w / 2)
        }
        let d = GeoHash.degreesToRadians
        let latDelta = (height / GeoHash.earthRadius) / d
        let lonDeltaTop = (width / GeoHash.earthRadius / cos((latitude + latDelta) * d)) / d
        let lonDeltaBottom = (width / GeoHash.earthRadius / cos((latitude - latDelta) * d)) / d
        let southern = latitude < 0
        return (
            southern ? longitude - lonDeltaBottom : longitude - lonDeltaTop,
            latitude - latDelta,
            southern ? longitude + lonDeltaBottom : longitude + lonDeltaTop,
            latitude + latDelta)
    }

    /// Redis's `geohashCalculateAreasByShapeWGS84`: the centre cell and its
    /// eight neighbours, in the order they are scanned, with the neighbours
    /// that cannot hold a match replaced by ``GeoHashBits/zero``.
    public func searchCells() -> [GeoHashBits] {
        let bounds = boundingBox()
        var radiusMeters: Double
        switch kind {
        case .radius(let r): radiusMeters = r
        case .box(let w, let h): radiusMeters = sqrt((w / 2) * (w / 2) + (h / 2) * (h / 2))
        }
        radiusMeters *= conversion
        var steps = GeoHash.estimateSteps(radiusMeters: radiusMeters, latitude: latitude)
        var hash = GeoHash.encode(longitude: longitude, latitude: latitude, step: steps) ?? GeoHashBits(bits: 0, step: steps)
        var neighbours = GeoHash.neighbours(hash)
        // North, south, east and west must reach past the bounding box, or
        // the cells are too small: one step coarser.
        let north = GeoHash.decode(neighbours[0])!, south = GeoHash.decode(neighbours[1])!
        let east = GeoHash.decode(neighbours[2])!, west = GeoHash.decode(neighbours[3])!
        let decrease = north.latitude.max < bounds.maxLat || south.latitude.min > bounds.minLat
            || east.longitude.max < bounds.maxLon || west.longitude.min > bounds.minLon
        if steps > 1 && decrease {
            steps -= 1
            hash = GeoHash.encode(longitude: longitude, latitude: latitude, step: steps) ?? GeoHashBits(bits: 0, step: steps)
            neighbours = GeoHash.neighbours(hash)
        }
        let area = GeoHash.decode(hash)!
        if steps >= 2 {
            // Indices into `neighbours`: 0 N, 1 S, 2 E, 3 W, 4 NE, 5 NW, 6 SE, 7 SW.
            if area.latitude.min < bounds.minLat { for i in [1, 7, 6] { neighbours[i] = .zero } }
            if area.latitude.max > bounds.maxLat { for i in [0, 4, 5] { neighbours[i] = .zero } }
            if area.longitude.min < bounds.minLon { for i in [3, 7, 5] { neighbours[i] = .zero } }
            if area.longitude.max > bounds.maxLon { for i in [2, 6, 4] { neighbours[i] = .zero } }
        }
        return [hash] + neighbours
    }

    /// The distance in metres from the centre to a point when the point is
    /// inside the shape, else nil (Redis's `geoWithinShape`).
    @inlinable
    public func distanceIfInside(longitude lon: Double, latitude lat: Double) -> Double? {
        switch kind {
        case .radius(let r):
            let d = GeoHash.distance(longitude, latitude, lon, lat)
            return d > r * conversion ? nil : d
        case .box(let w, let h):
            if GeoHash.latitudeDistance(lat, latitude) > (h * conversion) / 2 { return nil }
            if GeoHash.distance(lon, lat, longitude, lat) > (w * conversion) / 2 { return nil }
            return GeoHash.distance(longitude, latitude, lon, lat)
        }
    }
}

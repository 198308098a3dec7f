import Testing
@testable import DamselflyStorage

/// Expected values come from redis-server 7.0.15 (GEOADD, ZSCORE, GEOPOS,
/// GEOHASH, GEODIST on the same input).
@Suite struct GeoHashTests {
    @Test func scoresEqualRedis() {
        #expect(GeoHash.score(longitude: 13.361389, latitude: 38.115556) == 3479099956230698)
        #expect(GeoHash.score(longitude: 15.087269, latitude: 37.502669) == 3479447370796909)
        #expect(GeoHash.score(longitude: -180, latitude: -85.05112878) == 0)
        #expect(GeoHash.score(longitude: 0, latitude: 0) == 3377699720527872)
        // The maximum latitude's offset is exactly 2^26: the bit lands above
        // the 52, as in Redis.
        #expect(GeoHash.score(longitude: 180, latitude: 85.05112878) == 13510798882111488)
        #expect(GeoHash.score(longitude: 180.0001, latitude: 0) == nil)
        #expect(GeoHash.score(longitude: 0, latitude: 85.06) == nil)
    }

    @Test func positionsEqualRedis() {
        let palermo = GeoHash.position(ofScore: 3479099956230698)
        #expect(palermo.longitude == 13.36138933897018433)
        #expect(palermo.latitude == 38.11555639549629859)
        let corner = GeoHash.position(ofScore: 0)
        #expect(corner.longitude == -179.99999731779098511)
        #expect(corner.latitude == -85.05112751263942528)
        // Decoding clamps to the valid ranges.
        let top = GeoHash.position(ofScore: 13510798882111488)
        #expect(top.longitude == 180)
        #expect(top.latitude == 85.0511287799999991)
    }

    @Test func hashStringsEqualRedis() {
        #expect(String(decoding: GeoHash.hashString(ofScore: 3479099956230698), as: UTF8.self) == "sqc8b49rny0")
        #expect(String(decoding: GeoHash.hashString(ofScore: 3479447370796909), as: UTF8.self) == "sqdtr74hyu0")
        #expect(String(decoding: GeoHash.hashString(ofScore: 0), as: UTF8.self) == "00bh0hbj200")
        #expect(String(decoding: GeoHash.hashString(ofScore: 3377699720527872), as: UTF8.self) == "s0000000000")
    }

    @Test func distanceEqualsRedis() {
        let a = GeoHash.position(ofScore: 3479099956230698), b = GeoHash.position(ofScore: 3479447370796909)
        let d = GeoHash.distance(a.longitude, a.latitude, b.longitude, b.latitude)
        #expect((d * 10000).rounded(.toNearestOrEven) == 1_662_741_516)  // GEODIST: 166274.1516
        #expect(GeoHash.distance(1, 2, 1, 2) == 0)
        // Same longitude: the meridian shortcut.
        #expect(GeoHash.distance(5, 0, 5, 1) == GeoHash.earthRadius * (Double.pi / 180.0))
    }

    @Test func interleaveRoundTrips() {
        var rng = SplitMix(state: 7)
        for _ in 0..<10_000 {
            let lat = UInt32.random(in: 0...UInt32.max, using: &rng), lon = UInt32.random(in: 0...UInt32.max, using: &rng)
            let bits = GeoHash.interleave(lat, lon)
            #expect(bits & 1 == UInt64(lat & 1))
            #expect((bits >> 1) & 1 == UInt64(lon & 1))
            let back = GeoHash.deinterleave(bits)
            #expect(UInt32(truncatingIfNeeded: back) == lat)
            #expect(UInt32(truncatingIfNeeded: back >> 32) == lon)
        }
    }

    @Test func encodeDecodeKeepsThePointInItsCell() {
        var rng = SplitMix(state: 11)
        for _ in 0..<5_000 {
            let lon = Double.random(in: -180..<180, using: &rng)
            let lat = Double.random(in: GeoHash.latitudeMin..<GeoHash.latitudeMax, using: &rng)
            let step = UInt8.random(in: 1...26, using: &rng)
            let hash = GeoHash.encode(longitude: lon, latitude: lat, step: step)!
            let area = GeoHash.decode(hash)!
            #expect(area.longitude.min <= lon && lon <= area.longitude.max)
            #expect(area.latitude.min <= lat && lat <= area.latitude.max)
        }
    }

    @Test func neighboursTouchTheCellAndWrap() {
        let hash = GeoHash.encode(longitude: 13.36, latitude: 38.11, step: 10)!
        let area = GeoHash.decode(hash)!
        let n = GeoHash.neighbours(hash).map { GeoHash.decode($0)! }
        #expect(n[0].latitude.min == area.latitude.max && n[0].longitude.min == area.longitude.min)  // north
        #expect(n[1].latitude.max == area.latitude.min)  // south
        #expect(n[2].longitude.min == area.longitude.max && n[2].latitude.min == area.latitude.min)  // east
        #expect(n[3].longitude.max == area.longitude.min)  // west
        #expect(n[4].longitude.min == area.longitude.max && n[4].latitude.min == area.latitude.max)  // north-east
        #expect(n[7].longitude.max == area.longitude.min && n[7].latitude.max == area.latitude.min)  // south-west
        // East of the easternmost cell is the westernmost one.
        let edge = GeoHash.encode(longitude: 179.99, latitude: 0, step: 8)!
        #expect(GeoHash.decode(GeoHash.neighbours(edge)[2])!.longitude.min == -180)
    }

    @Test func stepsByRadius() {
        #expect(GeoHash.estimateSteps(radiusMeters: 0, latitude: 0) == 26)
        #expect(GeoHash.estimateSteps(radiusMeters: 1, latitude: 0) == 24)
        #expect(GeoHash.estimateSteps(radiusMeters: 1000, latitude: 0) == 14)
        #expect(GeoHash.estimateSteps(radiusMeters: 1000, latitude: 70) == 13)
        #expect(GeoHash.estimateSteps(radiusMeters: 1000, latitude: -81) == 12)
        #expect(GeoHash.estimateSteps(radiusMeters: 50_000_000, latitude: 0) == 1)
    }

    /// Every point within the radius lies in one of the cells the search scans.
    @Test func searchCellsCoverTheCircle() {
        var rng = SplitMix(state: 3)
        for _ in 0..<2_000 {
            let lon = Double.random(in: -180...180, using: &rng), lat = Double.random(in: -70...70, using: &rng)
            let radius = Double.random(in: 1...300_000, using: &rng)
            let shape = GeoShape(longitude: lon, latitude: lat, conversion: 1, kind: .radius(radius))
            let ranges = shape.searchCells().filter { !$0.isZero }.map { GeoHash.scoreRange(of: $0) }
            for _ in 0..<20 {
                // Exactly 180 encodes past the 52 bits (as in Redis): such points are never found.
                let plon = lon + Double.random(in: -4...4, using: &rng)
                if plon < -180 || plon >= 180 { continue }
                let plat = Swift.min(85, Swift.max(-85, lat + Double.random(in: -3...3, using: &rng)))
                let score = GeoHash.score(longitude: plon, latitude: plat)!
                let p = GeoHash.position(ofScore: score)
                guard shape.distanceIfInside(longitude: p.longitude, latitude: p.latitude) != nil else { continue }
                #expect(ranges.contains { $0.min <= score && score < $0.max }, "lost \(plon),\(plat) around \(lon),\(lat) r=\(radius)")
            }
        }
    }

    @Test func boxContainsByAxisDistances() {
        let shape = GeoShape(longitude: 0, latitude: 0, conversion: 1000, kind: .box(width: 200, height: 100))
        #expect(shape.distanceIfInside(longitude: 0.5, latitude: 0.3) != nil)  // ~55 km east, ~33 km north
        #expect(shape.distanceIfInside(longitude: 0.5, latitude: 0.5) == nil)  // ~55 km north: outside 50
        #expect(shape.distanceIfInside(longitude: 0.95, latitude: 0) == nil)  // ~105 km east: outside 100
    }

    @Test func scoreBitsFollowTheCConversion() {
        #expect(GeoHash.scoreBits(3.7) == 3)
        #expect(GeoHash.scoreBits(-1) == UInt64.max)
        #expect(GeoHash.scoreBits(9007199254740993) == 9007199254740992)
    }
}

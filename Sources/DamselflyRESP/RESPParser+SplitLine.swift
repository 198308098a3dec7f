extension RESPParser {
    /// One line split by `sdssplitargs`'s rules (``splitArguments(_:count:into:)``), as
    /// Redis splits text other than inline commands (a library's `#!` line); nil on
    /// unbalanced quotes or a closing quote not followed by a blank.
    public static func splitLine(_ line: [UInt8]) -> [[UInt8]]? {
        let args = CommandArguments()
        return line.withUnsafeBytes { raw -> [[UInt8]]? in
            guard let base = raw.baseAddress else { return [] }
            args.reset(frameStart: base)
            guard splitArguments(base, count: raw.count, into: args) else { return nil }
            return (0..<args.count).map { args.bytes($0) }
        }
    }
}

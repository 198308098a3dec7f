/// What CLIENT PAUSE WRITE needs to know of a script call before it runs.
extension ScriptFamily {
    /// Whether EVAL / EVALSHA / FCALL with this first argument (the body, the digest, the
    /// function's name) may write, as Redis 7.0's evalGetCommandFlags / fcallGetCommandFlags
    /// decide: a script or function that declares flags writes unless it says `no-writes`;
    /// one without a `#!lua` line, an unknown digest or function, counts as `may_replicate`.
    /// The *_RO variants never write. Only asked while clients are paused.
    public static func mayWrite(_ name: String, firstArgument: [UInt8], engine: Engine) -> Bool {
        switch name {
        case "eval":
            let digest = sha(of: firstArgument)
            let entry = engine.scripts.entry(digest) ?? ScriptEntry(sha: digest, body: firstArgument)
            return !entry.hasLuaShebang || !entry.noWrites
        case "evalsha":
            guard firstArgument.count == 40, let entry = engine.scripts.entry(String(decoding: firstArgument, as: UTF8.self).lowercased()) else {
                return true
            }
            return !entry.hasLuaShebang || !entry.noWrites
        case "fcall":
            guard let (_, function) = engine.functions.lookup(String(decoding: firstArgument, as: UTF8.self)) else { return true }
            return !function.noWrites
        default:
            return false
        }
    }
}

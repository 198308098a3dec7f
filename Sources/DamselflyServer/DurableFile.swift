import Glibc

/// Files replaced whole and durably: written to a temporary name, fsynced, then renamed over
/// the target, so a crash leaves the old file or the new one, never half of one (ACL SAVE,
/// a disk-based replication sync's dump file).
enum DurableFile {
    /// Writes `bytes` to `temp`, fsyncs it and renames it to `path`; false (and no `temp`
    /// left behind) when any step fails.
    static func replace(_ path: String, with bytes: [UInt8], temp: String) -> Bool {
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n <= 0 { break }
            written += n
        }
        let ok = written == bytes.count && fsync(fd) == 0
        close(fd)
        guard ok, rename(temp, path) == 0 else {
            unlink(temp)
            return false
        }
        return true
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes `text` to a fresh file under /tmp and returns its path.
func writeTempConfigFile(_ text: String, name: String = #function) -> String {
    let safe = String(name.map { $0.isLetter || $0.isNumber ? $0 : "_" })
    let path = "/tmp/damselfly-config-test-\(getpid())-\(safe)-\(UInt32.random(in: 0...UInt32.max)).conf"
    let file = fopen(path, "w")!
    fputs(text, file)
    fclose(file)
    return path
}

func removeTempConfigFile(_ path: String) {
    unlink(path)
}

/// The repository root, found from this file's real location (the test folder may be symlinked).
func repositoryRoot(filePath: String = #filePath) -> String {
    var resolved = filePath
    if let real = realpath(filePath, nil) {
        resolved = String(cString: real)
        free(real)
    }
    var parts = resolved.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)  // Tests/DamselflyServerTests/TestSupport.swift
    return parts.joined(separator: "/")
}

func readTestFile(_ path: String) -> String? {
    guard let file = fopen(path, "rb") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buffer.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        bytes.append(contentsOf: buffer[0..<n])
        if n < buffer.count { break }
    }
    return String(decoding: bytes, as: UTF8.self)
}

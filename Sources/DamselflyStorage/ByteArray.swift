#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Small helpers over byte arrays shared by the table and the value type.
///
/// Keys and string values are `[UInt8]`; these helpers copy with one `memcpy` and compare with one
/// `memcmp` instead of element-wise generic code, and describe how much heap an array really holds.
@usableFromInline
enum ByteArray {
    /// Bytes of the header Swift puts in front of an array's elements (metadata pointer, reference
    /// count, count, capacity-and-flags); used by memory accounting.
    @inlinable
    static var headerBytes: Int { 32 }

    /// Copies a byte range into a new array: one allocation of exactly `count` bytes (none for empty).
    /// (`[UInt8](bytes)`, specialised where it is inlined: an array made with
    /// `unsafeUninitializedCapacity` in another module takes the run time's unspecialised
    /// allocation path, a generic metadata lookup per call, several times the copy's cost.)
    @inlinable
    static func copy(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        bytes.isEmpty ? [] : [UInt8](bytes)
    }

    /// Whether a stored array holds exactly the bytes of `other`.
    @inlinable
    static func equals(_ stored: [UInt8], _ other: UnsafeRawBufferPointer) -> Bool {
        stored.withUnsafeBytes { s in
            s.count == other.count && (s.count == 0 || memcmp(s.baseAddress!, other.baseAddress!, s.count) == 0)
        }
    }

    /// Heap bytes an array occupies: its storage header plus capacity; zero for the shared empty storage.
    @inlinable
    static func heapBytes(_ array: [UInt8]) -> Int {
        let capacity = array.capacity
        return capacity == 0 ? 0 : headerBytes + capacity
    }
}

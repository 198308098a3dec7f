// swift-tools-version:6.1
import PackageDescription

/// The TLS library choice of issue 18, measured: the same TLS work (handshakes, a small
/// request and reply, a pipelined batch, a large reply) through Damselfly's own OpenSSL
/// session (DamselflyTLS: Debian's OpenSSL over memory BIOs, as the server uses it) and
/// through swift-nio-ssl (BoringSSL, as a NIO channel handler: the only way its public
/// products offer it). Kept out of the root package: swift-nio-ssl compiles BoringSSL.
/// Run `Benchmarks/tls_library.sh`.
let package = Package(
    name: "TLSLibraries",
    dependencies: [
        .package(name: "Damselfly", path: "../.."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        .executableTarget(
            name: "tls-library-bench",
            dependencies: [
                .product(name: "DamselflyTLS", package: "Damselfly"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)

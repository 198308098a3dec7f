// swift-tools-version:6.1
import Foundation
import PackageDescription

/// Damselfly: a Redis-compatible, shared-nothing, multi-threaded in-memory server.
///
/// Modules follow the layers of the server, each depending only on the layers below it:
/// `CDamselfly` (C shim: liburing, xxhash, thread affinity, eventfd) →
/// `DamselflyRESP` (wire protocol) and `DamselflyStorage` (keyspace tables) →
/// `DamselflyRuntime` (threads, io_uring/epoll loops, cross-thread queues) →
/// `DamselflyTransactions` (intent locks, transaction queues, hops) →
/// `DamselflyPersistence` (RDB format) → `DamselflyCommands` (one command family per file) →
/// `DamselflyServer` (connections, configuration, INFO) → the `damselfly` executable.
/// `DamselflyJobs` (the Sidekiq-compatible runner) sits beside them on `DamselflyRESP`, with
/// `CZlib` (libz) for Sidekiq's compressed `error_backtrace`. `DamselflyTLS` (on `CTLS`:
/// OpenSSL over memory BIOs) gives the server and the jobs runner their TLS sessions; whoever
/// owns the socket keeps doing its I/O.
///
/// Release builds use plain `-O`, which keeps Swift's overflow, bounds and unwrap checks: a
/// check that was missed on client input then stops the server with a trap instead of
/// corrupting the memory that holds other people's data (docs/benchmarks.md has the measured
/// cost, docs/reliability.md the reasoning). `DAMSELFLY_UNCHECKED=1` builds the `-Ounchecked`
/// variant, only to measure that cost again.
///
/// Release builds of the server's own targets drop Swift's run-time exclusivity checks
/// (`-enforce-exclusivity=unchecked`): about 180 `swift_beginAccess` calls per command on class
/// properties of the connection, the shard and the databases were half of a SET's instructions
/// (callgrind, docs/benchmarks.md "CPU per request"). The compile-time checks stay, and so do the
/// run-time ones in debug builds, which every unit test, e2e run and sanitizer build uses; a
/// conflicting access in release then no longer traps. `DAMSELFLY_EXCLUSIVITY_CHECKED=1` builds
/// release with the checks, to measure that cost again.
let environment = ProcessInfo.processInfo.environment
let strictSettings: [SwiftSetting] =
    (environment["DAMSELFLY_UNCHECKED"] == "1" ? [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))] : [])
    + (environment["DAMSELFLY_EXCLUSIVITY_CHECKED"] == "1"
        ? [] : [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))])

let package = Package(
    name: "Damselfly",
    products: [
        .executable(name: "damselfly", targets: ["damselfly"]),
        .executable(name: "damselfly-bench", targets: ["damselfly-bench"]),
        .executable(name: "damselfly-jobs", targets: ["damselfly-jobs"]),
        .library(name: "DamselflyJobs", targets: ["DamselflyJobs"]),
        .library(name: "DamselflyJobsWeb", targets: ["DamselflyJobsWeb"]),
        .library(name: "DamselflyRESP", targets: ["DamselflyRESP"]),
        .library(name: "DamselflyStorage", targets: ["DamselflyStorage"]),
        .library(name: "DamselflyRuntime", targets: ["DamselflyRuntime"]),
        .library(name: "DamselflyTransactions", targets: ["DamselflyTransactions"]),
        .library(name: "DamselflyACL", targets: ["DamselflyACL"]),
        .library(name: "DamselflyCommands", targets: ["DamselflyCommands"]),
        .library(name: "DamselflyServer", targets: ["DamselflyServer"]),
        .library(name: "DamselflyTLS", targets: ["DamselflyTLS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        // The jobs runner and its dashboard only: the server targets stay free of these.
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // No default traits: swift-configuration support is not used and costs build time.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
    ],
    targets: [
        .target(
            name: "CDamselfly",
            linkerSettings: [.linkedLibrary("uring"), .linkedLibrary("xxhash")]
        ),
        .target(
            name: "CTLS",
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]
        ),
        .target(
            name: "CLuaBridge",
            linkerSettings: [.linkedLibrary("lua5.1"), .linkedLibrary("dl")]
        ),
        .target(name: "DamselflyRESP", swiftSettings: strictSettings),
        .target(name: "DamselflyTLS", dependencies: ["CTLS"], swiftSettings: strictSettings),
        .target(name: "DamselflyStorage", dependencies: ["CDamselfly"], swiftSettings: strictSettings),
        .target(name: "DamselflyRuntime", dependencies: ["CDamselfly"], swiftSettings: strictSettings),
        .target(
            name: "DamselflyTransactions",
            dependencies: ["DamselflyRuntime", "DamselflyStorage"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "DamselflyCommands",
            dependencies: ["DamselflyRESP", "DamselflyStorage", "DamselflyTransactions", "DamselflyRuntime", "CLuaBridge", "DamselflyPersistence", "DamselflyACL"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "DamselflyServer",
            dependencies: ["DamselflyCommands", "DamselflyACL", "DamselflyRESP", "DamselflyRuntime", "DamselflyTransactions", "DamselflyStorage", "DamselflyPersistence", "CDamselfly", "DamselflyTLS"],
            swiftSettings: strictSettings
        ),
        .target(name: "DamselflyACL", dependencies: ["DamselflyStorage"], swiftSettings: strictSettings),
        .target(name: "DamselflyPersistence", dependencies: ["DamselflyStorage", "CDamselfly"], swiftSettings: strictSettings),
        .target(name: "CZlib", linkerSettings: [.linkedLibrary("z")]),
        .target(
            name: "DamselflyJobs",
            dependencies: [
                "DamselflyRESP", "DamselflyTLS", "CDamselfly", "CZlib",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "DamselflyJobsWeb",
            dependencies: [
                "DamselflyJobs",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Mustache", package: "swift-mustache"),
            ]
        ),
        .executableTarget(
            name: "damselfly-jobs",
            dependencies: [
                "DamselflyJobs", "DamselflyJobsWeb",
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(name: "damselfly", dependencies: ["DamselflyServer"], swiftSettings: strictSettings),
        .executableTarget(
            name: "damselfly-bench",
            dependencies: ["DamselflyRESP", "CDamselfly", .product(name: "Histogram", package: "hdrhistogram-swift")],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "DamselflyRESPTests", dependencies: ["DamselflyRESP"]),
        .testTarget(name: "DamselflyStorageTests", dependencies: ["DamselflyStorage"]),
        .testTarget(name: "DamselflyRuntimeTests", dependencies: ["DamselflyRuntime"]),
        .testTarget(name: "DamselflyCommandsTests", dependencies: ["DamselflyCommands", "DamselflyServer"]),
        .testTarget(name: "DamselflyServerTests", dependencies: ["DamselflyServer"]),
        .testTarget(name: "DamselflyACLTests", dependencies: ["DamselflyACL"]),
        .testTarget(name: "DamselflyPersistenceTests", dependencies: ["DamselflyPersistence"]),
        .testTarget(name: "DamselflyJobsTests", dependencies: ["DamselflyJobs"]),
    ],
    swiftLanguageModes: [.v6]
)

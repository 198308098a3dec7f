// swift-tools-version:6.1
import PackageDescription

/// Micro-benchmarks for Damselfly, kept out of the root package so `swift build` / `swift test`
/// there stay fast. Run from this folder:
///
///     swift package benchmark                                  # run all
///     swift package benchmark baseline check --check-absolute  # compare against Thresholds/
///     swift package --allow-writing-to-package-directory benchmark --format metricP90AbsoluteThresholds \
///         --path Thresholds/                                   # refresh the stored thresholds
let package = Package(
    name: "DamselflyBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Damselfly", path: ".."),
        .package(url: "https://github.com/ordo-one/package-benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "DamselflyBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "DamselflyRESP", package: "Damselfly"),
                .product(name: "DamselflyStorage", package: "Damselfly"),
                .product(name: "DamselflyRuntime", package: "Damselfly"),
            ],
            path: "Benchmarks/DamselflyBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// swift-tools-version:6.0
import Foundation
import PackageDescription

// Opt-in CPU tuning: `MIMSERVE_TARGET_CPU=haswell make bench` builds kernels for AVX2 + FMA.
// The default build runs on any x86-64 (see NOTES: a haswell binary dies on older CPUs).
let targetCPU = ProcessInfo.processInfo.environment["MIMSERVE_TARGET_CPU"]
let cpuFlags: [SwiftSetting] = targetCPU.map { [.unsafeFlags(["-target-cpu", $0])] } ?? []

let package = Package(
    name: "MIMServe",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mimserve-bench", targets: ["mimserve-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .target(name: "TensorCore", dependencies: ["COpenBLAS"], swiftSettings: cpuFlags),
        .target(name: "NN", dependencies: ["TensorCore"], swiftSettings: cpuFlags),
        .target(name: "Optim", dependencies: ["TensorCore", "NN"], swiftSettings: cpuFlags),
        .target(name: "Models", dependencies: ["TensorCore", "NN"], swiftSettings: cpuFlags),
        .executableTarget(
            name: "mimserve-bench",
            dependencies: [
                "TensorCore", "NN", "Optim", "Models",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: cpuFlags),
        // Fixture reader and finite-difference checker shared by the test targets.
        .target(name: "TestSupport", dependencies: ["TensorCore"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "TestSupport"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "TestSupport"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Optim", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "OptimTests", dependencies: ["Optim", "TestSupport"], resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v6]
)
